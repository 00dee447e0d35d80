"""Measurements of rlm_magic itself, driven by a zero-latency scripted model.

Every model call goes through litellm's real code path to a
:class:`rlm_magic.scripted.ScriptedServer` on 127.0.0.1; nothing reaches a real
API.  Times are ``time.perf_counter()`` stamps taken by an ``RLM(on_event=...)``
subscriber (events arrive on the thread that called ``run()``) and by the
scripted server's handler (when a root request arrives).  On Linux
``perf_counter`` is CLOCK_MONOTONIC, shared by all processes, so a stamp the
child kernel prints can be compared with the parent's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_magic import RLM
from rlm_magic.events import BatchFinished, CodeFinished, Event, RunFinished, RunStarted, TurnStarted
from rlm_magic.runner import run_sync
from rlm_magic.scripted import Reply, ScriptedServer, code_reply
from rlm_magic.workspace import POOL, shutdown_all

ROOT = "openai/root"
SUB = "openai/sub"

#: Printed by a first code block: the kernel's pid and its /proc/self/status memory lines.
CHILD_STATUS = (
    "import os as _o, json as _j\n"
    "_m = {}\n"
    "for _l in open('/proc/self/status'):\n"
    "    _k, _, _v = _l.partition(':')\n"
    "    if _k in ('RssAnon', 'RssFile', 'RssShmem', 'VmHWM', 'VmRSS'):\n"
    "        _m[_k] = int(_v.split()[0]) * 1024\n"
    "print('BENCH', _o.getpid(), _j.dumps(_m), len(context))\n"
)


class RootScript:
    """Scripted root model: replies in order, stamping when each request arrives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.replies: list[Reply | str] = []
        self.arrivals: list[float] = []
        self.first_prompt_chars: int | None = None

    def load(self, *replies: Reply | str) -> None:
        with self.lock:
            self.replies = list(replies)
            self.arrivals = []
            self.first_prompt_chars = None

    def __call__(self, request: Any) -> Reply | str:
        now = time.perf_counter()
        with self.lock:
            self.arrivals.append(now)
            if self.first_prompt_chars is None:
                self.first_prompt_chars = sum(len(m.get("content") or "") for m in request.messages)
            if not self.replies:
                return Reply(status=500, error_message="benchmark script ran out of replies")
            return self.replies.pop(0)


class SubScript:
    """Scripted sub-model: a short reply after ``delay`` seconds."""

    def __init__(self) -> None:
        self.delay = 0.0

    def __call__(self, request: Any) -> Reply:
        return Reply(content=f"summary of {len(request.prompt)} characters", delay=self.delay)


@dataclass
class Recording:
    """Events of one run with their perf_counter stamps."""

    called: float = 0.0
    returned: float = 0.0
    events: list[tuple[float, Event]] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        self.events.append((time.perf_counter(), event))

    def first(self, kind: type, **match: Any) -> float | None:
        for stamp, event in self.events:
            if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
                return stamp
        return None

    def all(self, kind: type) -> list[tuple[float, Any]]:
        return [(s, e) for s, e in self.events if isinstance(e, kind)]

    @property
    def result(self) -> Any:
        for _, event in self.events:
            if isinstance(event, RunFinished):
                return event.result
        return None


#: Listen backlog for the scripted server.  ScriptedServer inherits socketserver's
#: default of 5: with more concurrent connections than that (llm_query_batched
#: opens up to sub_concurrency at once) Linux drops the extra SYNs and the
#: clients retry after 1 s, then 3 s, which no real provider would cause.
BACKLOG = 1024


class Harness:
    """One scripted server and the RLM runs against it."""

    def __init__(self, backlog: int | None = BACKLOG) -> None:
        import rlm_magic.scripted as scripted

        self.root = RootScript()
        self.sub = SubScript()
        default = scripted._Server.request_queue_size
        if backlog is not None:
            scripted._Server.request_queue_size = backlog  # read once, by listen() in start()
        try:
            self.server = ScriptedServer({"root": self.root, "sub": self.sub, "raw": lambda request: "ok"}).start()
        finally:
            scripted._Server.request_queue_size = default
        self.backlog = backlog if backlog is not None else default
        # run logs (on by default) go to a scratch folder that close() removes, not ~/.cache
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"rlm-bench-{os.getpid()}-runlogs-"))

    def close(self, *, kernels: bool = True) -> None:
        """Stop the server and remove the run logs; with ``kernels``, also every spare and session kernel."""
        try:
            if kernels:
                run_sync(shutdown_all(), timeout=120)
        finally:
            self.server.stop()
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def rlm(self, rec: Recording, **settings: Any) -> RLM:
        base: dict[str, Any] = dict(model=ROOT, sub_model=SUB, api_base=self.server.url, num_retries=0,
                                    verbose=False, timeout=600.0, max_iterations=30, max_llm_calls=300)
        if "run_log_dir" in RLM.class_trait_names():
            base["run_log_dir"] = str(self.log_dir)
        base.update(settings)
        return RLM(on_event=rec, **base)

    def run(self, replies: list[Reply | str], bindings: dict[str, Any], question: str = "benchmark question",
            **settings: Any) -> Recording:
        rec = Recording()
        rlm = self.rlm(rec, **settings)
        self.root.load(*replies)
        rec.called = time.perf_counter()
        result = rlm.run(question, **bindings)
        rec.returned = time.perf_counter()
        if result.status != "finished":
            raise RuntimeError(f"benchmark run ended with status {result.status}: {result.error}")
        return rec

    @staticmethod
    def settle(pause: float = 0.3) -> None:
        """Wait until the warm spare kernel (if any) has started, then let the CPU calm down."""
        spare = POOL._spare
        if spare is not None:
            run_sync(spare, timeout=180)
        time.sleep(pause)


# ----------------------------------------------------------------------
# the measures


def cold_start(h: Harness) -> dict[str, float]:
    """run() call -> TurnStarted and CodeFinished of turn 1, with no warm kernel (one is started for the run,
    alongside the first model call)."""
    Harness.settle(0.2)
    rec = h.run([code_reply("print('hello from the REPL')"), code_reply("SUBMIT(1)")], {"context": "tiny"},
                warm_kernels=False)
    return {"to_first_code": rec.first(CodeFinished, turn=1) - rec.called,
            "call_to_turn": rec.first(TurnStarted, turn=1) - rec.called}


def warm_start(h: Harness) -> dict[str, float]:
    """Second run with warm_kernels=True: run() -> first CodeFinished, and RunStarted -> first TurnStarted."""
    Harness.settle()
    rec = h.run([code_reply("print('hello from the REPL')"), code_reply("SUBMIT(1)")], {"context": "tiny"},
                warm_kernels=True)
    first = rec.result.turns[0]
    return {
        "to_first_code": rec.first(CodeFinished, turn=1) - rec.called,
        "run_started_to_turn": rec.first(TurnStarted, turn=1) - rec.first(RunStarted),
        "call_to_turn": rec.first(TurnStarted, turn=1) - rec.called,
        "model_latency": first.root_call.latency,
        "execute": first.code[0].duration,
    }


def per_turn(h: Harness, turns: int) -> dict[str, list[float]]:
    """``turns`` turns each running ``pass``: per-turn time minus the model call's own latency."""
    Harness.settle()
    replies = [code_reply("pass")] * turns + [code_reply("SUBMIT(1)")]
    rec = h.run(replies, {"context": "tiny"}, warm_kernels=True, max_iterations=turns + 2)
    starts = {e.turn: s for s, e in rec.all(TurnStarted)}
    result = rec.result
    overhead, whole, latency, execute = [], [], [], []
    for turn in result.turns[:turns]:
        span = starts[turn.index + 1] - starts[turn.index]
        whole.append(span)
        latency.append(turn.root_call.latency)
        overhead.append(span - turn.root_call.latency)
        execute.append(turn.code[0].duration)
    return {"overhead": overhead, "turn": whole, "latency": latency, "execute": execute}


def bind(h: Harness, value: Any) -> dict[str, Any]:
    """Bind ``value`` as ``context`` on a warm kernel; time, memory and the root prompt's size."""
    Harness.settle()
    before = _own_status()
    _reset_peak()
    rec = h.run([code_reply(CHILD_STATUS), code_reply("SUBMIT(1)")], {"context": value}, warm_kernels=True)
    after = _own_status()
    out = rec.result.turns[0].code[0].output
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"the first block printed no BENCH line: {out[:500]!r}")
    _, pid, rest = line.split(" ", 2)
    status, length = rest.rsplit(" ", 1)
    child = json.loads(status)
    return {
        "run_started_to_turn": rec.first(TurnStarted, turn=1) - rec.first(RunStarted),
        "call_to_turn": rec.first(TurnStarted, turn=1) - rec.called,
        "child_pid": int(pid),
        "child": child,
        "child_len": int(length),
        "parent_rss_before": before.get("VmRSS", 0),
        "parent_peak": after.get("VmHWM", 0),
        "parent_extra_peak": after.get("VmHWM", 0) - before.get("VmRSS", 0),
        "root_prompt_chars": h.root.first_prompt_chars,
    }


def result_back(h: Harness, nbytes: int, run_log: bool = False) -> dict[str, Any]:
    """The child builds a frame of ``nbytes`` and SUBMITs it: SUBMIT -> landed in the parent.

    ``run_log`` is off by default here: the run log writes the whole result, the
    landed frame included, as JSON when the run finishes (see the run-log row).
    """
    Harness.settle()
    settings = {"run_log": run_log} if "run_log" in RLM.class_trait_names() else {}
    rows = max(1, nbytes // 45)
    code = (
        "import time, numpy as np, pandas as pd, pyarrow as pa, pyarrow.compute as pc\n"
        f"rows = {rows}\n"
        "rng = np.random.default_rng(1)\n"
        "pool = pa.array([f'cat-{i:05d}-xyz' for i in range(1000)], type=pa.large_string())\n"
        "big = pd.DataFrame({'id': np.arange(rows), 'x': rng.random(rows), 'y': rng.standard_normal(rows),\n"
        "                    'label': pd.array(pc.take(pool, pa.array(rng.integers(0, 1000, rows, dtype=np.int32))),\n"
        "                                      dtype='str')})\n"
        "nbytes = int(big.memory_usage(deep=True, index=False).sum())\n"
        "print('T0', repr(time.perf_counter()), nbytes, flush=True)\n"
        "SUBMIT(big=big)\n"
    )
    rec = h.run([code_reply(code)], {}, warm_kernels=True, **settings)
    out = rec.result.turns[0].code[0].output
    line = next(ln for ln in out.splitlines() if ln.startswith("T0 "))
    _, t0, size = line.split()
    landed = rec.first(CodeFinished, turn=1)
    frame = rec.result.fields["big"]
    ok = type(frame).__name__ == "DataFrame" and len(frame) == rows
    del frame
    rec.result.fields.clear()
    return {"submit_to_landed": landed - float(t0), "submit_to_return": rec.returned - float(t0),
            "nbytes": int(size), "ok": ok}


def batched(h: Harness, prompts: int, delay: float, concurrency: int) -> dict[str, Any]:
    """llm_query_batched of ``prompts`` distinct prompts, each answered after ``delay`` seconds."""
    Harness.settle()
    h.sub.delay = delay
    h.server.max_concurrent = 0
    code = (f"r = llm_query_batched([f'prompt number {{i}}' for i in range({prompts})])\n"
            "print(len(r), sum(not x.startswith('[llm_query error]') for x in r))")
    try:
        rec = h.run([code_reply(code), code_reply("SUBMIT(1)")], {}, warm_kernels=True,
                    sub_concurrency=concurrency, max_llm_calls=prompts + 10)
    finally:
        h.sub.delay = 0.0
    batch = rec.all(BatchFinished)[0][1]
    run = rec.result.turns[0].code[0]
    got, ok = (int(x) for x in run.output.split()[:2])
    return {"batch_elapsed": batch.elapsed, "block": run.duration, "ok": ok == prompts == got,
            "errors": batch.errors, "max_concurrent": h.server.max_concurrent}


WORKLOAD_STEPS = (
    "print(len(context))\nprint(context[:200])",
    "sample = str(context[:2000])\nsummary = llm_query('Summarize this sample of the data:\\n' + sample)\nprint(summary)",
    "SUBMIT(answer=summary)",
)


def workload(h: Harness, value: Any) -> dict[str, Any]:
    """The DSPy comparison's workload (bench/dspy_worker.py runs the same code): three steps."""
    Harness.settle()
    rec = h.run([code_reply(code) for code in WORKLOAD_STEPS], {"context": value}, warm_kernels=True)
    arrivals = list(h.root.arrivals)
    landed = rec.first(CodeFinished, turn=len(WORKLOAD_STEPS))
    steps = [b - a for a, b in zip(arrivals, arrivals[1:])] + [landed - arrivals[-1]]
    answer = rec.result.answer
    return {"start": arrivals[0] - rec.called, "steps": steps, "total": rec.returned - rec.called,
            "to_answer": landed - rec.called, "answer_ok": isinstance(answer, str) and answer.startswith("summary of")}


# ----------------------------------------------------------------------
def _own_status() -> dict[str, int]:
    out = {}
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0), so the next peak is this run's."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
