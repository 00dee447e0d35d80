"""A JSON-lines log of every run, written event by event, so nothing is lost if the notebook dies.

Each event is one flushed line.  :func:`load_run` turns a log back into an
:class:`RLMResult`: the final result when the run ended, otherwise the
trajectory rebuilt from the events that made it to disk (status
``interrupted``).  Logs live in ``$RLM_RUN_LOG_DIR``, else
``$XDG_CACHE_HOME/rlm_magic/runs`` (``~/.cache/rlm_magic/runs``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any, TextIO

from . import events as ev
from .result import CodeRun, LLMCall, RLMResult, Turn, _encode

_EVENT_TYPES = {
    cls.__name__: cls
    for cls in (ev.RunStarted, ev.TurnStarted, ev.ModelCalled, ev.ReplyParsed, ev.CodeStarted, ev.CodeFinished,
                ev.BatchStarted, ev.BatchFinished, ev.Notice, ev.RunFinished)
}


def default_dir() -> Path:
    explicit = os.environ.get("RLM_RUN_LOG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "rlm_magic" / "runs"


class RunLog:
    """Subscriber that appends each event to ``<dir>/<time>-<id>.jsonl`` and flushes it."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_dir()
        self.path = self.directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
        self._fh: TextIO | None = None

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.ReplyDelta):
            return  # the parsed reply follows; partial text is noise on disk
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        kind = type(event).__name__
        if isinstance(event, ev.RunFinished):
            payload: dict[str, Any] = {"result": _result_payload(event.result)}
        else:
            payload = {f.name: _encode(getattr(event, f.name)) for f in fields(event)}
        self._fh.write(json.dumps({"event": kind, "t": round(time.time(), 3), **payload}, ensure_ascii=False) + "\n")
        self._fh.flush()
        if isinstance(event, ev.RunFinished):
            self.close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


#: Frames above this size are named, not written, in the log: they landed in the notebook already, and
#: serialising gigabytes on the cell's thread would hold the notebook up.
LOG_FRAME_LIMIT = 8 << 20


class _NotLogged:
    def __init__(self, value: Any, size: int) -> None:
        from .describe import human_bytes, short_type

        self.text = f"<{short_type(value)}: {human_bytes(size)}, not written to the run log>"

    def __repr__(self) -> str:
        return self.text


def _shrink(value: Any) -> Any:
    mod = type(value).__module__ or ""
    if mod.startswith("pandas") and hasattr(value, "memory_usage"):
        size = value.memory_usage(deep=False)
        size = int(size.sum() if hasattr(size, "sum") else size)
        if size > LOG_FRAME_LIMIT:
            return _NotLogged(value, size)
    return value


def _result_payload(result: RLMResult) -> dict[str, Any]:
    """The result as the log stores it (big frames named, not written), encoded once."""
    data: dict[str, Any] = {"version": 1}
    for f in fields(result):
        value = getattr(result, f.name)
        if f.name == "answer":
            value = _shrink(value)
        elif f.name == "fields":
            value = {k: _shrink(v) for k, v in value.items()}
        data[f.name] = _encode(value)
    return data


def read_events(path: str | Path) -> list[ev.Event]:
    """The events of a log; a torn last line (the process died mid-write) is skipped."""
    out: list[ev.Event] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            kind = data.pop("event", None)
            data.pop("t", None)
            if kind == "RunFinished":
                out.append(ev.RunFinished(RLMResult.from_json(json.dumps(data["result"]))))
            elif kind in _EVENT_TYPES:
                out.append(_EVENT_TYPES[kind](**_revive(kind, data)))
    return out


def _revive(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    if kind == "ModelCalled":
        data["call"] = LLMCall(**data["call"])
    elif kind == "CodeFinished":
        data["run"] = CodeRun(**data["run"])
    elif kind == "ReplyParsed":
        data["code"] = tuple(data["code"])
    return data


def load_run(path: str | Path) -> RLMResult:
    """Restore a run from its log: the final result, or the partial trajectory of a run that never ended."""
    events = read_events(path)
    for event in reversed(events):
        if isinstance(event, ev.RunFinished):
            return event.result
    return result_from_events(events)


def result_from_events(events: list[ev.Event]) -> RLMResult:
    """Rebuild what a run had done from its events (used when it never finished)."""
    result = RLMResult(question="", status="interrupted")
    turns: dict[int, Turn] = {}
    for event in events:
        if isinstance(event, ev.RunStarted):
            result.question, result.model, result.sub_model, result.mode = (
                event.question, event.model, event.sub_model, event.mode)
            result.bindings = dict(event.bindings)
            result.max_iterations, result.max_llm_calls, result.max_cost = (
                event.max_iterations, event.max_llm_calls, event.max_cost)
        elif isinstance(event, ev.TurnStarted):
            turns[event.turn] = Turn(index=event.turn)
            result.turns.append(turns[event.turn])
        elif isinstance(event, ev.ModelCalled):
            result.calls.append(event.call)
            turn = turns.get(event.turn)
            if turn is not None and event.call.role == "root":
                turn.root_call = event.call
            elif turn is not None and event.call.role == "sub":
                turn.sub_calls.append(event.call)
        elif isinstance(event, ev.ReplyParsed) and event.turn in turns:
            turns[event.turn].reply = event.text
            turns[event.turn].reasoning = event.reasoning
        elif isinstance(event, ev.CodeFinished) and event.turn in turns:
            turns[event.turn].code.append(event.run)
        elif isinstance(event, ev.Notice) and event.level == "error":
            result.error = event.text
    result.notes.append("restored from a run log; the run did not finish")
    return result


def list_runs(directory: str | Path | None = None, limit: int = 20) -> list[tuple[Path, str]]:
    """Recent logs, newest first, each with a one-line summary."""
    folder = Path(directory).expanduser() if directory else default_dir()
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.jsonl"), reverse=True)[:limit]:
        try:
            result = load_run(path)
        except (OSError, ValueError, TypeError, KeyError):
            out.append((path, "(unreadable)"))
            continue
        out.append((path, f"{result.status:<14} {len(result.turns):>2} turns  {result.question[:60]!r}"))
    return out
