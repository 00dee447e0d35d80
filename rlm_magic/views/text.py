"""A plain-text rendering of a run, for terminals, nbconvert, nbval and scripts.

It is deterministic on purpose: no timestamps, durations, ids or costs, so a
replayed run prints exactly what the recorded run printed and nbval can
compare it.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..events import (
    BatchFinished,
    CodeFinished,
    CodeStarted,
    Event,
    ModelCalled,
    Notice,
    ReplyParsed,
    RunFinished,
    RunStarted,
    TurnStarted,
)
from ..result import RLMResult

STATUS_TEXT = {
    "finished": "finished",
    "max_iterations": "stopped: turn budget exhausted",
    "max_llm_calls": "stopped: model-call budget exhausted",
    "max_cost": "stopped: cost budget exhausted",
    "error": "failed",
    "interrupted": "interrupted",
    "running": "running",
}


def _excerpt(text: str, lines: int, width: int = 160) -> list[str]:
    rows = text.rstrip("\n").splitlines() or [""]
    out = [r if len(r) <= width else r[: width - 1] + "…" for r in rows[:lines]]
    if len(rows) > lines:
        out.append(f"… ({len(rows) - lines} more lines)")
    return out


class TextView:
    """Prints one compact block per turn as events arrive."""

    def __init__(self, stream: TextIO | None = None, *, code_lines: int = 30, output_lines: int = 12) -> None:
        self.stream = stream
        self.code_lines = code_lines
        self.output_lines = output_lines
        self._subs: dict[int, int] = {}

    def _print(self, *lines: str) -> None:
        stream = self.stream or sys.stdout
        for line in lines:
            print(line, file=stream)
        stream.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            binds = ", ".join(f"{k}: {v}" for k, v in event.bindings.items()) or "none"
            self._print(f"rlm: {event.model} (sub-model {event.sub_model}, mode {event.mode})", f"rlm: variables: {binds}")
        elif isinstance(event, TurnStarted):
            self._subs[event.turn] = 0
            self._print(f"── turn {event.turn} ──")
        elif isinstance(event, ReplyParsed):
            if not event.code:
                first = next((ln.strip() for ln in event.text.splitlines() if ln.strip()), "")
                self._print("  (no code)" + (f" {first[:150]}" if first else " empty reply"))
        elif isinstance(event, CodeStarted):
            self._print(*(">>> " + ln if i == 0 else "... " + ln for i, ln in enumerate(_excerpt(event.code, self.code_lines))))
        elif isinstance(event, CodeFinished):
            run = event.run
            if run.output.strip():
                self._print(*("    " + ln for ln in _excerpt(run.output, self.output_lines)))
            if run.error:
                self._print(f"  ! {run.error.splitlines()[0][:200]}")
        elif isinstance(event, ModelCalled) and event.call.role == "sub":
            self._subs[event.turn] = self._subs.get(event.turn, 0) + 1
        elif isinstance(event, BatchFinished):
            self._print(f"  llm_query_batched: {event.size} prompts" + (f", {event.errors} failed" if event.errors else ""))
        elif isinstance(event, Notice):
            self._print(f"  [{event.level}] {event.text}")
        elif isinstance(event, RunFinished):
            res = event.result
            subs = sum(1 for c in res.calls if c.role == "sub")
            self._print(
                f"── {STATUS_TEXT.get(res.status, res.status)} after {len(res.turns)} turn(s), "
                f"{len(res.calls)} model call(s) ({subs} sub-calls) ──"
            )


def format_value(value: Any) -> str:
    from ..describe import short_type

    if isinstance(value, str):
        return value
    return short_type(value)


def result_markdown(result: RLMResult) -> str:
    """The answer first, then what landed and how the run ended."""
    answer = result.answer
    parts = [answer if isinstance(answer, str) else f"`{format_value(answer)}`" if answer is not None else "*(no answer)*"]
    if result.fields:
        rows = "\n".join(f"| `{k}` | {format_value(v) if not isinstance(v, str) else 'str'} |" for k, v in result.fields.items())
        parts.append("| field | value |\n|---|---|\n" + rows)
    parts.append(f"*{STATUS_TEXT.get(result.status, result.status)} after {len(result.turns)} turn(s), "
                 f"{len(result.calls)} model call(s)*")
    return "\n\n".join(parts)
