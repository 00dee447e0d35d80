"""The live widget view, watched in a real JupyterLab through chromium while a run goes on.

tests/files/live_view.ipynb runs ``%%rlm ... view=widget`` against the
session's scripted model server (its URL reaches the kernel as
``RLM_TEST_API_BASE``).  The root model's replies are delayed so that the run
lasts several seconds: the test samples the header and progress bars every
0.3 s and requires them to change before the answer appears, then checks every
part of the finished view against the DOM contract (see rlm_dom.py).

Screenshots go to tests/artifacts/browser/; with RLM_UPDATE_SCREENSHOT=1 the
finished view is also copied to docs/live_view.png (shown by the README).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from rlm_magic.scripted import Reply, Request, ScriptedServer, code_reply

from . import harness, rlm_dom

NOTEBOOK = Path(__file__).resolve().parents[1] / "files" / "live_view.ipynb"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "live_view.png"

ANSWER = "**Bold answer** from the scripted model"
BATCH = 6

#: Five root turns: look, a batch of sub-calls, an error, the recovery, SUBMIT.
ROOT_REPLIES = [
    Reply(code_reply(
        'print("ALPHA-OUTPUT")\n'
        "print(context.shape)\n"
        'hint = llm_query("Say hello to the analyst")\n'
        "print(hint)",
        "Let me look at the data first.",
    ), delay=1.5),
    Reply(code_reply(
        f'notes = llm_query_batched([f"Describe row {{i}}: {{context.iloc[i].to_dict()}}" for i in range({BATCH})])\n'
        'print("BETA-OUTPUT", len(notes))',
        "Ask the sub-model about each row.",
    ), delay=1.5),
    Reply(code_reply("ratio = 1 / 0", "Compute a ratio."), delay=1.2),
    Reply(code_reply(
        "ratio = context.revenue.max() / max(1, len(notes))\n"
        'print("GAMMA-RECOVERED", round(ratio, 2))',
        "Guard the division this time.",
    ), delay=1.2),
    Reply(code_reply(
        "totals = context.groupby('region', as_index=False)['revenue'].sum()\n"
        f"SUBMIT(answer={ANSWER!r}, table=totals)",
        "Done.",
    ), delay=1.2),
]
TURNS = len(ROOT_REPLIES)
CALLS = TURNS + 1 + BATCH


def sub_reply(request: Request) -> Reply:
    return Reply(f"noted: {request.prompt[:40]}", delay=0.3)


def _red(css_colour: str) -> bool:
    m = re.match(r"rgba?\((\d+), (\d+), (\d+)", css_colour)
    return bool(m) and int(m[1]) > 150 and int(m[1]) > 2 * int(m[2]) and int(m[1]) > 2 * int(m[3])


@pytest.mark.browser
def test_live_view_updates_while_the_run_goes_on(
    lab: harness.Lab, page: Any, model_server: ScriptedServer
) -> None:
    model_server.add("root", *ROOT_REPLIES)
    model_server.set_handler("sub", sub_reply)
    shutil.copy(NOTEBOOK, lab.root / NOTEBOOK.name)

    harness.open_notebook(page, lab, NOTEBOOK.name)
    harness.wait_kernel_ready(page)
    harness.run_all(page)
    harness.wait_for_selector(page, ".rlm-view", timeout=60)

    # -- while it runs -----------------------------------------------------
    samples = rlm_dom.Samples()
    t0 = time.monotonic()
    mid_shot = False
    while time.monotonic() - t0 < 60:
        s = rlm_dom.sample(page, t0)
        if s is not None:
            samples.items.append(s)
            if s.final:
                break
            if not mid_shot and len(s.titles) >= 2 and "running" in (s.header or ""):
                harness.screenshot(page, ".rlm-view", "live_view-running.png")
                mid_shot = True
        time.sleep(0.3)
    state = harness.wait_all_executed(page, timeout=30)
    history = samples.describe()

    assert samples.items and samples.items[-1].final, f"the answer never appeared:\n{history}"
    before = samples.before_final()
    turns_seen = {m[1] for s in before if (m := re.search(r"turn (\d+) of", s.header or ""))}
    assert len(turns_seen) >= 3, f"the header's turn count did not change live (saw {turns_seen}):\n{history}"
    assert len({s.turns_bar for s in before}) >= 3, f"the turns bar did not move live:\n{history}"
    assert len({s.calls_bar for s in before}) >= 3, f"the calls bar did not move live:\n{history}"
    assert any("running" in (s.header or "") for s in before), history
    assert mid_shot, f"no mid-run moment with two turns shown:\n{history}"
    assert all(s.views == 1 for s in samples.items), f"expected exactly one .rlm-view:\n{history}"

    # -- the finished view -------------------------------------------------
    assert rlm_dom.fallback_text(page) is None, "widgets fell back to their text repr"
    errors = harness.output_errors(page)
    assert errors == [], f"cells raised: {errors}"
    assert state["counts"] and all(c is not None for c in state["counts"])
    outputs = harness.output_texts(page)
    assert "finished DataFrame ['region', 'revenue']" in outputs[-1]

    last = rlm_dom.sample(page, t0)
    assert last is not None
    header = last.header or ""
    assert "finished" in header, header
    assert f"turn {TURNS} of 8" in header and f"calls {CALLS} of 30" in header, header
    assert "token" in header and "cost" in header, header
    assert last.turns_bar == f"{100 * TURNS / 8:g}%", last.turns_bar
    assert last.calls_bar == f"{100 * CALLS / 30:g}%", last.calls_bar

    titles = last.titles
    assert [t.split(" · ")[0] for t in titles] == [f"Turn {i}" for i in range(1, TURNS + 1)], titles
    assert "1 sub-call" in titles[0] and f"{BATCH} sub-calls" in titles[1], titles
    assert last.open == [False] * (TURNS - 1) + [True], f"only the last turn should be open: {last.open}"

    sections = rlm_dom.query_text(page, ".rlm-turns .jupyter-widget-Collapse-contents")
    assert len(sections) == TURNS
    codes = rlm_dom.query_text(page, ".rlm-code")
    outs = rlm_dom.query_text(page, ".rlm-output")
    assert any('print("ALPHA-OUTPUT")' in c for c in codes), codes
    assert any("llm_query_batched" in c for c in codes), codes
    assert "ALPHA-OUTPUT" in sections[0] and "ALPHA-OUTPUT" in "".join(outs)
    assert "Let me look at the data first." in "".join(rlm_dom.query_text(page, ".rlm-reply"))
    assert f"BETA-OUTPUT {BATCH}" in sections[1]
    assert "GAMMA-RECOVERED" in sections[3]

    err = rlm_dom.query_text(page, ".rlm-error")
    assert len(err) == 1 and "ZeroDivisionError" in err[0], err
    assert "ZeroDivisionError" in sections[2]
    colours = page.evaluate(
        """() => { const e = document.querySelector('.rlm-error');
                   return [e, ...e.querySelectorAll('*')].map(n => getComputedStyle(n).color); }"""
    )
    assert any(_red(c) for c in colours), f".rlm-error is not red: {colours}"

    tables = page.evaluate(
        """() => Array.from(document.querySelectorAll('.rlm-turns .jupyter-widget-Collapse-contents'))
             .map(sec => Array.from(sec.querySelectorAll('.rlm-subcalls tr')).map(r => r.textContent))"""
    )
    batch_rows = [r for r in tables[1] if re.search(r"batch", r, re.I)]
    assert len(batch_rows) == 1 and re.search(rf"\b{BATCH}\b", batch_rows[0]), tables[1]
    assert sum("Describe row" in r for r in tables[1]) == 1, f"the batch is not one group row: {tables[1]}"
    assert any("Say hello to the analyst" in r for r in tables[0]), tables[0]

    assert rlm_dom.query_text(page, ".rlm-final strong") == ["Bold answer"]
    assert "from the scripted model" in "".join(rlm_dom.query_text(page, ".rlm-final"))
    assert "table" in "".join(rlm_dom.query_text(page, ".rlm-final .rlm-landed"))

    # -- screenshot of the finished run, with the batch turn opened ---------
    page.locator(".rlm-turns .jupyter-widget-Collapse-header").nth(1).click()
    harness.wait_for(page, """() => !document.querySelectorAll('.rlm-turns .jupyter-widget-Collapse-contents')[1]
                                     .classList.contains('lm-mod-hidden')""", 10, "turn 2 to open")
    time.sleep(0.3)
    shot = harness.screenshot(page, ".rlm-view", "live_view-finished.png")
    if os.environ.get("RLM_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS_SCREENSHOT)
    assert model_server.remaining("root") == 0

    # -- the finished view is kept in the saved notebook ---------------------
    page.evaluate("() => { window.jupyterapp.commands.execute('docmanager:save'); }")
    saved = lab.root / NOTEBOOK.name

    def widget_state() -> str:
        meta = json.loads(saved.read_text()).get("metadata", {})
        return json.dumps(meta.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}))

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "Bold answer" not in widget_state():
        time.sleep(0.3)
    state = widget_state()
    assert "finished" in state and f"turn {TURNS} of" in state, "the header's final state was not saved"
    assert "Bold answer" in state and "ZeroDivisionError" in state, "the turns and the answer were not saved"
