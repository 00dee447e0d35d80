"""Soak: 200 consecutive runs in one notebook process, on the realistic path (warm spare kernels on).

Some runs fail on purpose: every 10th root-model call answers HTTP 500 (with
``num_retries=0`` that run ends with status ``error``), and every 7th run's
first block raises.  After a warm-up of 20 runs the test takes a baseline and,
at the end, checks that nothing piles up in the notebook process:

* processes: at most the one warm spare kernel (and no zombies) below this process;
* scratch folders: at most the spare's ``rlm-*`` folder in /dev/shm and $TMPDIR;
* file descriptors (/proc/self/fd): at most 10 more than at the baseline;
* threads (threading.active_count): at most 4 more;
* pending asyncio tasks on the engine loop: at most 2 more;
* memory: RSS at most 150 MiB above the baseline.

Selected with ``-k soak``; it prints the per-run cost.  (No custom marker:
this suite registers markers in pyproject.toml, which this file may not touch.)
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import statistics
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from rlm_magic.runner import background_loop, run_sync
from rlm_magic.scripted import Reply, Request, code_reply
from rlm_magic.workspace import POOL, run_dirs

RUNS = 200
WARMUP = 20
MAX_RSS_GROWTH_MIB = 150
MAX_FD_GROWTH = 10
MAX_THREAD_GROWTH = 4
MAX_TASK_GROWTH = 2


def descendants() -> list[tuple[int, str, str]]:
    """(pid, state, command) of every process below this one."""
    from rlm_magic.sandbox import descendants as below

    out = []
    for pid in below(os.getpid()):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        out.append((pid, state, cmd))
    return out


def my_scratch_dirs() -> list[Path]:
    """Scratch folders (``rlm-*`` in /dev/shm and $TMPDIR) owned by this process."""
    return [path for path, pid in run_dirs() if pid == os.getpid()]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _pending_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if not t.done()]) - 1  # minus this one


def snapshot() -> dict[str, float]:
    if POOL._spare is not None:  # let the spare finish starting, so every snapshot sees the same state
        run_sync(asyncio.wait([POOL._spare]), timeout=120)
    background_loop()
    return {
        "kernels": sum(1 for _, state, cmd in descendants() if "ipykernel" in cmd and state != "Z"),
        "zombies": sum(1 for _, state, _ in descendants() if state == "Z"),
        "processes": len(descendants()),
        "scratch_dirs": len(my_scratch_dirs()),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "tasks": run_sync(_pending_tasks(), timeout=30),
        "rss_mib": rss_mib(),
    }


@pytest.mark.timeout(1200)
def test_soak_200_runs_with_warm_kernels_leak_nothing(make_rlm, server, tmp_path) -> None:
    calls = itertools.count(1)
    lock = threading.Lock()

    def root(req: Request) -> Reply | str:
        with lock:
            n = next(calls)
        if n % 10 == 0:
            return Reply(status=500, error_message="scripted outage")
        run = int(re.search(r"soak run (\d+)", req.messages[1]["content"]).group(1))
        if len(req.messages) == 2:  # first turn
            if run % 7 == 0:
                return code_reply("print(frame['v'].sum())\n1 / 0")
            return code_reply("print(frame['v'].sum(), len(text), x)")
        return code_reply("SUBMIT(answer=x * 2, total=int(frame['v'].sum()))")

    server.set_handler("root", root)
    rlm = make_rlm(warm_kernels=True, run_log_dir=str(tmp_path / "logs"))
    frame = pd.DataFrame({"k": [f"k{i % 13}" for i in range(1000)], "v": range(1000)})
    text = "lorem ipsum " * 500

    durations: list[float] = []
    statuses: list[str] = []
    base: dict[str, float] | None = None
    started = time.monotonic()
    for i in range(1, RUNS + 1):
        t0 = time.monotonic()
        res = rlm.run(f"soak run {i}: what is twice x?", x=i, frame=frame, text=text)
        durations.append(time.monotonic() - t0)
        statuses.append(res.status)
        if res.status == "finished":
            assert res.answer == 2 * i and res.fields["total"] == 499500, (i, res.answer, res.fields)
            if i % 7 == 0:
                assert res.turns[0].code[0].error.startswith("ZeroDivisionError")
        else:
            assert res.status == "error" and "scripted outage" in res.error, (i, res.status, res.error)
        del res
        if i == WARMUP:
            base = snapshot()
    total = time.monotonic() - started
    end = snapshot()
    assert base is not None

    steady = durations[WARMUP:]
    print(f"\nsoak: {RUNS} runs in {total:.1f} s; per run after warm-up: mean {statistics.mean(steady):.2f} s, "
          f"median {statistics.median(steady):.2f} s, p95 {sorted(steady)[int(len(steady) * 0.95)]:.2f} s, "
          f"max {max(steady):.2f} s; first run {durations[0]:.2f} s")
    print(f"soak: statuses {dict((s, statuses.count(s)) for s in set(statuses))}")
    print(f"soak: baseline after {WARMUP} runs {base}")
    print(f"soak: after {RUNS} runs           {end}")

    assert statuses.count("error") >= RUNS // 6 and statuses.count("finished") >= RUNS // 2  # the faults happened
    assert len(list((tmp_path / "logs").glob("*.jsonl"))) == RUNS  # one closed log per run (expected files)
    assert end["kernels"] <= 1, f"{end['kernels']} kernels below the notebook (at most the warm spare)"
    assert end["zombies"] == 0, descendants()
    # Other tests' long-lived helpers (a JupyterLab server kept for the browser tests) may be children
    # too; what matters is that 180 runs added none.
    assert end["processes"] <= base["processes"], descendants()
    assert end["scratch_dirs"] <= 1, my_scratch_dirs()
    assert end["fds"] - base["fds"] <= MAX_FD_GROWTH, (base["fds"], end["fds"], sorted(os.listdir("/proc/self/fd")))
    assert end["threads"] - base["threads"] <= MAX_THREAD_GROWTH, [t.name for t in threading.enumerate()]
    assert end["tasks"] - base["tasks"] <= MAX_TASK_GROWTH, (base["tasks"], end["tasks"])
    assert end["rss_mib"] - base["rss_mib"] < MAX_RSS_GROWTH_MIB, (base["rss_mib"], end["rss_mib"])
