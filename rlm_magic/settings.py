"""Every knob of a run, as documented traitlets shared by :class:`RLM` and the magic.

``%config RLMMagics.model = "openai/gpt-4o"`` and ``RLM(model=...)`` set the
same traits; ``%rlm config`` lists them with where each effective value came
from.
"""

from __future__ import annotations

import os
from typing import Any

from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, validate
from traitlets.config import Configurable

from .prompts import MODES

#: Settings that environment variables can provide, and their variables.
ENV_VARS = {
    "model": "RLM_MODEL",
    "sub_model": "RLM_SUB_MODEL",
    "api_base": "RLM_API_BASE",
    "cassette": "RLM_CASSETTE",
    "cassette_mode": "RLM_CASSETTE_MODE",
    "sandbox": "RLM_SANDBOX",
}

NO_MODEL = (
    "No model is configured for %%rlm. Set one with  %config RLMMagics.model = \"openai/gpt-4o-mini\"  "
    "(any litellm provider/model string), or the RLM_MODEL environment variable, or model=... on the cell."
)


class Settings(Configurable):
    """The configurable options of a run."""

    model = Unicode(None, allow_none=True, help="Root model, as a litellm 'provider/model' string.").tag(config=True)
    sub_model = Unicode(
        None, allow_none=True, help="Model that llm_query()/llm_query_batched() reach; defaults to the root model."
    ).tag(config=True)
    api_base = Unicode(
        None, allow_none=True, help="Base URL of an OpenAI-compatible server (vLLM, Ollama, LM Studio, a proxy)."
    ).tag(config=True)
    api_key = Unicode(
        None, allow_none=True,
        help="API key passed to litellm. Leave unset to let litellm read the provider's usual environment variable.",
    ).tag(config=True)
    max_iterations = Integer(20, help="Most root-model turns in one run.").tag(config=True)
    max_llm_calls = Integer(50, help="Most model calls in one run, root and sub together.").tag(config=True)
    max_cost = Float(None, allow_none=True, help="Stop when litellm's cost estimate reaches this many dollars.").tag(
        config=True
    )
    timeout = Float(180.0, help="Seconds one code block may run in the REPL before it is interrupted.").tag(config=True)
    mode = Enum(MODES, "standard", help="standard | conservative (few sub-calls) | no_subcalls (no sub-model).").tag(
        config=True
    )
    kernel = Unicode(
        None, allow_none=True, help="Jupyter kernelspec name for the REPL; default: ipykernel on this interpreter."
    ).tag(config=True)
    max_output_chars = Integer(10_000, help="REPL output shown to the model per block, in characters.").tag(config=True)
    sub_concurrency = Integer(64, help="Concurrent sub-calls made by llm_query_batched.").tag(config=True)
    sub_context_window = Integer(
        None, allow_none=True,
        help="Sub-model input window in tokens, for models litellm does not know (prompts beyond it are refused).",
    ).tag(config=True)
    sub_system_prompt = Unicode(
        None, allow_none=True, help="Optional system message sent with every sub-call (none by default)."
    ).tag(config=True)
    num_retries = Integer(3, help="Retries (with backoff) of rate-limit, server and timeout errors, done by litellm.").tag(
        config=True
    )
    stream = Bool(
        True, help="Stream root-model replies while a live view shows them (where the server streams)."
    ).tag(config=True)
    request_timeout = Float(300.0, help="Seconds one model request may take.").tag(config=True)
    verbose = Bool(True, help="Print a text log of each turn where no widget view is shown.").tag(config=True)
    env_allow = List(Unicode(), help="Extra environment variable names the REPL kernel may see.").tag(config=True)
    preview_chars = Integer(400, help="Characters of each bound value previewed to the root model.").tag(config=True)
    max_restarts = Integer(3, help="REPL kernel replacements allowed in one run before it ends with an error.").tag(
        config=True
    )
    warm_kernels = Bool(
        True, help="After a run, keep one spare REPL kernel started so the next run starts in milliseconds."
    ).tag(config=True)
    session = Unicode(
        None, allow_none=True,
        help="Keep the REPL and its variables under this name across runs, for follow-up questions.",
    ).tag(config=True)
    sandbox = Enum(
        ("default", "strict"), "default",
        help="default: separate process, scrubbed env, limits; strict: also bubblewrap (read-only filesystem, "
        "hidden home, no network, own PID namespace). strict fails when bubblewrap is missing.",
    ).tag(config=True)
    memory_limit = Integer(
        None, allow_none=True, help="REPL address-space limit in bytes (default: half the machine's memory, "
        "plus room for the bound values).",
    ).tag(config=True)
    cpu_limit = Float(
        None, allow_none=True, help="CPU seconds the REPL may use per run (default: timeout × max_iterations).",
    ).tag(config=True)
    file_size_limit = Integer(16 << 30, help="Largest file the REPL may write, in bytes.").tag(config=True)
    max_processes = Integer(256, help="Processes/threads the REPL may add beyond what the user already runs.").tag(
        config=True
    )
    work_dir_size = Integer(2 << 30, help="strict only: size of the REPL's in-memory working folder, in bytes.").tag(
        config=True
    )
    cache_dir = Unicode(
        None, allow_none=True,
        help="Folder for litellm's disk cache: identical model calls are answered from it across runs "
        "(needs diskcache: pip install 'rlm-magic[cache]').",
    ).tag(config=True)
    run_log = Bool(
        True, help="Append every run's events to a JSON-lines log as it goes (see run_log_dir, load_run)."
    ).tag(config=True)
    run_log_dir = Unicode(
        None, allow_none=True,
        help="Folder for run logs; default $RLM_RUN_LOG_DIR, else ~/.cache/rlm_magic/runs.",
    ).tag(config=True)
    cassette = Unicode(
        None, allow_none=True,
        help="Cassette file (JSON lines) that records model calls and replays them offline; see cassette_mode.",
    ).tag(config=True)
    cassette_mode = Enum(
        ("record", "replay", "auto"), None, allow_none=True,
        help="record: call live and append; replay: answer only from the cassette (a miss is an error); "
        "auto (the default): replay what matches, call live and append on a miss.",
    ).tag(config=True)
    cassette_ignore = List(
        Unicode(), help="Regular expressions masked before matching calls to the cassette (volatile text)."
    ).tag(config=True)
    litellm_kwargs = Dict(help="Extra keyword arguments for every litellm.acompletion call (e.g. temperature).").tag(
        config=True
    )

    @validate("max_iterations", "max_llm_calls", "max_output_chars", "sub_concurrency", "preview_chars")
    def _positive_int(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise ValueError(f"{proposal['trait'].name} must be at least 1")
        return proposal["value"]

    @validate("timeout", "request_timeout")
    def _positive_float(self, proposal: Any) -> float:
        if proposal["value"] <= 0:
            raise ValueError(f"{proposal['trait'].name} must be positive")
        return proposal["value"]

    @classmethod
    def option_names(cls) -> list[str]:
        return sorted(cls.class_own_traits(config=True)) if cls is Settings else sorted(
            Settings.class_own_traits(config=True))


def env_value(name: str) -> str | None:
    var = ENV_VARS.get(name)
    value = os.environ.get(var) if var else None
    return value or None
