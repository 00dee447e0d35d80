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
    ReplyParsed,
    CodeStarted,
    CodeFinished,
    BatchStarted,
    BatchFinished,
    Notice,
    RunFinished,
]
Subscriber = Callable[[Event], None]
