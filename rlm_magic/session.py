"""The child kernel: start it, run code with a deadline, capture capped output, stop it.

One :class:`KernelSession` per run (or per named session).  Everything here is
async and runs on the engine's loop; jupyter-client's async manager and client
do the protocol work.  The kernel gets a scrubbed environment (an allowlist,
so new secret variables are excluded by default) and a fresh working folder.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any, Callable

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager

from .sandbox import MARKER, SOCKET_DIR, Limits, bwrap_argv, descendants, kill_marked, kill_pids, sandbox_ids
from .wire import WireLink

#: Name of the spec rlm_magic builds for the notebook's own interpreter.
OWN_KERNEL = "rlm-python"

#: Environment variables a child kernel may see.  Anything else (API keys,
#: tokens, cloud credentials, passwords) stays in the notebook process.
ENV_ALLOW = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
    "TMPDIR", "TEMP", "TMP", "PYTHONPATH", "PYTHONHOME", "PYTHONUTF8", "PYTHONIOENCODING",
    "PYTHONHASHSEED", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "LD_LIBRARY_PATH",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_MAX_THREADS",
    "ARROW_DEFAULT_MEMORY_POOL", "XDG_CACHE_HOME",
)
ENV_ALLOW_PREFIXES = ("LC_",)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def child_env(extra_allow: tuple[str, ...] | list[str] = (), *, ipython_dir: Path | None = None) -> dict[str, str]:
    """The child's environment: allowlisted variables only, plus a private IPython dir."""
    allow = set(ENV_ALLOW) | set(extra_allow)
    env = {k: v for k, v in os.environ.items() if k in allow or k.startswith(ENV_ALLOW_PREFIXES)}
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env.setdefault("MALLOC_ARENA_MAX", "2")  # fewer malloc arenas: less address space under the memory limit
    env.setdefault("MPLBACKEND", "Agg")
    if ipython_dir is not None:
        env["IPYTHONDIR"] = str(ipython_dir)  # no user startup scripts, no history file
    return env


class _SpecManager(KernelSpecManager):
    """Adds a lean spec for the notebook's own interpreter, and wraps specs for the strict sandbox."""

    def __init__(self, wrap: Callable[[list[str]], list[str]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wrap = wrap

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == OWN_KERNEL:
            spec = KernelSpec(
                argv=[
                    sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                    "--HistoryManager.enabled=False", "--InteractiveShell.xmode=Plain",
                ],
                display_name="rlm_magic child",
                language="python",
                interrupt_mode="signal",
            )
        else:
            spec = super().get_kernel_spec(kernel_name)
        if self.wrap is not None:
            # A signal to bwrap would not reach the kernel inside; ask the kernel itself to interrupt.
            spec = KernelSpec(**{**spec.to_dict(), "argv": self.wrap(list(spec.argv)), "interrupt_mode": "message"},
                              resource_dir=spec.resource_dir)
        return spec


def check_kernel_name(name: str | None) -> None:
    """Fail before anything starts when a ``kernel=`` spec does not exist."""
    if not name or name == OWN_KERNEL:
        return
    ksm = KernelSpecManager()
    try:
        ksm.get_kernel_spec(name)
    except NoSuchKernel:
        known = ", ".join(sorted(ksm.find_kernel_specs())) or "none"
        raise ValueError(f"no Jupyter kernel named {name!r} (installed kernels: {known})") from None


@dataclass
class ExecResult:
    output: str = ""  # capped text
    total_chars: int = 0
    error: str | None = None  # "Name: message"
    ename: str | None = None
    timed_out: bool = False
    died: bool = False  # the kernel died or had to be replaced
    duration: float = 0.0


class OutputCap:
    """Keeps the head and tail of a stream of text; counts what it dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 200)
        self.head_limit = self.limit * 2 // 3
        self.tail_limit = self.limit - self.head_limit
        self.head: list[str] = []
        self.head_len = 0
        self.tail: list[str] = []
        self.tail_len = 0
        self.total = 0

    def add(self, text: str) -> None:
        if not text:
            return
        self.total += len(text)
        if self.head_len < self.head_limit:
            take = text[: self.head_limit - self.head_len]
            self.head.append(take)
            self.head_len += len(take)
            text = text[len(take):]
        if text:
            self.tail.append(text)
            self.tail_len += len(text)
            while self.tail_len > self.tail_limit * 2 and len(self.tail) > 1:
                self.tail_len -= len(self.tail.pop(0))
            if self.tail_len > self.tail_limit * 4:  # one huge piece
                joined = "".join(self.tail)[-self.tail_limit:]
                self.tail, self.tail_len = [joined], len(joined)

    def text(self) -> str:
        head = "".join(self.head)
        tail = "".join(self.tail)
        if self.total <= self.limit:
            return head + tail
        tail = tail[-self.tail_limit:]
        hidden = self.total - len(head) - len(tail)
        return f"{head}\n… [output truncated: {hidden:,} of {self.total:,} characters hidden] …\n{tail}"


def short_traceback(lines: list[str], keep: int = 12) -> str:
    text = _ANSI.sub("", "\n".join(lines))
    rows = [r for r in text.splitlines() if r.strip() and not set(r.strip()) <= {"-"}]
    if len(rows) > keep:
        rows = ["…"] + rows[-keep:]
    return "\n".join(rows)


_live: "weakref.WeakSet[KernelSession]" = weakref.WeakSet()


class KernelSession:
    """A child kernel owned by one run or one named session."""

    def __init__(
        self,
        *,
        kernel_name: str | None = None,
        cwd: Path,
        env: dict[str, str],
        ipc_dir: Path,
        startup_timeout: float = 60.0,
        interrupt_grace: float = 3.0,
        sandbox: str = "default",
        limits: Limits | None = None,
        marker: str | None = None,
    ) -> None:
        self.kernel_name = kernel_name or OWN_KERNEL
        self.cwd = cwd
        self.env = env
        self.ipc_dir = ipc_dir
        self.sandbox = sandbox
        self.limits = limits or Limits()
        self.marker = marker or ipc_dir.name
        self.env = {**env, MARKER: self.marker}
        self.log_path = ipc_dir / "kernel.log"
        self._log: Any = None
        self.startup_timeout = startup_timeout
        self.interrupt_grace = interrupt_grace
        self.km: AsyncKernelManager | None = None
        self.kc: Any = None
        self.restarts = 0
        #: Values and requests that travel as Jupyter messages rather than files and sockets.
        self.wire = WireLink(self)
        #: Under strict: the sockets' path inside the sandbox (the client reaches it through /proc/<pid>/root).
        self._inside_ip: str | None = None

    # -- lifecycle ------------------------------------------------------
    async def start(self) -> None:
        # IPC (Unix sockets in a private folder) instead of loopback TCP: no port
        # another local user could reach, and it works inside a network namespace.
        wrap = None
        if self.sandbox == "strict":
            wrap = lambda argv: bwrap_argv(argv, run_dir=self.ipc_dir, work_dir=self.cwd, limits=self.limits)  # noqa: E731
        if wrap is not None:  # sockets in the sandbox's own scratch; reached through /proc/<pid>/root
            self._inside_ip = f"{SOCKET_DIR}/k"
            where = {"transport": "ipc", "ip": self._inside_ip}
        elif self.kernel_name == OWN_KERNEL:
            where = {"transport": "ipc", "ip": str(self.ipc_dir / "k")}
        else:  # a foreign spec may run anywhere (ssh, a container): loopback TCP, as Jupyter itself uses
            where = {"transport": "tcp", "ip": "127.0.0.1"}
        self.km = AsyncKernelManager(kernel_name=self.kernel_name, kernel_spec_manager=_SpecManager(wrap=wrap),
                                     connection_file=str(self.ipc_dir / "kernel.json"), **where)
        _live.add(self)
        self._log = open(self.log_path, "ab")  # the child's own stdout/stderr, kept out of the notebook
        if wrap is not None and (ids := sandbox_ids()) is not None:
            self.km.write_connection_file()  # the unprivileged sandbox user must read it
            os.chown(self.km.connection_file, *ids)
        await self.km.start_kernel(cwd=str(self.cwd), env=dict(self.env), stdout=self._log, stderr=self._log)
        await self._reach_sandbox()
        await self._connect()

    async def _reach_sandbox(self) -> None:
        """Point the client at the strict kernel's sockets, as seen from outside its mount namespace."""
        if self._inside_ip is None:
            return
        assert self.km is not None
        proc = self.km.provisioner.process  # type: ignore[union-attr]
        ours = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + self.startup_timeout
        while True:
            for pid in descendants(proc.pid):
                try:
                    inside = os.readlink(f"/proc/{pid}/ns/mnt") != ours
                except OSError:
                    continue
                if inside:
                    self.km.ip = f"/proc/{pid}/root{self._inside_ip}"
                    return
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sandboxed kernel did not start:\n{self.log_tail()}")
            await asyncio.sleep(0.005)

    def log_tail(self, chars: int = 2_000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - chars))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    async def _connect(self) -> None:
        assert self.km is not None
        self.kc = self.km.client()
        self.kc.start_channels()
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        """Ready once a kernel_info reply and then an iopub message have arrived.

        jupyter-client's own check waits up to a second per try, and the first
        iopub message is often lost while the subscription is still joining, so
        a start would cost about 0.2 s more than the kernel needs; this check
        asks again every 50 ms instead.
        """
        assert self.kc is not None and self.km is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            self.kc.kernel_info()
            replied = False
            try:
                while not replied:
                    replied = (await self.kc.get_shell_msg(timeout=0.05))["msg_type"] == "kernel_info_reply"
                await self.kc.get_iopub_msg(timeout=0.05)  # the reply's status message: iopub is connected too
                return
            except (Empty, asyncio.TimeoutError):
                pass
            if not await self.km.is_alive():
                raise RuntimeError(f"the child kernel did not start: it exited\n{self.log_tail()}")
        raise RuntimeError(f"the child kernel did not start within {self.startup_timeout:g} s\n{self.log_tail()}")

    async def restart(self) -> None:
        """Replace a dead or stuck kernel; the caller rebinds values."""
        assert self.km is not None
        self.restarts += 1
        if self.kc is not None:
            self.kc.stop_channels()
        proc = getattr(getattr(self.km, "provisioner", None), "process", None)
        tree = descendants(proc.pid) if proc is not None else []
        if self._inside_ip is not None:
            self.km.ip = self._inside_ip  # the new kernel binds where the connection file says
        await self.km.restart_kernel(now=True)
        kill_pids(tree)
        await self._reach_sandbox()
        await self._connect()

    async def shutdown(self) -> None:
        if self.km is None:
            return
        proc = getattr(getattr(self.km, "provisioner", None), "process", None)
        tree = descendants(proc.pid) if proc is not None else []  # what model code started, detached or not
        try:
            if self.kc is not None:
                self.kc.stop_channels()
            if self.km.has_kernel:
                await self.km.shutdown_kernel(now=True)
        finally:
            kill_pids(tree)
            kill_marked(self.marker)  # whatever model code started and detached
            _live.discard(self)
            if self._log is not None:
                self._log.close()
            self.km = None
            self.kc = None

    async def is_alive(self) -> bool:
        return self.km is not None and bool(await self.km.is_alive())

    def kill_now(self) -> None:
        """Synchronous last resort (interpreter exit): kill the process group."""
        km = self.km
        proc = getattr(getattr(km, "provisioner", None), "process", None)
        if proc is not None:
            tree = descendants(proc.pid)
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 9)
                except OSError:
                    proc.kill()
            kill_pids(tree)
        kill_marked(self.marker)

    # -- running code ---------------------------------------------------
    async def execute(
        self,
        code: str,
        *,
        timeout: float | None,
        max_output_chars: int,
        on_output: Callable[[str], None] | None = None,
    ) -> ExecResult:
        """Run ``code``; interrupt it at the deadline and replace the kernel if it will not stop."""
        assert self.kc is not None and self.km is not None
        cap = OutputCap(max_output_chars)
        res = ExecResult()
        started = time.monotonic()
        stdin = self.wire.on_request is not None  # requests come over stdin: answer them while the code runs
        msg_id = self.kc.execute(code, store_history=True, allow_stdin=stdin, stop_on_error=False)
        deadline = None if timeout is None else started + timeout
        interrupted_at: float | None = None
        requests: set[asyncio.Task[None]] = set()
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline and interrupted_at is None:
                    res.timed_out = True
                    interrupted_at = now
                    await self.km.interrupt_kernel()
                if interrupted_at is not None and now - interrupted_at > self.interrupt_grace:
                    res.died = True  # ignores SIGINT: replace it
                    await self.restart()
                    break
                wait = 0.5 if deadline is None else max(0.01, min(0.5, (deadline if interrupted_at is None else interrupted_at + self.interrupt_grace) - now))
                try:
                    channel, msg = await self.wire.next_message(wait, stdin=stdin)
                except (Empty, asyncio.TimeoutError):
                    if not await self.km.is_alive():
                        res.died = True
                        await self.restart()
                        break
                    continue
                if channel == "stdin":
                    self.wire.on_stdin(msg, requests)
                    continue
                if self.wire.take_data(msg):
                    continue
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                content = msg["content"]
                piece = ""
                if kind == "stream":
                    piece = content.get("text", "")
                elif kind in ("execute_result", "display_data"):
                    data = content.get("data", {})
                    text = data.get("text/plain")
                    if text is None:
                        text = "[" + ", ".join(sorted(data)) + " output]"
                    piece = text if text.endswith("\n") else text + "\n"
                elif kind == "error":
                    if content.get("ename") == "SubmitSignal":
                        continue
                    res.ename = content.get("ename")
                    res.error = f"{content.get('ename')}: {content.get('evalue')}"
                    piece = short_traceback(content.get("traceback") or [res.error]) + "\n"
                elif kind == "status" and content.get("execution_state") == "idle":
                    break
                if piece:
                    cap.add(piece)
                    if on_output is not None:
                        on_output(piece)
        finally:
            for task in requests:  # the code stopped waiting for these; a late reply must not reach the next request
                task.cancel()
        await self._drain_shell(msg_id)
        res.output = cap.text()
        res.total_chars = cap.total
        res.duration = time.monotonic() - started
        if res.timed_out and res.error is None:
            res.error = f"TimeoutError: execution exceeded {timeout:g} s"
        return res

    async def _drain_shell(self, msg_id: str) -> None:
        """Read the execute_reply so replies do not pile up on the shell channel."""
        try:
            while True:
                reply = await self.kc.get_shell_msg(timeout=0.2)
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    return
        except (Empty, asyncio.TimeoutError):
            return

    async def run_quiet(self, code: str, timeout: float = 120.0) -> ExecResult:
        """Run harness code (bootstrap, rebinding); raise if it fails."""
        res = await self.execute(code, timeout=timeout, max_output_chars=20_000)
        if res.error or res.died:
            raise RuntimeError(f"child kernel set-up failed: {res.error or 'kernel died'}\n{res.output}")
        return res


@atexit.register
def _kill_leftovers() -> None:
    """The notebook kernel is exiting: no child kernel or scratch folder may outlive it."""
    import shutil

    for session in list(_live):
        session.kill_now()
        shutil.rmtree(session.ipc_dir, ignore_errors=True)
