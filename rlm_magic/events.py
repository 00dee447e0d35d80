"""Typed events the engine emits while a run goes on.

Views (text, widgets), the run log and user callbacks subscribe to these; the
engine never knows who listens.  Events are delivered on the thread that
called :meth:`RLM.run` (the notebook cell's own thread), never on the engine's
background loop, because ipykernel 7 drops widget updates sent from other
threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union

from .result import CodeRun, LLMCall, RLMResult


@dataclass(frozen=True)
class RunStarted:
    question: str
    model: str
    sub_model: str
    mode: str
    bindings: dict[str, str]  # name -> short type description
    max_iterations: int
    max_llm_calls: int
    max_cost: float | None = None


@dataclass(frozen=True)
class TurnStarted:
    turn: int


@dataclass(frozen=True)
class ModelCalled:
    """A model call finished (root, sub or final); carries tokens, cost, latency, error."""

    turn: int
    call: LLMCall


@dataclass(frozen=True)
class ReplyDelta:
    """The root model's reply so far, while it streams (views may show it; logs may skip it)."""

    turn: int
    text: str


@dataclass(frozen=True)
class ReplyParsed:
    """The root model's reply for a turn, with the code it is about to run."""

    turn: int
    text: str
    reasoning: str | None
    code: tuple[str, ...]


@dataclass(frozen=True)
class CodeStarted:
    turn: int
    block: int
    code: str


@dataclass(frozen=True)
class CodeFinished:
    turn: int
    block: int
    run: CodeRun


@dataclass(frozen=True)
class BatchStarted:
    turn: int
    batch: int
    size: int


@dataclass(frozen=True)
class BatchFinished:
    turn: int
    batch: int
    size: int
    errors: int
    elapsed: float


@dataclass(frozen=True)
class Notice:
    """Something the user should know (kernel restarted, budget ran out, overwritten variable)."""

    text: str
    level: str = "info"  # "info" | "warning" | "error"
    turn: int | None = None


@dataclass(frozen=True)
class RunFinished:
    result: RLMResult
    extra: dict[str, Any] = field(default_factory=dict)


Event = Union[
    RunStarted,
    TurnStarted,
    ModelCalled,
    ReplyDelta,
    ReplyParsed,
    CodeStarted,
    CodeFinished,
    BatchStarted,
    BatchFinished,
    Notice,
    RunFinished,
]
Subscriber = Callable[[Event], None]


def events_from_result(result: RLMResult) -> list[Event]:
    """The events a finished (or reloaded) run would have emitted, so any view can show it again."""
    out: list[Event] = [RunStarted(result.question, result.model, result.sub_model, result.mode,
                                   dict(result.bindings), result.max_iterations or len(result.turns),
                                   result.max_llm_calls or len(result.calls), result.max_cost)]
    seen_batches: set[int] = set()
    for turn in result.turns:
        out.append(TurnStarted(turn.index))
        if turn.root_call is not None:
            out.append(ModelCalled(turn.index, turn.root_call))
        if turn.root_call is None or not turn.root_call.error:
            code = tuple(run.code for run in turn.code)
            out.append(ReplyParsed(turn.index, turn.reply or "", turn.reasoning, code))
        for block, run in enumerate(turn.code):
            out.append(CodeStarted(turn.index, block, run.code))
            out.append(CodeFinished(turn.index, block, run))
        batches: dict[int, list[LLMCall]] = {}
        for call in turn.sub_calls:
            if call.batch is not None:
                batches.setdefault(call.batch, []).append(call)
        for batch, calls in batches.items():
            if batch not in seen_batches:
                seen_batches.add(batch)
                out.append(BatchStarted(turn.index, batch, len(calls)))
        for call in turn.sub_calls:
            out.append(ModelCalled(turn.index, call))
        for batch, calls in batches.items():
            out.append(BatchFinished(turn.index, batch, len(calls), sum(1 for c in calls if c.error),
                                     max((c.latency for c in calls), default=0.0)))
    for call in result.calls:
        if call.role == "final":
            out.append(ModelCalled(result.turns[-1].index if result.turns else 0, call))
    out.append(RunFinished(result))
    return out
