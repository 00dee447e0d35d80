"""Physical limits, measured in the same run as the harness: what no harness can beat.

* a raw write of N bytes into a new file in ``/dev/shm`` (one ``write`` of an
  in-memory buffer; tmpfs page allocation is what costs);
* a raw jupyter-client round trip: ``execute("pass")`` on an already-running
  ipykernel, until both the reply and the ``idle`` status arrived;
* a raw kernel start: launch an ipykernel and get the reply to a first
  ``execute`` (bare, and with ``import pandas, pyarrow, numpy`` as the harness's
  child does).

The kernels use the same argv, transport (IPC sockets) and scrubbed environment
as rlm_magic's child kernel, so the comparison is like for like.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

SHM = Path("/dev/shm") if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
PREFIX = "rlm-bench-"


def scratch_dir() -> Path:
    """A private scratch folder in /dev/shm named after this process (swept by :func:`sweep_stale`)."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=SHM))
    return path


def sweep_stale() -> int:
    """Remove scratch folders of benchmark processes that died without cleaning up."""
    import shutil

    removed = 0
    for path in [*SHM.glob(f"{PREFIX}*"), *Path(tempfile.gettempdir()).glob(f"{PREFIX}*")]:
        try:
            pid = int(path.name[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def shm_write_seconds(nbytes: int, folder: Path, buffer: Any = None) -> float:
    """Seconds to write ``nbytes`` from memory into a new file in ``folder`` (then removed)."""
    import numpy as np

    data = buffer if buffer is not None else np.ones(nbytes, dtype=np.uint8)
    return _timed_write([memoryview(data).cast("B")[:nbytes]], folder)


def _timed_write(buffers: list[memoryview], folder: Path) -> float:
    """Seconds to write ``buffers`` one after another into a new file in ``folder`` (then removed)."""
    path = folder / f"raw-{time.perf_counter_ns()}.bin"
    try:
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for view in buffers:
                done = 0
                while done < len(view):
                    done += os.write(fd, view[done:done + (1 << 30)])
        finally:
            os.close(fd)
        return time.perf_counter() - t0
    finally:
        path.unlink(missing_ok=True)


class RawKernel:
    """An ipykernel driven with jupyter-client's blocking client and nothing else."""

    def __init__(self, folder: Path) -> None:
        from jupyter_client.manager import KernelManager

        # the harness's own kernelspec (same argv: this interpreter's ipykernel, history off)
        from rlm_magic.session import OWN_KERNEL, _SpecManager, child_env

        self.folder = folder
        self.log = open(folder / "raw-kernel.log", "ab")
        self.km = KernelManager(kernel_name=OWN_KERNEL, kernel_spec_manager=_SpecManager(), transport="ipc",
                                ip=str(folder / "k"))
        self.env = child_env(ipython_dir=folder / "ipython")
        self.kc: Any = None

    def start(self) -> None:
        self.km.start_kernel(cwd=str(self.folder), env=dict(self.env), stdout=self.log, stderr=self.log)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def execute(self, code: str, timeout: float = 60.0) -> str:
        """Run ``code``; return once both its execute_reply and its ``idle`` status arrived."""
        kc = self.kc
        msg_id = kc.execute(code, store_history=False, allow_stdin=False)
        while True:
            msg = kc.get_iopub_msg(timeout=timeout)
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                break
        while True:
            reply = kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["status"]

    def stop(self) -> None:
        try:
            if self.kc is not None:
                self.kc.stop_channels()
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
        finally:
            self.log.close()


def frame_buffers(df: Any) -> list[memoryview]:
    """The memory holding a DataFrame's data: numpy columns, and Arrow buffers of Arrow-backed ones."""
    import pyarrow as pa

    out = []
    for name in df.columns:
        column = df[name]
        if hasattr(column.array, "__arrow_array__"):
            arrow = pa.chunked_array(column.array.__arrow_array__())
            for chunk in arrow.chunks:
                out += [memoryview(b).cast("B") for b in chunk.buffers() if b is not None]
        else:
            out.append(memoryview(column.to_numpy()).cast("B"))
    return out


def shm_write_frame_seconds(df: Any, folder: Path) -> float:
    """Seconds to write a DataFrame's own data buffers, as they are in memory, into a new file in ``folder``.

    The physical limit for binding that frame, measured next to each binding run
    and with no extra copy of the data in memory.
    """
    return _timed_write(frame_buffers(df), folder)


def kernel_start_seconds(folder: Path, code: str = "pass") -> float:
    """Launch a kernel and get the reply to its first ``execute(code)``; the kernel is then stopped."""
    sub = Path(tempfile.mkdtemp(dir=folder))
    kernel = RawKernel(sub)
    try:
        t0 = time.perf_counter()
        kernel.start()
        status = kernel.execute(code)
        elapsed = time.perf_counter() - t0
        if status != "ok":
            raise RuntimeError(f"raw kernel: {code!r} ended with status {status}")
        return elapsed
    finally:
        kernel.stop()


def execute_round_trips(folder: Path, count: int, code: str = "pass", idle: float = 0.0) -> list[float]:
    """Seconds per ``execute(code)`` round trip on one running kernel (after a few warm-up calls).

    ``idle`` seconds of sleep before each call reproduce a harness turn, where
    the kernel waits while the model answers: a kernel (and a vCPU) woken from
    idle answers more slowly than one kept busy by back-to-back calls.
    """
    sub = Path(tempfile.mkdtemp(dir=folder))
    kernel = RawKernel(sub)
    try:
        kernel.start()
        for _ in range(5):
            kernel.execute(code)
        out = []
        for _ in range(count):
            if idle:
                time.sleep(idle)
            t0 = time.perf_counter()
            kernel.execute(code)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        kernel.stop()


def http_round_trips(url: str, count: int) -> list[float]:
    """Seconds per chat-completions POST to the scripted server with the standard library (no litellm)."""
    import json
    import urllib.request

    body = json.dumps({"model": "raw", "messages": [{"role": "user", "content": "hi"}]}).encode()
    out = []
    for i in range(count + 3):
        request = urllib.request.Request(url.rstrip("/") + "/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        if i >= 3:
            out.append(time.perf_counter() - t0)
    return out
