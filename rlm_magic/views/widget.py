"""A live ipywidgets view of a run: header, one collapsible section per turn, the answer.

It is an event subscriber like the text view and is driven only by events, so
a finished (or reloaded) result can be shown again by replaying the events
rebuilt from its trajectory.  All updates set widget properties from the
thread that runs the cell (ipykernel 7 drops display messages sent from other
threads), and each event touches only the widgets it concerns: a header
refresh is throttled, and a turn's sub-call table is re-rendered only when
that turn's calls changed, with a batch shown as one row.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W

from ..describe import short_type
from ..events import (
    BatchFinished,
    BatchStarted,
    CodeFinished,
    CodeStarted,
    Event,
    ModelCalled,
    Notice,
    ReplyDelta,
    ReplyParsed,
    RunFinished,
    RunStarted,
    TurnStarted,
)
from ..result import CodeRun, LLMCall, RLMResult

#: Status words shown in the header.
STATUS_WORDS = {
    "running": "running",
    "finished": "finished",
    "max_iterations": "budget exhausted",
    "max_llm_calls": "budget exhausted",
    "max_cost": "budget exhausted",
    "error": "error",
    "interrupted": "interrupted",
}
_STATUS_COLOURS = {"running": "#1565c0", "finished": "#2e7d32", "budget exhausted": "#ef6c00",
                   "error": "#c62828", "interrupted": "#6d4c41"}

#: Characters of output, prompts and replies shown in the view (the full length is stated).
OUTPUT_CHARS = 4_000
EXCERPT_CHARS = 120
MAX_ROWS = 100
TEXT_REPR = "<rlm_magic live view; shown as text where widgets are unavailable (use view=text)>"


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _highlight(code: str) -> str:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        return highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, style="default", nobackground=True))
    except ImportError:  # pygments ships with IPython, but stay correct without it
        return f"<pre>{_esc(code)}</pre>"


def _pre(text: str, colour: str | None = None) -> str:
    style = "margin:2px 0;white-space:pre-wrap;font-size:12px;max-height:24em;overflow:auto;"
    if colour:
        style += f"color:{colour};"
    return f'<pre style="{style}">{_esc(text)}</pre>'


def _fmt_tokens(n: int) -> str:
    return f"{n:,}"


def _fmt_cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:,.4f}"


class _RunViewBox(W.VBox):
    """The top-level box; its text form is constant so nbval and plain frontends see a stable line."""

    def __repr__(self) -> str:
        return TEXT_REPR


@dataclass
class _TurnParts:
    index: int
    box: W.VBox
    reply: W.HTML
    blocks: W.VBox
    subcalls: W.HTML
    started: float
    code_runs: list[CodeRun] = field(default_factory=list)
    summary: str = ""
    calls: list[LLMCall] = field(default_factory=list)
    batches: dict[int, dict[str, Any]] = field(default_factory=dict)
    block_widgets: dict[int, tuple[W.HTML, W.HTML]] = field(default_factory=dict)
    duration: float = 0.0
    subcalls_dirty: bool = False
    streamed_at: float = 0.0


class WidgetView:
    """Subscriber that renders a run as ipywidgets while it goes on."""

    #: Ask the engine to stream root replies, so they appear as they are written.
    wants_deltas = True

    def __init__(self, *, header_every: float = 0.2) -> None:
        self.header_every = header_every
        self.header = W.HTML(value="", layout=W.Layout(width="100%"))
        self.header.add_class("rlm-header")
        self.turns_bar = W.IntProgress(value=0, min=0, max=1, description="turns", bar_style="info",
                                       layout=W.Layout(width="48%"))
        self.turns_bar.add_class("rlm-progress-turns")
        self.calls_bar = W.IntProgress(value=0, min=0, max=1, description="calls", bar_style="info",
                                       layout=W.Layout(width="48%"))
        self.calls_bar.add_class("rlm-progress-calls")
        self.accordion = W.Accordion(children=())
        self.accordion.add_class("rlm-turns")
        self.notices = W.HTML(value="")
        self.notices.add_class("rlm-notices")
        self.answer_out = W.Output()
        self.landed_html = W.HTML(value="")
        self.landed_html.add_class("rlm-landed")
        self.final = W.VBox(children=(), layout=W.Layout(display="none"))
        self.final.add_class("rlm-final")
        self.root = _RunViewBox(children=(
            self.header,
            W.HBox(children=(self.turns_bar, self.calls_bar)),
            self.accordion,
            self.notices,
            self.final,
        ))
        self.root.add_class("rlm-view")
        # state
        self.model = self.sub_model = self.mode = ""
        self.status = "running"
        self.max_turns = 1
        self.max_calls = 1
        self.max_cost: float | None = None
        self.turn_count = 0
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost: float | None = 0.0
        self.started = time.monotonic()
        self.elapsed: float | None = None  # fixed once the run ends
        self._turns: dict[int, _TurnParts] = {}
        self._notice_lines: list[str] = []
        self._last_header = 0.0
        self.log_path: str | None = None  # announced in the header when the run is logged

    # -- subscriber ------------------------------------------------------
    def __call__(self, event: Event) -> None:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)

    def tick(self) -> None:
        """Called by the runner while no event comes: refresh the clock and anything throttled."""
        self._flush_subcalls()
        self._render_header(force=True)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return self.root._repr_mimebundle_(include=include, exclude=exclude)

    @property
    def widget(self) -> W.VBox:
        return self.root

    @classmethod
    def from_result(cls, result: RLMResult) -> WidgetView:
        """Rebuild the view of a finished or reloaded run from its trajectory."""
        from ..events import events_from_result

        view = cls()
        for event in events_from_result(result):
            view(event)
        return view

    # -- events ----------------------------------------------------------
    def _on_RunStarted(self, ev: RunStarted) -> None:
        self.model, self.sub_model, self.mode = ev.model, ev.sub_model, ev.mode
        self.max_turns = max(1, ev.max_iterations)
        self.max_calls = max(1, ev.max_llm_calls)
        self.max_cost = ev.max_cost
        self.turns_bar.max = self.max_turns
        self.calls_bar.max = self.max_calls
        self.started = time.monotonic()
        self._render_header(force=True)

    def _on_TurnStarted(self, ev: TurnStarted) -> None:
        reply = W.HTML(value='<i style="color:#777">waiting for the model…</i>')
        reply.add_class("rlm-reply")
        blocks = W.VBox(children=())
        subcalls = W.HTML(value="")
        subcalls.add_class("rlm-subcalls")
        box = W.VBox(children=(reply, blocks, subcalls))
        box.add_class("rlm-turn")
        parts = _TurnParts(ev.turn, box, reply, blocks, subcalls, started=time.monotonic())
        self._turns[ev.turn] = parts
        self._flush_subcalls()
        self.accordion.children = self.accordion.children + (box,)
        position = len(self.accordion.children) - 1
        self.accordion.set_title(position, self._title(parts))
        self.accordion.selected_index = position  # the current turn is open; earlier ones collapse
        self.turn_count = ev.turn
        self.turns_bar.value = min(ev.turn, self.max_turns)
        self._render_header(force=True)

    def _on_ModelCalled(self, ev: ModelCalled) -> None:
        call = ev.call
        self.calls += 1
        self.prompt_tokens += call.prompt_tokens or 0
        self.completion_tokens += call.completion_tokens or 0
        if self.cost is not None and not call.error:
            self.cost = None if call.cost is None else self.cost + call.cost
        self.calls_bar.value = min(self.calls, self.max_calls)
        if call.role == "root" and ev.turn in self._turns:
            self._turns[ev.turn].duration += call.latency
        if call.role == "sub":
            parts = self._turns.get(ev.turn)
            if parts is not None:
                parts.calls.append(call)
                if call.batch is not None and call.batch in parts.batches:
                    parts.batches[call.batch]["done"] += 1
                parts.subcalls_dirty = True
                self._retitle(parts)
        self._render_header()

    def _on_ReplyDelta(self, ev: ReplyDelta) -> None:
        parts = self._turns.get(ev.turn)
        now = time.monotonic()
        if parts is None or now - parts.streamed_at < 0.1:  # a few updates a second is live enough
            return
        parts.streamed_at = now
        parts.reply.value = _pre(ev.text) + '<i style="color:#777">…</i>'

    def _on_ReplyParsed(self, ev: ReplyParsed) -> None:
        parts = self._turns.get(ev.turn)
        if parts is None:
            return
        text = _prose(ev.text).strip()  # the code is shown highlighted below, not twice
        if text:
            body = _pre(text)
        else:
            body = '<i style="color:#777">(code only)</i>' if ev.code else '<i style="color:#777">(empty reply)</i>'
        if ev.reasoning:
            body = (f'<details><summary style="color:#777">reasoning ({len(ev.reasoning):,} chars)</summary>'
                    f"{_pre(ev.reasoning, '#555')}</details>") + body
        parts.reply.value = body
        if not ev.code:
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            parts.summary = _excerpt(first, 70) or "(no code)"
            self._retitle(parts)

    def _on_CodeStarted(self, ev: CodeStarted) -> None:
        parts = self._turns.get(ev.turn)
        if parts is None:
            return
        code = W.HTML(value=_highlight(ev.code))
        code.add_class("rlm-code")
        output = W.HTML(value='<i style="color:#777">running…</i>')
        output.add_class("rlm-output")
        parts.block_widgets[ev.block] = (code, output)
        parts.blocks.children = parts.blocks.children + (code, output)
        if not parts.summary:
            parts.summary = _excerpt(_first_code_line(ev.code), 70)
            self._retitle(parts)

    def _on_CodeFinished(self, ev: CodeFinished) -> None:
        parts = self._turns.get(ev.turn)
        if parts is None or ev.block not in parts.block_widgets:
            return
        run = ev.run
        parts.code_runs.append(run)
        parts.duration += run.duration
        _, output = parts.block_widgets[ev.block]
        text = run.output
        shown = text if len(text) <= OUTPUT_CHARS else text[:OUTPUT_CHARS] + "\n…"
        note = ""
        if run.output_chars > len(text) or len(text) > OUTPUT_CHARS:
            note = (f'<div style="color:#777;font-size:11px">showing {min(len(text), OUTPUT_CHARS):,} of '
                    f"{run.output_chars:,} characters</div>")
        value = (_pre(shown) if shown.strip() else '<i style="color:#777">(no output)</i>') + note
        output.value = value
        if run.error:
            err = W.HTML(value=_pre(run.error, "#c62828"))
            err.add_class("rlm-error")
            parts.blocks.children = parts.blocks.children + (err,)
        self._retitle(parts)

    def _on_BatchStarted(self, ev: BatchStarted) -> None:
        parts = self._turns.get(ev.turn)
        if parts is not None:
            parts.batches[ev.batch] = {"size": ev.size, "done": 0, "errors": 0, "elapsed": None}
            parts.subcalls_dirty = True
            self._flush_subcalls()

    def _on_BatchFinished(self, ev: BatchFinished) -> None:
        parts = self._turns.get(ev.turn)
        if parts is not None and ev.batch in parts.batches:
            parts.batches[ev.batch].update(errors=ev.errors, elapsed=ev.elapsed, done=ev.size)
            parts.subcalls_dirty = True
            self._flush_subcalls()

    def _on_Notice(self, ev: Notice) -> None:
        colour = {"error": "#c62828", "warning": "#ef6c00"}.get(ev.level, "#555")
        self._notice_lines.append(f'<div style="color:{colour}">{_esc(ev.text)}</div>')
        self.notices.value = "".join(self._notice_lines[-20:])

    def _on_RunFinished(self, ev: RunFinished) -> None:
        res = ev.result
        self.status = res.status
        self.elapsed = res.elapsed
        self._flush_subcalls(force=True)
        for parts in self._turns.values():
            self._retitle(parts)
        self._render_header(force=True)
        self.turns_bar.bar_style = "success" if res.status == "finished" else (
            "danger" if res.status == "error" else "warning")
        self.calls_bar.bar_style = self.turns_bar.bar_style
        self._show_answer(res)

    # -- rendering -------------------------------------------------------
    def _show_answer(self, res: RLMResult) -> None:
        from IPython.display import Markdown

        title = W.HTML(value="<b>Answer</b>")
        self.answer_out.outputs = ()
        answer = res.answer
        if isinstance(answer, str):
            self.answer_out.append_display_data(Markdown(answer))
        elif answer is not None:
            self.answer_out.append_display_data(answer)
        else:
            self.answer_out.append_display_data(Markdown(f"*no answer ({res.error or res.status})*"))
        self.landed(_landed_names(res))
        self.final.children = (title, self.answer_out, self.landed_html)
        self.final.layout.display = None

    def landed(self, names: dict[str, str]) -> None:
        """Show which notebook variables received results (name -> short type)."""
        if not names:
            self.landed_html.value = ""
            return
        rows = "".join(f"<li><code>{_esc(k)}</code>: {_esc(v)}</li>" for k, v in names.items())
        self.landed_html.value = f'<div style="margin-top:4px"><b>Landed in the notebook</b><ul>{rows}</ul></div>'

    def _render_header(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_header < self.header_every:
            return
        self._last_header = now
        word = STATUS_WORDS.get(self.status, self.status)
        colour = _STATUS_COLOURS.get(word, "#555")
        elapsed = self.elapsed if self.elapsed is not None else now - self.started
        budget_cost = f" of ${self.max_cost:g}" if self.max_cost is not None else ""
        sub = f" · sub-model <code>{_esc(self.sub_model)}</code>" if self.sub_model and self.sub_model != self.model else ""
        self.header.value = (
            '<div style="font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.6">'
            f'<span style="background:{colour};color:white;border-radius:3px;padding:1px 6px">{_esc(word)}</span> '
            f"<b>RLM</b> · model <code>{_esc(self.model)}</code>{sub} · mode {_esc(self.mode)}<br>"
            f"turn {self.turn_count} of {self.max_turns} · calls {self.calls} of {self.max_calls} · "
            f"tokens {_fmt_tokens(self.prompt_tokens)} in / {_fmt_tokens(self.completion_tokens)} out · "
            f"cost {_fmt_cost(self.cost)}{budget_cost} · {elapsed:,.1f} s"
            + (f'<br><span style="color:#777;font-size:11px">run log: {_esc(self.log_path)}</span>'
               if self.log_path else "")
            + "</div>"
        )

    def _title(self, parts: _TurnParts) -> str:
        bits = [f"Turn {parts.index}"]
        if parts.summary:
            bits.append(parts.summary)
        if parts.duration:
            bits.append(f"{parts.duration:.1f} s")
        if parts.calls:
            bits.append(f"{len(parts.calls)} sub-call{'s' if len(parts.calls) != 1 else ''}")
        if any(r.error for r in parts.code_runs):
            bits.append("error")
        return " · ".join(bits)

    def _retitle(self, parts: _TurnParts) -> None:
        position = parts.index - 1
        if 0 <= position < len(self.accordion.children):
            title = self._title(parts)
            if self.accordion.get_title(position) != title:
                self.accordion.set_title(position, title)

    def _flush_subcalls(self, force: bool = False) -> None:
        for parts in self._turns.values():
            if parts.subcalls_dirty or force:
                parts.subcalls.value = _subcall_table(parts)
                parts.subcalls_dirty = False


def _prose(reply: str) -> str:
    """The reply without its fenced code blocks (and without anything after the last one)."""
    from ..extract import parse_reply

    parsed = parse_reply(reply)
    if not parsed.blocks:
        return reply
    pieces, last = [], 0
    for block in parsed.blocks:
        pieces.append(reply[last:block.start])
        last = block.end
    return "".join(pieces)


def _first_code_line(code: str) -> str:
    for line in code.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            return s
    return ""


def _landed_names(res: RLMResult) -> dict[str, str]:
    names = {name: short_type(value) for name, value in res.fields.items() if not name.startswith("_")}
    names["_rlm"] = "RLMResult"
    return names


def _subcall_table(parts: _TurnParts) -> str:
    if not parts.calls and not parts.batches:
        return ""
    head = ("<tr><th>model</th><th>prompt</th><th>response</th><th>tokens</th><th>latency</th><th>error</th></tr>")
    rows = []
    grouped: dict[int, list[LLMCall]] = {}
    for call in parts.calls:
        if call.batch is not None:
            grouped.setdefault(call.batch, []).append(call)
        else:
            rows.append(_call_row(call))
    if len(rows) > MAX_ROWS:  # keep the table cheap to send; the full list is in _rlm
        hidden = len(rows) - MAX_ROWS
        rows = rows[:MAX_ROWS] + [f'<tr><td colspan="6">… {hidden:,} more sub-calls (all are in _rlm)</td></tr>']
    for batch, info in parts.batches.items():
        calls = grouped.get(batch, [])
        tokens = sum(c.total_tokens for c in calls)
        errors = sum(1 for c in calls if c.error)
        latency = max((c.latency for c in calls), default=0.0)
        state = f"{info['done']}/{info['size']} done" if info.get("elapsed") is None else f"{info['size']} prompts"
        first = calls[0] if calls else None
        rows.append(
            '<tr class="rlm-batch" style="background:#f3f6fb">'
            f"<td>{_esc(first.model) if first else ''}</td>"
            f"<td><b>llm_query_batched × {info['size']}</b> ({state})"
            f"{'<br>' + _esc(_excerpt(first.prompt)) if first else ''}</td>"
            f"<td>{_esc(_excerpt(first.response)) if first else ''}</td>"
            f"<td>{tokens:,}</td><td>{latency:.2f} s</td>"
            f"<td style=\"color:#c62828\">{f'{errors} failed' if errors else ''}</td></tr>"
        )
    style = ("<style>.rlm-subcalls table{border-collapse:collapse;font-size:12px;width:100%}"
             ".rlm-subcalls td,.rlm-subcalls th{border:1px solid #ddd;padding:2px 6px;text-align:left;"
             "vertical-align:top}</style>")
    return f'{style}<div><b>Sub-calls</b></div><table>{head}{"".join(rows)}</table>'


def _call_row(call: LLMCall) -> str:
    tokens = f"{call.total_tokens:,}" + ("~" if call.tokens_estimated else "")
    return (
        f"<tr><td>{_esc(call.model)}</td><td>{_esc(_excerpt(call.prompt))}</td>"
        f"<td>{_esc(_excerpt(call.response))}</td><td>{tokens}</td><td>{call.latency:.2f} s</td>"
        f'<td style="color:#c62828">{_esc(_excerpt(call.error or ""))}</td></tr>'
    )
