"""Reading the live view's DOM (the contract of ``rlm_magic/views/widget.py``) from a page.

The contract, by DOM class:

* ``.rlm-view``               the whole view (an ipywidgets VBox)
* ``.rlm-header``             HTML: status word, ``turn N of M``, ``calls N of M``, tokens, cost
* ``.rlm-progress-turns``     IntProgress; the bar is ``.progress-bar`` inside it
* ``.rlm-progress-calls``     IntProgress
* ``.rlm-turns``              Accordion, one section per turn; titles in ``.jupyter-widget-Collapse-header``
* ``.rlm-reply`` / ``.rlm-code`` / ``.rlm-output`` / ``.rlm-error`` / ``.rlm-subcalls``   inside a section
* ``.rlm-final``              VBox: the answer (Markdown in an Output widget) and ``.rlm-landed``

Texts are read with ``textContent``, which includes collapsed (hidden) sections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

#: One snapshot of the view.  Progress values are the bars' style widths
#: (ipywidgets sets ``width: <percent>%`` on ``.progress-bar`` for each value).
SAMPLE_JS = """() => {
  const view = document.querySelector('.rlm-view');
  if (!view) return null;
  const text = sel => { const e = view.querySelector(sel); return e ? e.textContent : null; };
  const bar = sel => { const e = view.querySelector(sel + ' .progress-bar'); return e ? e.style.width : null; };
  const turns = view.querySelector('.rlm-turns');
  return {
    views: document.querySelectorAll('.rlm-view').length,
    header: text('.rlm-header'),
    turns_bar: bar('.rlm-progress-turns'),
    calls_bar: bar('.rlm-progress-calls'),
    titles: turns ? Array.from(turns.querySelectorAll('.jupyter-widget-Collapse-header'))
                      .map(e => e.textContent.trim()) : [],
    open: turns ? Array.from(turns.querySelectorAll('.jupyter-widget-Collapse-contents'))
                    .map(e => !e.classList.contains('lm-mod-hidden')) : [],
    final: !!view.querySelector('.rlm-final strong'),
  };
}"""


@dataclass
class Sample:
    t: float
    views: int
    header: str | None
    turns_bar: str | None
    calls_bar: str | None
    titles: list[str]
    open: list[bool]
    final: bool

    @property
    def state(self) -> tuple[Any, ...]:
        """What must change for a sample to count as a live update."""
        return (self.header, self.turns_bar, self.calls_bar)


@dataclass
class Samples:
    items: list[Sample] = field(default_factory=list)

    def before_final(self) -> list[Sample]:
        return [s for s in self.items if not s.final]

    def changes_before_final(self) -> int:
        """How many times the (header, bars) state changed while no final answer was shown."""
        states = [s.state for s in self.before_final()]
        return sum(1 for a, b in zip(states, states[1:]) if a != b)

    def describe(self) -> str:
        return "\n".join(
            f"  {s.t:6.2f}s header={s.header!r} turns={s.turns_bar} calls={s.calls_bar} final={s.final} titles={s.titles}"
            for s in self.items
        )


def sample(page: Any, t0: float) -> Sample | None:
    data = page.evaluate(SAMPLE_JS)
    return None if data is None else Sample(t=time.monotonic() - t0, **data)


def query_text(page: Any, selector: str) -> list[str]:
    """textContent of every element matching ``selector``."""
    return page.evaluate("sel => Array.from(document.querySelectorAll(sel)).map(e => e.textContent)", selector)


def fallback_text(page: Any) -> str | None:
    """The text repr that JupyterLab shows when the widget extension is missing, if present."""
    return page.evaluate(
        """() => {
          for (const e of document.querySelectorAll('.jp-OutputArea-output')) {
            const t = e.textContent;
            if (t.includes('VBox(children=') || t.includes('HTML(value=')) return t.slice(0, 300);
          }
          return null;
        }"""
    )
