"""Plain dataclasses for what a run produced: turns, model calls, the result.

They carry no behaviour beyond (de)serialisation, so the engine, the views,
the run log and user code can all share them.  ``to_json``/``from_json`` keep
DataFrames as DataFrames (via pandas' own split-orient JSON) so a saved run
reloads with the same landed values.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

#: Final statuses a run can end with.
STATUSES = (
    "running",
    "finished",
    "max_iterations",
    "max_llm_calls",
    "max_cost",
    "error",
    "interrupted",
)


@dataclass
class LLMCall:
    """One model call, root or sub, as the provider reported it."""

    model: str
    role: str  # "root" | "sub" | "final"
    prompt: str = ""  # last user message (root) or the whole prompt (sub), for views
    response: str | None = None
    reasoning: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False
    cost: float | None = None
    latency: float = 0.0
    error: str | None = None
    cached: bool = False
    batch: int | None = None  # id of the llm_query_batched call this belongs to

    @property
    def total_tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


@dataclass
class CodeRun:
    """One code block executed in the child kernel."""

    code: str
    output: str = ""  # capped text the model saw (stdout, results, error)
    output_chars: int = 0  # full length before capping
    error: str | None = None  # "Name: message" when the block raised
    duration: float = 0.0
    submitted: bool = False
    timed_out: bool = False


@dataclass
class Turn:
    """One root-model turn: its reply, the code it ran, and the sub-calls made."""

    index: int
    reply: str | None = ""
    reasoning: str | None = None
    code: list[CodeRun] = field(default_factory=list)
    sub_calls: list[LLMCall] = field(default_factory=list)
    root_call: LLMCall | None = None
    note: str | None = None  # what the engine told the model about this turn, if anything
    final: str | None = None  # "SUBMIT" | "FINAL" | "FINAL_VAR" when this turn ended the run

    @property
    def summary(self) -> str:
        """One line for titles and logs: the first non-comment code line, or the reply's first line."""
        for run in self.code:
            for line in run.code.splitlines():
                s = line.strip()
                if s and not s.startswith("#"):
                    return s[:100]
        for line in (self.reply or "").splitlines():
            if line.strip():
                return line.strip()[:100]
        return "(no reply)" if not self.reply else ""


@dataclass
class Usage:
    """Totals for one model in one role."""

    model: str
    role: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0  # None once any call's cost is unknown
    errors: int = 0
    estimated: bool = False

    def add(self, call: LLMCall) -> None:
        self.calls += 1
        self.prompt_tokens += call.prompt_tokens or 0
        self.completion_tokens += call.completion_tokens or 0
        self.estimated = self.estimated or call.tokens_estimated
        if call.error:
            self.errors += 1
        if self.cost is not None:
            self.cost = None if call.cost is None and not call.error else self.cost + (call.cost or 0.0)


@dataclass
class RLMResult:
    """Everything a run produced.  Lands in the notebook as ``_rlm``."""

    question: str
    answer: Any = None
    fields: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    model: str = ""
    sub_model: str = ""
    mode: str = "standard"
    turns: list[Turn] = field(default_factory=list)
    calls: list[LLMCall] = field(default_factory=list)
    elapsed: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # field conversion notes, notices
    bindings: dict[str, str] = field(default_factory=dict)  # name -> short type, for views
    max_iterations: int = 0  # the budgets the run had, so a saved run can be shown as it ran
    max_llm_calls: int = 0
    max_cost: float | None = None
    log: str | None = None  # the run log this run was written to, if any

    # -- derived -------------------------------------------------------
    @property
    def trajectory(self) -> list[Turn]:
        return self.turns

    @property
    def usage(self) -> dict[str, Usage]:
        """Usage per ``role:model`` key, summed from the call records."""
        out: dict[str, Usage] = {}
        for call in self.calls:
            key = f"{call.role}:{call.model}"
            out.setdefault(key, Usage(call.model, call.role)).add(call)
        return out

    @property
    def total_cost(self) -> float | None:
        costs = [c.cost for c in self.calls if not c.error]
        return None if any(c is None for c in costs) else sum(costs)  # type: ignore[arg-type]

    @property
    def total_tokens(self) -> int:
        return sum(c.total_tokens for c in self.calls)

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    def to_frame(self):  # noqa: ANN201 - pandas is optional at import time
        """The trajectory as a DataFrame: one row per code block (or per turn without code)."""
        import pandas as pd

        rows = []
        for t in self.turns:
            runs = t.code or [None]
            for i, run in enumerate(runs):
                rows.append(
                    {
                        "turn": t.index,
                        "block": i if run else None,
                        "code": run.code if run else None,
                        "output": run.output if run else None,
                        "error": run.error if run else None,
                        "duration": run.duration if run else None,
                        "sub_calls": len(t.sub_calls),
                        "final": t.final,
                    }
                )
        return pd.DataFrame(rows)

    # -- display -------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"RLMResult(status={self.status!r}, turns={len(self.turns)}, calls={len(self.calls)}, "
            f"answer={_short(self.answer)!r})"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Markdown and a stable text line everywhere; the live view again where widgets render."""
        from .views import frontend_has_widgets
        from .views.text import result_markdown

        bundle: dict[str, Any] = {"text/markdown": result_markdown(self), "text/plain": repr(self)}
        if frontend_has_widgets():
            from .views.widget import WidgetView

            widget = WidgetView.from_result(self)._repr_mimebundle_()
            bundle.update({k: v for k, v in widget.items() if k != "text/plain"})
        return bundle

    # -- JSON ----------------------------------------------------------
    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int | None = None) -> str:
        """Serialise the whole run; DataFrames and bytes survive the round trip."""
        data = {"version": 1, **{f.name: _encode(getattr(self, f.name)) for f in fields(self)}}
        text = json.dumps(data, indent=indent, ensure_ascii=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike[str]) -> RLMResult:
        """Load from a JSON string or from a file path (``str`` or ``Path``)."""
        if isinstance(text_or_path, str) and text_or_path.lstrip().startswith("{"):
            text = text_or_path
        else:
            with open(text_or_path, encoding="utf-8") as fh:
                text = fh.read()
        data = json.loads(text)
        data.pop("version", None)
        turns = [_turn_from(t) for t in data.pop("turns", [])]
        calls = [LLMCall(**c) for c in data.pop("calls", [])]
        answer = _decode(data.pop("answer", None))
        fields_ = {k: _decode(v) for k, v in data.pop("fields", {}).items()}
        return cls(turns=turns, calls=calls, answer=answer, fields=fields_, **data)


def _turn_from(d: dict) -> Turn:
    d = dict(d)
    d["code"] = [CodeRun(**c) for c in d.get("code", [])]
    d["sub_calls"] = [LLMCall(**c) for c in d.get("sub_calls", [])]
    if d.get("root_call"):
        d["root_call"] = LLMCall(**d["root_call"])
    return Turn(**d)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _encode(value: Any) -> Any:
    """JSON-safe form; tagged dicts for the types JSON cannot carry."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _encode(v) for k, v in asdict(value).items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"__rlm__": "bytes", "b64": base64.b64encode(bytes(value)).decode()}
    mod = type(value).__module__
    if mod.startswith("pandas"):
        import pandas as pd

        if isinstance(value, (pd.DataFrame, pd.Series)):
            return _encode_pandas(value)
    if mod == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    return {"__rlm__": "repr", "repr": repr(value)}


def _encode_pandas(value: Any) -> dict[str, Any]:
    """Arrow IPC keeps column labels, dtypes, time units and zones that JSON would lose."""
    import pandas as pd
    import pyarrow as pa

    tag = "series" if isinstance(value, pd.Series) else "dataframe"
    frame = value.to_frame(name="__value__" if value.name is None else value.name) if tag == "series" else value
    try:
        table = pa.Table.from_pandas(frame, preserve_index=True)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return {"__rlm__": tag, "arrow": base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")}
    except (pa.ArrowException, TypeError, ValueError):  # mixed object columns
        return {"__rlm__": tag, "json": frame.to_json(orient="table", index=True, default_handler=str)}


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get("__rlm__")
    if tag is None:
        return {k: _decode(v) for k, v in value.items()}
    if tag == "bytes":
        return base64.b64decode(value["b64"])
    if tag in ("dataframe", "series"):
        import io

        import pandas as pd

        if "arrow" in value:
            import pyarrow as pa

            reader = pa.ipc.open_stream(pa.py_buffer(base64.b64decode(value["arrow"])))
            frame = reader.read_all().to_pandas()
        else:
            frame = pd.read_json(io.StringIO(value["json"]), orient="table")
        if tag == "series":
            series = frame.iloc[:, 0]
            return series.rename(None) if series.name == "__value__" else series
        return frame
    return value.get("repr")
