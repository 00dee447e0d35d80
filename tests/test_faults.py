"""Fault injection: what model code, the child kernel and the model API can do wrong, and how a run copes.

Every fault must end in a clear, recorded outcome: the block's error goes back
to the model as a short traceback and the run goes on; a stuck or dead kernel
is replaced and the model is told what was lost; API failures are retried by
litellm within ``num_retries`` and without spending the call budget; the user
interrupting the cell leaves nothing behind but the partial trajectory.

Not repeated here: the notebook process itself dying mid-run is covered by
``tests/test_runlog.py::test_killed_notebook_process_loses_nothing`` (the run
log keeps everything done so far and the orphaned REPL exits).
"""

from __future__ import annotations

import _thread
import os
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from rlm_magic import prompts
from rlm_magic.events import CodeStarted, RunFinished
from rlm_magic.result import RLMResult
from rlm_magic.scripted import Reply, Request, ScriptedServer, code_reply
from rlm_magic.workspace import run_dirs

from .conftest import kernel_children

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20


def root_prompts(server: ScriptedServer) -> list[str]:
    return [r.prompt for r in server.requests_for("root")]


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Heartbeat:
    """Measures how responsive this (notebook) process stays: the longest gap between 20 ms ticks, and peak RSS."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.peak_rss = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.02):
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self.peak_rss = max(self.peak_rss, rss_mib())
            last = now

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def my_scratch_dirs() -> list[Path]:
    """Scratch folders (``rlm-*`` in /dev/shm and $TMPDIR) owned by this process."""
    return [path for path, pid in run_dirs() if pid == os.getpid()]


# --------------------------------------------------------------------------- #
# Errors raised by model code
# --------------------------------------------------------------------------- #


RAISING = {
    "code-error": ("print('before')\n1/0", "ZeroDivisionError"),
    "syntax-error": ("def f(:\n    pass", "SyntaxError"),
    "keyboard-interrupt": ("raise KeyboardInterrupt('raised by the model')", "KeyboardInterrupt"),
    "system-exit": ("raise SystemExit(3)", "SystemExit"),
    "sys-exit": ("import sys\nsys.exit('bye')", "SystemExit"),
    "exit": ("exit()", "SystemExit"),
    "quit": ("quit()", "SystemExit"),
}


@pytest.mark.parametrize("case", list(RAISING))
def test_raised_errors_are_reported_briefly_and_the_run_goes_on(make_rlm, server, case) -> None:
    code, ename = RAISING[case]
    server.add("root", code_reply("import os\nkept = 'yes'\nprint(os.getpid())"), code_reply(code),
               code_reply("print(os.getpid(), kept)\nSUBMIT('went on')"))
    res = make_rlm().run("q", x=1)
    assert res.status == "finished" and res.answer == "went on", (res.status, res.error)
    fault = res.turns[1].code[0]
    assert fault.code == code and fault.error is not None and fault.error.startswith(ename), fault.error
    assert not fault.timed_out and res.turns[1].note is None  # no kernel replacement
    lines = fault.output.strip().splitlines()
    assert 1 <= len(lines) <= 13, fault.output  # a short traceback, not IPython's full one
    assert ename in fault.output
    if case in ("exit", "quit"):
        assert "exit() and quit() are disabled in this REPL; finish with SUBMIT" in fault.error
    # Same kernel, same variables afterwards; the model saw the error.
    first_pid = res.turns[0].code[0].output.strip()
    assert res.turns[2].code[0].output.split() == [first_pid, "yes", "SUBMIT", "received", "(answer)."]
    assert ename in root_prompts(server)[2]


# --------------------------------------------------------------------------- #
# Code that runs too long
# --------------------------------------------------------------------------- #


def test_infinite_loop_is_interrupted_at_the_timeout(make_rlm, server) -> None:
    server.add("root", code_reply("keep = 123\nimport os\nprint(os.getpid())"),
               code_reply("while True:\n    pass"),
               code_reply("print(os.getpid(), keep)\nSUBMIT(keep)"))
    res = make_rlm(timeout=2.0).run("q", x=1)
    assert res.status == "finished" and res.answer == 123, (res.status, res.error)
    loop = res.turns[1].code[0]
    assert loop.timed_out and loop.error.startswith("KeyboardInterrupt")
    assert 2.0 <= loop.duration < 6, loop.duration
    assert "variables are kept" in loop.output and res.turns[1].note is None
    assert res.turns[2].code[0].output.split()[:2] == [res.turns[0].code[0].output.strip(), "123"]
    assert "(timed out)" in root_prompts(server)[2]


def test_code_ignoring_sigint_is_killed_and_the_kernel_replaced(make_rlm, server) -> None:
    """SIG_IGN + busy loop: interrupt, grace, then a new kernel with the bound values, and the model is told.

    Product bug: the rebinding fails, because ``Engine._start`` deletes the
    binding files once the first kernel loaded them, and ``_after_restart``
    re-runs the bootstrap with the same (now missing) paths: the run ends with
    ``error: child kernel set-up failed: FileNotFoundError``.
    """
    server.add("root",
               code_reply("import os\nmine = 'model variable'\nprint(os.getpid())"),
               code_reply("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"),
               code_reply("import os\nprint(os.getpid(), x, frame.shape, 'mine' in globals())"),
               code_reply("SUBMIT('replaced')"))
    started = time.monotonic()
    res = make_rlm(timeout=2.0).run("q", x=5, frame=pd.DataFrame({"a": [1, 2, 3]}))
    old_pid = int(res.turns[0].code[0].output.strip())
    assert not pid_alive(old_pid), "the stuck kernel is still running"
    assert res.status == "finished" and res.answer == "replaced", (res.status, res.error)
    stuck = res.turns[1].code[0]
    assert stuck.timed_out and stuck.error is not None
    assert res.turns[1].note == prompts.kernel_lost("the code did not stop when interrupted")
    assert prompts.kernel_lost("the code did not stop when interrupted") in root_prompts(server)[2]
    new_pid, rest = res.turns[2].code[0].output.strip().split(" ", 1)
    assert int(new_pid) != old_pid and rest == "5 (3, 1) False", res.turns[2].code[0].output
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- #
# Memory and output floods
# --------------------------------------------------------------------------- #


def test_memory_bomb_is_contained_and_the_notebook_stays_responsive(make_rlm, server) -> None:
    bomb = ("chunks = []\ntry:\n    while len(chunks) < 64:\n        chunks.append(bytearray(64 << 20))\n"
            "except MemoryError:\n    print('MemoryError after', len(chunks) * 64, 'MiB')\ndel chunks")
    server.add("root", code_reply(bomb), "FINAL(the bomb was contained)")
    before = rss_mib()
    with Heartbeat() as beat:
        res = make_rlm(memory_limit=1 << 30).run("q", x=1)
    assert res.status == "finished" and res.answer == "the bomb was contained", (res.status, res.error)
    assert "MemoryError after" in res.turns[0].code[0].output
    assert beat.max_gap < 2.0, f"the notebook froze for {beat.max_gap:.2f} s"
    assert beat.peak_rss - before < 200, f"the notebook's RSS grew by {beat.peak_rss - before:.0f} MiB"


def test_memory_limit_leaves_room_above_the_kernels_own_footprint(make_rlm, server) -> None:
    """``memory_limit=1 GiB`` must leave model code most of that GiB.

    Product bug: the limit is RLIMIT_AS, an address-space limit, set to
    ``memory_limit`` (+2x the bound bytes) in absolute terms, but an idle
    child kernel (ipykernel threads with their stacks and malloc arenas,
    pandas, pyarrow) already maps about 1 GiB of address space.  With 1 GiB
    the REPL cannot allocate anything: even SUBMIT's 1 MiB receive buffer and
    IPython's traceback formatting fail with MemoryError.
    """
    server.add("root", code_reply("block = bytearray(256 << 20)\nprint('allocated', len(block) >> 20, 'MiB')\n"
                                  "SUBMIT('room')"))
    res = make_rlm(memory_limit=1 << 30).run("q", x=1)
    run = res.turns[0].code[0]
    assert run.error is None and "allocated 256 MiB" in run.output, (run.error, run.output[-500:])
    assert res.status == "finished" and res.answer == "room"


def test_huge_print_is_capped_and_the_notebook_stays_responsive(make_rlm, server) -> None:
    server.add("root", code_reply("print('x' * 100_000_000)"), code_reply("SUBMIT('done')"))
    before = rss_mib()
    with Heartbeat() as beat:
        res = make_rlm(max_output_chars=10_000, timeout=120).run("q", x=1)
    after = rss_mib()
    assert res.status == "finished", (res.status, res.error)
    run = res.turns[0].code[0]
    assert run.output_chars == 100_000_001 and not run.timed_out
    assert len(run.output) < 10_300 and "output truncated" in run.output
    assert len(root_prompts(server)[1]) < 15_000  # the model sees the cap, not 100 MB
    assert beat.max_gap < 2.0, f"the notebook froze for {beat.max_gap:.2f} s"
    print(f"notebook RSS: before {before:.0f} MiB, peak {beat.peak_rss:.0f} MiB, after {after:.0f} MiB")
    # The whole 100 MB message crosses into the notebook (jupyter-client decodes it) before the cap applies.
    assert beat.peak_rss - before < 1_000, f"peak notebook RSS grew by {beat.peak_rss - before:.0f} MiB"
    assert after - before < 150, f"the notebook kept {after - before:.0f} MiB after the run"


# --------------------------------------------------------------------------- #
# The child kernel dying
# --------------------------------------------------------------------------- #


DEATHS = {
    "os-exit": "import os\nos._exit(1)",
    "segfault": "import ctypes\nctypes.string_at(0)",
    "sigkill": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.parametrize("case", list(DEATHS))
def test_kernel_death_is_detected_quickly_and_handled(make_rlm, server, case) -> None:
    """No bound values here, so the replacement does not depend on rebinding (see the next test)."""
    server.add("root", code_reply("import os\nmine = 1\nprint(os.getpid())"), code_reply(DEATHS[case]),
               code_reply("import os\nprint(os.getpid(), 'mine' in globals())"), code_reply("SUBMIT('survived')"))
    res = make_rlm().run("q")
    assert res.status == "finished" and res.answer == "survived", (res.status, res.error)
    old_pid = int(res.turns[0].code[0].output.strip())
    death = res.turns[1].code[0]
    assert death.error == "KernelDied: the REPL process ended" and not death.timed_out
    # Detection polls every 0.5 s; the duration also covers starting the replacement kernel.
    assert death.duration < 5, f"death took {death.duration:.1f} s to handle"
    assert not pid_alive(old_pid)
    assert res.turns[1].note == prompts.kernel_lost("the kernel process died")
    assert prompts.kernel_lost("the kernel process died") in root_prompts(server)[2]
    new_pid, mine = res.turns[2].code[0].output.split()
    assert int(new_pid) != old_pid and mine == "False"


def test_bound_values_are_rebound_after_the_kernel_dies(make_rlm, server) -> None:
    """Product bug (same cause as the SIGINT test): the binding files are gone when the new kernel needs them."""
    server.add("root", code_reply("import os\nos._exit(1)"),
               code_reply("print(x, len(text), frame['a'].sum())\nSUBMIT('rebound')"))
    res = make_rlm().run("q", x=5, text="t" * 1000, frame=pd.DataFrame({"a": [1, 2, 3]}))
    assert res.status == "finished" and res.answer == "rebound", (res.status, res.error)
    assert res.turns[1].code[0].output.startswith("5 1000 6")


def test_more_deaths_than_max_restarts_end_the_run_clearly(make_rlm, server) -> None:
    """Product bug: the block whose death ends the run is missing from ``res.turns`` (and no CodeFinished
    event is emitted), because ``Engine._execute`` raises from ``_after_restart`` before recording it."""
    server.add("root", code_reply("import os\nprint(os.getcwd())\nos._exit(1)"), code_reply("import os\nos._exit(2)"),
               code_reply("SUBMIT('never')"))
    res = make_rlm(max_restarts=1).run("q")
    assert res.status == "error"
    assert res.error == "RuntimeError: the REPL kernel was lost 2 times; giving up", res.error
    assert server.remaining("root") == 1  # the model was not asked again
    assert kernel_children() == [] and my_scratch_dirs() == []
    assert len(res.turns) == 2
    assert [len(t.code) for t in res.turns] == [1, 1], "the fatal block is not in the trajectory"
    assert all(t.code[0].error.startswith("KernelDied") for t in res.turns)


# --------------------------------------------------------------------------- #
# Model API failures
# --------------------------------------------------------------------------- #


class Timed:
    """Root handler: serves ``replies`` in order and records when each request arrived."""

    def __init__(self, *replies: Reply | str) -> None:
        self.replies = list(replies)
        self.times: list[float] = []

    def __call__(self, req: Request) -> Reply | str:
        self.times.append(time.monotonic())
        if not self.replies:
            return Reply(status=500, error_message="script exhausted")
        return self.replies.pop(0)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


FAILURES = {
    "429": Reply(status=429, error_message="slow down"),
    "500": Reply(status=500, error_message="boom"),
    "timeout": Reply(content=code_reply("SUBMIT('too late')"), delay=3.0),
    "malformed-json": Reply(content=code_reply("SUBMIT('garbled')"), malformed=True),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_api_failure_is_retried_with_backoff_within_the_budget(make_rlm, server, case) -> None:
    """Two failures, then a good reply: one logical root call, no budget spent on retries, backoff between tries.

    Product bug for ``malformed-json``: a 200 response whose body is not valid
    JSON is never retried (streamed: ``MidStreamFallbackError``; unstreamed:
    ``InternalServerError ... LiteLLM Retried: 2 times`` although the server saw
    one request), so the run ends with status ``error`` at the first one.
    """
    handler = Timed(FAILURES[case], FAILURES[case], code_reply("SUBMIT('ok')"))
    server.set_handler("root", handler)
    started = time.monotonic()
    res = make_rlm(num_retries=2, request_timeout=1.0, max_llm_calls=1).run("q", x=1)
    assert res.status == "finished" and res.answer == "ok", (res.status, res.error)
    assert len(handler.times) == 3
    assert [c.role for c in res.calls] == ["root"] and res.calls[0].error is None  # retries are not budget
    assert all(g >= 0.2 for g in handler.gaps()), f"no backoff between retries: {handler.gaps()}"
    assert time.monotonic() - started < 60


def test_api_failures_beyond_num_retries_end_the_run_with_error(make_rlm, server) -> None:
    handler = Timed(*[Reply(status=500, error_message="still broken")] * 5)
    server.set_handler("root", handler)
    res = make_rlm(num_retries=2).run("q", x=1)
    assert res.status == "error" and res.error.startswith("root model call failed") and "still broken" in res.error
    assert len(handler.times) == 3 and len(res.turns) == 1 and res.answer is None
    assert kernel_children() == [] and my_scratch_dirs() == []


def test_empty_none_and_reasoning_only_replies_are_nudged(make_rlm, server) -> None:
    server.add("root", Reply(content=None), Reply(content=None, reasoning="I am thinking hard."),
               Reply(content=""), Reply(content="   \n"), "I will look at the data next.",
               code_reply("SUBMIT('after the empties')"))
    res = make_rlm().run("q", x=1)
    assert res.status == "finished" and res.answer == "after the empties", (res.status, res.error)
    assert len(res.turns) == 6 and all(t.code == [] and t.final is None for t in res.turns[:5])
    assert res.turns[1].reasoning == "I am thinking hard."
    asked = root_prompts(server)
    for i in (1, 2, 3, 4):
        assert prompts.EMPTY_REPLY in asked[i], asked[i]
    assert prompts.NO_CODE in asked[5]


# --------------------------------------------------------------------------- #
# The user interrupting the cell
# --------------------------------------------------------------------------- #


def interrupt_during_block(n: int, after: float = 0.5):  # noqa: ANN201
    """Subscriber: when block ``n`` starts, interrupt the calling (cell) thread as Jupyter's interrupt does.

    The interrupt is cancelled if the run finishes first, so it can never hit a later test.
    """
    seen = []
    timers: list[threading.Timer] = []

    def on_event(event: Any) -> None:
        if isinstance(event, CodeStarted):
            seen.append(event)
            if len(seen) == n:
                timers.append(threading.Timer(after, _thread.interrupt_main))
                timers[-1].start()
        elif isinstance(event, RunFinished):
            for timer in timers:
                timer.cancel()

    return on_event


def test_user_interrupt_leaves_nothing_behind_but_the_partial_trajectory(make_rlm, server) -> None:
    server.add("root", code_reply("import os\nprint(os.getcwd(), os.getpid())"),
               code_reply("import time\ntime.sleep(60)"), code_reply("SUBMIT('never')"))
    rlm = make_rlm(on_event=interrupt_during_block(2))
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        rlm.run("q", x=1)
    assert time.monotonic() - started < 20
    partial: RLMResult = rlm.last_result
    assert partial.status == "interrupted" and len(partial.turns) == 2
    cwd, pid = partial.turns[0].code[0].output.split()
    assert not Path(cwd).parent.exists(), "the run's scratch folder is still there"
    assert not pid_alive(int(pid)) and kernel_children() == [] and my_scratch_dirs() == []
    assert server.remaining("root") == 1


def test_user_interrupt_in_the_magic_keeps_the_partial_run_in_underscore_rlm(shell, server, monkeypatch) -> None:
    from rlm_magic.magic import RLMMagics

    monkeypatch.setattr(RLMMagics, "_attach_view", lambda self, rlm, options: rlm.subscribe(interrupt_during_block(1)))
    server.add("root", code_reply("import os\nprint(os.getpid())\nimport time\ntime.sleep(60)"))
    result = shell.run_cell('%%rlm x=1 question="q"')
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    partial = shell.user_ns["_rlm"]
    assert partial.status == "interrupted" and len(partial.turns) == 1
    assert kernel_children() == [] and my_scratch_dirs() == []
