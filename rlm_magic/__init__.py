"""rlm_magic: Recursive Language Models in Jupyter.

``%load_ext rlm_magic`` registers ``%%rlm``; :class:`RLM` runs the same engine
from plain Python.  Heavy imports (litellm, jupyter-client, pandas) happen when
a run starts, so loading the extension stays fast.
"""

from __future__ import annotations

import os

# litellm fetches its price list from the network at import unless told not to;
# a notebook on a closed network would stall on that.  Users may override.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from .api import RLM  # noqa: E402
from .result import LLMCall, RLMResult, Turn  # noqa: E402
from .runlog import load_run  # noqa: E402

__all__ = ["RLM", "RLMResult", "Turn", "LLMCall", "load_run", "load_ipython_extension", "unload_ipython_extension"]
__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:  # noqa: ANN001 - IPython's own type
    from .magic import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython) -> None:  # noqa: ANN001
    from .magic import unload_ipython_extension as _unload

    _unload(ipython)
