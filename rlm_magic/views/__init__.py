"""Subscribers that show a run: a plain-text log and a live ipywidgets view.

Which one a notebook cell gets is decided here, from what the frontend can
show; neither view knows about the magic or the engine's internals.
"""

from __future__ import annotations

import os
import sys

VIEWS = ("auto", "widget", "text", "none")


def frontend_has_widgets() -> bool:
    """Best guess whether the frontend renders ipywidgets.

    A kernel cannot ask its frontend, so this looks at who started it:
    Jupyter Server (JupyterLab, Notebook 7) sets ``JPY_SESSION_NAME``, VS Code
    leaves ``VSCODE_PID``, Colab loads ``google.colab``.  Terminal IPython,
    nbclient, nbconvert, papermill and nbval set none of these, so they get
    the text view.  ``RLM_VIEW`` or ``view=`` overrides the guess.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    if "google.colab" in sys.modules:
        return True
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"))


def choose_view(requested: str | None, *, verbose: bool) -> str:
    """Resolve ``auto`` (or the ``RLM_VIEW`` environment variable) to widget, text or none."""
    choice = requested or "auto"
    if choice == "auto":
        choice = os.environ.get("RLM_VIEW", "auto").strip().lower() or "auto"
        if choice not in VIEWS:
            choice = "auto"
    if choice == "auto":
        if frontend_has_widgets():
            return "widget"
        return "text" if verbose else "none"
    return choice
