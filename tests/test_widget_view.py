"""The live widget view, driven by real runs and by replayed trajectories (no browser here).

Widgets are built with the dummy comm IPython gives when no frontend is
attached, so their state can be read back directly.
"""

from __future__ import annotations

import ipywidgets as W
import pandas as pd
import pytest

from rlm_magic.events import (
    BatchFinished,
    BatchStarted,
    CodeFinished,
    CodeStarted,
    ModelCalled,
    ReplyParsed,
    RunFinished,
    RunStarted,
    TurnStarted,
    events_from_result,
)
from rlm_magic.result import CodeRun, LLMCall, RLMResult
from rlm_magic.scripted import Reply, code_reply
from rlm_magic.views import choose_view
from rlm_magic.views.widget import TEXT_REPR, WidgetView


def scripted_run(server) -> None:
    server.add(
        "root",
        code_reply("print('ALPHA-OUTPUT')", "Looking first."),
        code_reply("1/0"),
        code_reply("rs = llm_query_batched([f'p{i}' for i in range(6)])\nprint(len(rs))"),
        code_reply("SUBMIT(answer='**Bold** answer', table=pd.DataFrame({'a': [1, 2]}))"),
    )
    server.set_handler("sub", lambda req: Reply(content="r-" + req.prompt))


def widget_state(view: WidgetView) -> dict:
    acc = view.accordion
    return {
        "titles": [acc.get_title(i) for i in range(len(acc.children))],
        "codes": [w.value for box in acc.children for w in box.children[1].children if "rlm-code" in w._dom_classes],
        "outputs": [w.value for box in acc.children for w in box.children[1].children if "rlm-output" in w._dom_classes],
        "errors": [w.value for box in acc.children for w in box.children[1].children if "rlm-error" in w._dom_classes],
        "subcalls": [box.children[2].value for box in acc.children],
        "turns": view.turns_bar.value,
        "calls": view.calls_bar.value,
    }


def test_widget_view_of_a_real_run(shell, server, capsys) -> None:
    scripted_run(server)
    shell.user_ns["df"] = pd.DataFrame({"x": [1, 2, 3]})
    res = shell.run_cell('%%rlm context=df view=widget question="q"')
    assert res.error_in_exec is None
    out = capsys.readouterr().out
    assert TEXT_REPR in out  # the widget's text form, shown where no frontend renders it
    assert "── turn 1 ──" not in out  # no text log alongside the widget
    result = shell.user_ns["_rlm"]
    view = WidgetView.from_result(result)
    state = widget_state(view)
    assert len(state["titles"]) == 4
    assert state["titles"][0].startswith("Turn 1 · print('ALPHA-OUTPUT')")
    assert "error" in state["titles"][1]
    assert "6 sub-calls" in state["titles"][2]
    assert any("ALPHA-OUTPUT" in o for o in state["outputs"])
    assert len(state["errors"]) == 1 and "ZeroDivisionError" in state["errors"][0]
    assert "llm_query_batched × 6" in state["subcalls"][2]
    assert state["subcalls"][2].count("<tr") == 2  # header + one group row, not six rows
    assert "finished" in view.header.value and "turn 4 of 20" in view.header.value
    assert view.final.layout.display is None
    answer = view.answer_out.outputs[0]["data"]
    assert answer["text/markdown"] == "**Bold** answer"
    assert "<code>table</code>: pandas.DataFrame (2 × 1)" in view.landed_html.value


def test_replayed_view_matches_live_view_and_survives_json(make_rlm, server) -> None:
    scripted_run(server)
    live = WidgetView()
    result = make_rlm(on_event=live).run("q", x=1)
    reloaded = RLMResult.from_json(result.to_json())
    replayed = WidgetView.from_result(reloaded)
    assert widget_state(replayed) == widget_state(live)
    assert replayed.header.value.split("cost")[0] == live.header.value.split("cost")[0]


def test_result_repr_offers_markdown_and_stable_text(make_rlm, server) -> None:
    scripted_run(server)
    result = make_rlm().run("q", x=1)
    bundle = result._repr_mimebundle_()
    assert bundle["text/markdown"].startswith("**Bold** answer")
    assert bundle["text/plain"] == repr(result)
    assert "application/vnd.jupyter.widget-view+json" not in bundle  # no widget frontend here


def test_current_turn_open_and_earlier_collapsed() -> None:
    view = WidgetView()
    view(RunStarted("q", "m", "s", "standard", {}, 5, 10))
    for turn in (1, 2, 3):
        view(TurnStarted(turn))
        assert view.accordion.selected_index == turn - 1


def test_large_run_updates_only_what_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """50 turns with 10 sub-calls each: earlier turns stop receiving updates once they are done."""
    sends: dict[str, int] = {}
    original = W.Widget.send_state

    def counting(self, key=None):  # noqa: ANN001
        sends[self.model_id] = sends.get(self.model_id, 0) + 1
        return original(self, key)

    monkeypatch.setattr(W.Widget, "send_state", counting)
    view = WidgetView()
    view(RunStarted("q", "m", "s", "standard", {}, 50, 600))
    first_turn_widgets: list[str] = []
    for turn in range(1, 51):
        view(TurnStarted(turn))
        view(ModelCalled(turn, LLMCall(model="m", role="root", prompt="p", response="r")))
        view(ReplyParsed(turn, "text", None, ("x = 1",)))
        view(CodeStarted(turn, 0, "x = 1"))
        view(BatchStarted(turn, turn, 10))
        for i in range(10):
            view(ModelCalled(turn, LLMCall(model="s", role="sub", prompt=f"p{i}", response="r", batch=turn)))
        view(BatchFinished(turn, turn, 10, 0, 0.1))
        view(CodeFinished(turn, 0, CodeRun(code="x = 1", output="ok")))
        if turn == 1:
            box = view.accordion.children[0]
            first_turn_widgets = [box.model_id] + [w.model_id for w in box.children]
            before = {k: sends.get(k, 0) for k in first_turn_widgets}
    view.tick()
    after = {k: sends.get(k, 0) for k in first_turn_widgets}
    assert after == before, "turn 1's widgets were re-sent while later turns ran"
    assert view.calls_bar.value == 550
    assert len(view.accordion.children) == 50


def test_view_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLM_VIEW", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("VSCODE_PID", raising=False)
    assert choose_view(None, verbose=True) == "text"  # no kernel frontend in pytest
    assert choose_view(None, verbose=False) == "none"
    assert choose_view("widget", verbose=False) == "widget"
    monkeypatch.setenv("RLM_VIEW", "none")
    assert choose_view(None, verbose=True) == "none"
