"""The browser harness itself, on a stand-in view built from plain ipywidgets.

If this fails, the trouble is the stack (JupyterLab, the widget extension,
chromium, playwright), not the live view; test_live_view.py relies on it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from . import harness, rlm_dom

STANDIN = '''\
import time
import ipywidgets as W
from IPython.display import Markdown, display

header = W.HTML("<b>running</b> · turn 0 of 5 · calls 0 of 10")
header.add_class("rlm-header")
turns = W.IntProgress(value=0, max=5)
turns.add_class("rlm-progress-turns")
calls = W.IntProgress(value=0, max=10)
calls.add_class("rlm-progress-calls")
acc = W.Accordion()
acc.add_class("rlm-turns")
view = W.VBox([header, turns, calls, acc])
view.add_class("rlm-view")
display(view)
for i in range(1, 6):
    time.sleep(0.6)
    out = W.HTML(f"<pre>STANDIN-OUTPUT {i}</pre>")
    out.add_class("rlm-output")
    acc.children = acc.children + (W.VBox([out]),)
    acc.set_title(i - 1, f"Turn {i}")
    acc.selected_index = i - 1
    turns.value, calls.value = i, 2 * i
    header.value = f"<b>running</b> · turn {i} of 5 · calls {2 * i} of 10"
md = W.Output()
with md:
    display(Markdown("**Bold answer**"))
final = W.VBox([md])
final.add_class("rlm-final")
view.children = view.children + (final,)
header.value = "<b>finished</b> · turn 5 of 5 · calls 10 of 10"
'''


@pytest.mark.browser
def test_widgets_update_live_in_jupyterlab(lab: harness.Lab, page: Any) -> None:
    harness.write_notebook(lab, "standin.ipynb", [STANDIN])
    harness.open_notebook(page, lab, "standin.ipynb")
    harness.wait_kernel_ready(page)
    harness.run_all(page)

    harness.wait_for_selector(page, ".rlm-view")
    samples = rlm_dom.Samples()
    t0 = time.monotonic()
    shot: float | None = None
    while time.monotonic() - t0 < 30:
        s = rlm_dom.sample(page, t0)
        if s is not None:
            samples.items.append(s)
            if s.final:
                break
            if shot is None and s.titles[2:]:
                shot = time.monotonic()
                harness.screenshot(page, ".rlm-view", "standin-running.png")
                shot = time.monotonic() - shot
        time.sleep(0.3)
    harness.wait_all_executed(page)

    assert samples.items and samples.items[-1].final, f"no final answer shown:\n{samples.describe()}"
    assert samples.changes_before_final() >= 2, f"the view did not update live:\n{samples.describe()}"
    assert rlm_dom.fallback_text(page) is None
    assert harness.output_errors(page) == []
    last = rlm_dom.sample(page, t0)
    assert last is not None
    assert last.turns_bar == "100%" and last.calls_bar == "100%"
    assert last.titles == [f"Turn {i}" for i in range(1, 6)]
    assert last.open == [False] * 4 + [True]
    assert "STANDIN-OUTPUT 1" in "".join(rlm_dom.query_text(page, ".rlm-output"))
    assert rlm_dom.query_text(page, ".rlm-final strong") == ["Bold answer"]
    assert shot is not None and shot < 2, f"the mid-run screenshot took {shot} s"
    harness.screenshot(page, ".rlm-view", "standin.png")
