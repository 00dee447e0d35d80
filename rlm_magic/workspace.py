"""Where a run executes: a child kernel with its private folder, pre-started and reusable.

A :class:`Workspace` is a started child kernel (with ``rlm_kernel``, pandas and
pyarrow already imported) plus the scratch folder its values, sockets and log
live in.  Three owners use one:

* a plain run takes one and closes it at the end;
* the :class:`KernelPool` keeps one spare started in the background, so the
  next run skips the kernel start (the cost moves to idle time);
* a named :class:`Session` keeps one across runs, so follow-up questions see
  the variables earlier runs created.

Everything here runs on the engine's background loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import transport
from .sandbox import Limits, sandbox_ids
from .session import OWN_KERNEL, KernelSession, child_env

_ids = itertools.count(1)


def _package_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("rlm_kernel")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the child-side package rlm_kernel is not installed; reinstall rlm-magic")
    return list(spec.submodule_search_locations)[0]


def _import_code(shared: bool = True) -> str:
    """Load *our* copy of rlm_kernel and the data libraries, without running anything else.

    Loading by file location (not ``sys.path``) means a ``kernel=`` interpreter
    without rlm_magic installed still gets the matching child package, and the
    user's ``sys.path`` order is left alone.  A kernel that cannot see this
    machine's files (``shared=False``) gets the package's source in the code
    itself (a few dozen KB of Python, never data).
    """
    pkg = _package_dir()
    if shared:
        load = (
            "    if 'rlm_kernel' not in sys.modules:\n"
            "        spec = importlib.util.spec_from_file_location('rlm_kernel', os.path.join(pkg, '__init__.py'),\n"
            "                                                      submodule_search_locations=[pkg])\n"
            "        mod = importlib.util.module_from_spec(spec)\n"
            "        sys.modules['rlm_kernel'] = mod\n"
            "        spec.loader.exec_module(mod)\n"
        )
        arg = repr(pkg)
    else:
        load = (
            "    class Finder:\n"
            "        def find_spec(self, name, path=None, target=None):\n"
            "            if name in pkg:\n"
            "                return importlib.util.spec_from_loader(name, self, is_package=name == 'rlm_kernel')\n"
            "        def create_module(self, spec):\n"
            "            return None\n"
            "        def exec_module(self, module):\n"
            "            exec(compile(pkg[module.__name__], '<rlm_kernel ' + module.__name__ + '>', 'exec'),\n"
            "                 module.__dict__)\n"
            "    if 'rlm_kernel' not in sys.modules:\n"
            "        finder = Finder()\n"
            "        sys.meta_path.insert(0, finder)\n"
            "        try:\n"
            "            for name in sorted(pkg):\n"
            "                importlib.import_module(name)\n"
            "        finally:\n"
            "            sys.meta_path.remove(finder)\n"
        )
        arg = repr(_package_sources(pkg))
    return (
        "def __rlm_import(pkg):\n"
        "    import importlib, importlib.util, os, sys\n"
        f"{load}"
        "    for name in ('pandas', 'pyarrow', 'numpy'):\n"
        "        try:\n"
        "            __import__(name)\n"
        "        except ImportError:\n"
        "            pass\n"
        "    sys.modules['rlm_kernel.wire'].register(get_ipython().kernel)\n"
        f"__rlm_import({arg})\n"
        "del __rlm_import\n"
    )


def _package_sources(pkg: str) -> dict[str, str]:
    out = {}
    for path in sorted(Path(pkg).glob("*.py")):
        name = "rlm_kernel" if path.stem == "__init__" else f"rlm_kernel.{path.stem}"
        out[name] = path.read_text(encoding="utf-8")
    return out


def _install_code(config: dict[str, Any]) -> str:
    return (
        "import sys as __rlm_sys\n"
        f"__rlm_sys.modules['rlm_kernel'].install(get_ipython(), __import__('json').loads({json.dumps(config)!r}))\n"
        "del __rlm_sys\n"
    )


@dataclass
class WorkspaceSpec:
    """What makes two workspaces interchangeable."""

    kernel: str
    env: dict[str, str]
    sandbox: str = "default"
    limits: Limits = field(default_factory=Limits)

    def matches(self, other: WorkspaceSpec) -> bool:
        strip = lambda e: {k: v for k, v in e.items() if k != "IPYTHONDIR"}  # noqa: E731 - per-workspace value
        return (self.kernel, self.sandbox, self.limits) == (other.kernel, other.sandbox, other.limits) and \
            strip(self.env) == strip(other.env)


def make_spec(kernel: str | None, env_allow: tuple[str, ...], sandbox: str = "default",
              limits: Limits | None = None) -> WorkspaceSpec:
    return WorkspaceSpec(kernel or OWN_KERNEL, child_env(env_allow), sandbox, limits or Limits())


class Workspace:
    """A started child kernel and its private folder."""

    def __init__(self, spec: WorkspaceSpec, *, interrupt_grace: float = 3.0) -> None:
        self.spec = spec
        self.id = next(_ids)
        self.run_dir = transport.make_run_dir()
        self.work_dir = self.run_dir / "work"
        self.work_dir.mkdir()
        #: Who the strict sandbox runs as, when not the notebook's user: it must read the run folder.
        self.owner = sandbox_ids() if spec.sandbox == "strict" else None
        self.hand_over([self.run_dir, self.work_dir])
        env = dict(spec.env, IPYTHONDIR=str(self.run_dir / "ipython"))
        self.kernel = KernelSession(kernel_name=spec.kernel, cwd=self.work_dir, env=env, ipc_dir=self.run_dir,
                                    interrupt_grace=interrupt_grace, sandbox=spec.sandbox, limits=spec.limits,
                                    marker=f"{os.getpid()}-{self.run_dir.name}")
        self.started_at: float | None = None
        self.runs = 0
        self.closed = False
        #: Whether the kernel sees this machine's files (our own interpreter always does; a foreign spec is probed).
        self.shared = True
        self._imported = -1  # the kernel's restart count when rlm_kernel was last loaded into it

    async def start(self) -> Workspace:
        try:
            await self.kernel.start()
            if self.spec.kernel != OWN_KERNEL:
                self.shared = await self._sees_our_files()
            await self.kernel.run_quiet(_import_code(self.shared))
            self._imported = self.kernel.restarts
        except BaseException:
            await self.close()
            raise
        self.started_at = time.monotonic()
        return self

    def hand_over(self, paths: list[Path]) -> None:
        """Let the sandbox's own user reach files the notebook made for it (only where that user differs)."""
        if self.owner is not None:
            for path in paths:
                os.chown(path, *self.owner)

    async def _sees_our_files(self) -> bool:
        """Probe: can the kernel read a file we just wrote?  A remote kernel (ssh, a container) cannot."""
        probe = self.run_dir / "probe"
        token = secrets.token_hex(16)
        probe.write_text(token)
        try:
            res = await self.kernel.run_quiet(
                "def __rlm_probe(path, token):\n"
                "    try:\n"
                "        with open(path) as fh:\n"
                "            return fh.read() == token\n"
                "    except OSError:\n"
                "        return False\n"
                f"print('shared' if __rlm_probe({str(probe)!r}, {token!r}) else 'remote')\n"
                "del __rlm_probe\n")
        finally:
            probe.unlink(missing_ok=True)
        return res.output.strip().endswith("shared")

    async def install(self, *, channel: str, mode: str, bindings: list[dict[str, Any]], bound_bytes: int = 0,
                      sent: dict[str, list[Any]] | None = None) -> None:
        """Connect the child's functions to this run's channel, set its limits and (re)bind values.

        ``sent`` holds the buffers of bindings that travel over the protocol;
        their comms go out first, and the shell channel keeps them in order
        before the code that loads them.
        """
        if sent and self._imported != self.kernel.restarts:  # a replaced kernel: its comm target comes first
            await self.kernel.run_quiet(_import_code(self.shared))
            self._imported = self.kernel.restarts
        for key, buffers in (sent or {}).items():
            self.kernel.wire.send_values(key, buffers)
        config = {"channel": channel, "out_dir": str(self.run_dir) if self.shared else None,
                  # strict's run folder is read-only to the kernel, so results come back as message buffers
                  "results": "files" if self.shared and self.spec.sandbox != "strict" else "wire", "mode": mode, "bindings": bindings,
                  "limits": self.spec.limits.for_child(extra_memory=2 * bound_bytes)}
        await self.kernel.run_quiet(_import_code(self.shared) + _install_code(config))

    async def variables(self) -> dict[str, str]:
        """Names the REPL holds besides the harness's own (for follow-up prompts)."""
        res = await self.kernel.execute("print(__import__('json').dumps(__rlm__.variables()))", timeout=30,
                                        max_output_chars=50_000)
        try:
            return json.loads(res.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {}

    async def alive(self) -> bool:
        return not self.closed and await self.kernel.is_alive()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await asyncio.shield(self.kernel.shutdown())
        except Exception:  # noqa: BLE001 - a kernel that will not stop is killed
            self.kernel.kill_now()
        finally:
            transport.remove_dir(self.run_dir)


class KernelPool:
    """Keeps one spare workspace started, so the next run does not wait for a kernel."""

    def __init__(self) -> None:
        self._spare: asyncio.Task[Workspace] | None = None
        self._spare_spec: WorkspaceSpec | None = None
        self.size = 1

    async def acquire(self, spec: WorkspaceSpec, *, wait: bool = True) -> tuple[Workspace, bool]:
        """A workspace for ``spec``, and whether it came warm (the spare).

        With ``wait=False`` and no spare, the workspace comes back unstarted
        (its folder exists): the caller starts it while doing other work.
        """
        spare, spare_spec = self._spare, self._spare_spec
        self._spare, self._spare_spec = None, None
        workspace: Workspace | None = None
        warm = False
        if spare is not None and spare_spec is not None and spare_spec.matches(spec):
            try:
                workspace = await spare
                warm = await workspace.alive()
                if not warm:
                    await workspace.close()
                    workspace = None
            except Exception:  # noqa: BLE001 - a failed spare is replaced by a fresh start
                workspace = None
        elif spare is not None:
            asyncio.ensure_future(_discard(spare))
        if workspace is None:
            workspace = Workspace(spec)
            if wait:
                await workspace.start()
        # No refill here: a kernel starting now would compete with this run for the CPU.
        # The engine refills when the run ends.
        return workspace, warm

    def refill(self, spec: WorkspaceSpec) -> None:
        if self.size < 1 or self._spare is not None:
            return
        self._spare_spec = spec
        self._spare = asyncio.ensure_future(Workspace(spec).start())

    async def drain(self) -> None:
        spare, self._spare, self._spare_spec = self._spare, None, None
        if spare is not None:
            await _discard(spare)


async def _discard(task: asyncio.Task[Workspace]) -> None:
    try:
        workspace = await task
    except BaseException:  # noqa: BLE001 - it never started
        return
    await workspace.close()


@dataclass
class Session:
    """A named workspace kept across runs, with what was asked in it."""

    name: str
    workspace: Workspace
    history: list[tuple[str, str]] = field(default_factory=list)  # (question, short answer)
    bound: dict[str, str] = field(default_factory=dict)  # name -> short type of values bound so far

    def describe_history(self, limit: int = 400) -> str:
        lines = []
        for i, (q, a) in enumerate(self.history[-5:], 1):
            lines.append(f"{i}. Q: {q[:limit]}\n   A: {a[:limit]}")
        return "\n".join(lines)


#: Process-wide pool and sessions, owned by the engine loop.
POOL = KernelPool()
SESSIONS: dict[str, Session] = {}


async def end_session(name: str) -> bool:
    session = SESSIONS.pop(name, None)
    if session is None:
        return False
    await session.workspace.close()
    return True


async def shutdown_all() -> None:
    """Stop every spare and session kernel (the notebook kernel is going away)."""
    for name in list(SESSIONS):
        await end_session(name)
    await POOL.drain()


def run_dirs() -> list[tuple[Path, int]]:
    """Every rlm_magic scratch folder on this machine with the pid recorded as its owner."""
    out = []
    for base in {Path("/dev/shm"), Path(os.environ.get("TMPDIR", "/tmp"))}:
        for path in base.glob("rlm-*") if base.is_dir() else []:
            try:
                out.append((path, int((path / "owner.pid").read_text())))
            except (OSError, ValueError):
                continue
    return out


def sweep_stale_run_dirs(max_age: float = 0.0) -> int:
    """Remove scratch folders left by processes that died without cleaning up (owner pid gone)."""
    removed = 0
    for path, pid in run_dirs():
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            if max_age and time.time() - (path / "owner.pid").stat().st_mtime < max_age:
                continue
        except OSError:
            continue
        transport.remove_dir(path)
        removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
