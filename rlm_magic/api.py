"""The plain-Python face of the engine: ``RLM(...).run(question, context=df)``.

The magic is a thin layer over this class, so anything a notebook cell can do,
a script can do the same way.
"""

from __future__ import annotations

import keyword
import os
from pathlib import Path
from typing import Any, Callable

from .cassette import Cassette
from .engine import Engine, RunConfig
from .events import Event
from .models import ModelOptions, use_disk_cache
from .result import RLMResult
from .runlog import RunLog
from .sandbox import SANDBOXES, Limits, check_strict, physical_memory
from .runner import run_with_events
from .settings import NO_MODEL, Settings, env_value

#: Names the REPL defines itself; a binding may not take them.
RESERVED_NAMES = frozenset({"llm_query", "llm_query_batched", "SUBMIT", "FINAL", "FINAL_VAR", "__rlm__"})


_swept = False


def _sweep_once() -> None:
    """Remove scratch folders a crashed notebook left behind (once per process)."""
    global _swept
    if not _swept:
        _swept = True
        from .workspace import sweep_stale_run_dirs

        sweep_stale_run_dirs()


class ConfigError(ValueError):
    """A setting or argument is wrong; raised before any kernel starts."""


class RLM(Settings):
    """A configured Recursive Language Model runner.

    Examples
    --------
    >>> rlm = RLM(model="openai/gpt-4o-mini")               # doctest: +SKIP
    >>> res = rlm.run("Which region sells most?", context=df)  # doctest: +SKIP
    >>> res.answer, res.fields, res.usage                   # doctest: +SKIP
    """

    def __init__(self, model: str | None = None, sub_model: str | None = None, *,
                 on_event: Callable[[Event], None] | None = None, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(Settings.class_trait_names(config=True)) - {"config", "parent"})
        if unknown:
            raise TypeError(f"unknown RLM setting(s): {', '.join(unknown)}")
        if model is not None:
            settings["model"] = model
        if sub_model is not None:
            settings["sub_model"] = sub_model
        super().__init__(**settings)
        self._subscribers: list[Callable[[Event], None]] = [on_event] if on_event is not None else []
        self.last_result: RLMResult | None = None

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[Event], None]:
        """Receive every event of later runs, on the thread that calls :meth:`run`."""
        self._subscribers.append(fn)
        return fn

    # ------------------------------------------------------------------
    def run_config(self) -> RunConfig:
        """Resolve the settings (explicit values, then ``RLM_*`` environment variables) for one run."""
        model = self.model or env_value("model")
        if not model:
            raise ConfigError(NO_MODEL)
        sub_model = self.sub_model or env_value("sub_model") or model
        return RunConfig(
            model=model,
            sub_model=sub_model,
            mode=self.mode,
            max_iterations=self.max_iterations,
            max_llm_calls=self.max_llm_calls,
            max_cost=self.max_cost,
            timeout=self.timeout,
            max_output_chars=self.max_output_chars,
            sub_concurrency=self.sub_concurrency,
            sub_context_window=self.sub_context_window,
            sub_system_prompt=self.sub_system_prompt,
            kernel=self.kernel,
            env_allow=tuple(self.env_allow),
            max_restarts=self.max_restarts,
            preview_chars=self.preview_chars,
            sandbox=self._sandbox(),
            limits=Limits(
                memory=self.memory_limit if self.memory_limit else physical_memory() // 2,
                cpu_per_run=self.cpu_limit if self.cpu_limit else (self.timeout or 180.0) * self.max_iterations,
                file_size=self.file_size_limit or None,
                processes=self.max_processes or None,
                work_dir_size=self.work_dir_size or None,
            ),
            session=self.session or None,
            warm_kernels=self.warm_kernels,
            models=ModelOptions(
                api_base=self.api_base or env_value("api_base"),
                api_key=self.api_key,
                num_retries=self.num_retries,
                request_timeout=self.request_timeout,
                extra=dict(self.litellm_kwargs),
                cassette=self._cassette(),
                stream=self.stream,
                cache_dir=os.path.expanduser(self.cache_dir) if self.cache_dir else None,
            ),
        )

    def _sandbox(self) -> str:
        """Explicit setting, else RLM_SANDBOX; an unknown value is an error, never a silent downgrade."""
        value = self.sandbox if self.sandbox != "default" else (env_value("sandbox") or "default")
        value = value.strip().lower()
        if value not in SANDBOXES:
            raise ConfigError(f"sandbox must be one of {', '.join(SANDBOXES)}, not {value!r}")
        return value

    def _cassette(self) -> Cassette | None:
        path = self.cassette or env_value("cassette")
        if not path:
            return None
        mode = (self.cassette_mode or env_value("cassette_mode") or "auto").strip().lower()
        try:
            return Cassette(Path(path), mode=mode, ignore=tuple(self.cassette_ignore))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cassette: {exc}") from None

    def check(self, question: str, bindings: dict[str, Any]) -> RunConfig:
        """Every check that can fail before a kernel starts."""
        from .session import check_kernel_name

        _sweep_once()
        if self.session is not None and not (self.session.replace("-", "_").isidentifier()):
            raise ConfigError(f"session names are letters, digits, '_' and '-', not {self.session!r}")
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("the question is empty: give question=\"...\" or write it in the cell body")
        for name in bindings:
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ConfigError(f"{name!r} is not a valid Python variable name for the REPL")
            if name in RESERVED_NAMES:
                raise ConfigError(f"{name!r} is defined by the REPL itself; bind the value under another name")
        config = self.run_config()
        try:
            check_kernel_name(config.kernel)
            if config.sandbox == "strict":
                check_strict()
            if config.models.cache_dir:
                use_disk_cache(config.models.cache_dir)
        except (ValueError, RuntimeError) as exc:  # includes SandboxUnavailable
            raise ConfigError(str(exc)) from None
        return config

    def run(self, question: str, /, **bindings: Any) -> RLMResult:
        """Answer ``question`` about the bound values; blocks until the run ends.

        Each keyword becomes a REPL variable of that name (``context=df``).
        On KeyboardInterrupt the child kernel is stopped, the partial result is
        kept in :attr:`last_result` (status ``interrupted``) and the interrupt
        is re-raised.
        """
        config = self.check(question, bindings)
        subscribers = list(self._subscribers)
        if self.verbose and not subscribers:
            from .views.text import TextView

            subscribers.append(TextView())
        log = next((s for s in subscribers if isinstance(s, RunLog)), None)
        if log is None and self.run_log:
            log = RunLog(self.run_log_dir)
            subscribers.append(log)
        # Stream only when someone shows the text as it arrives: a server that ignores streaming costs one
        # wasted request before it is detected, and nobody gains anything from a stream nobody watches.
        config.models.stream = config.models.stream and any(getattr(s, "wants_deltas", False) for s in subscribers)
        holder: dict[str, Engine] = {}

        def make(emit: Callable[[Event], None]):  # noqa: ANN202
            holder["engine"] = engine = Engine(config, emit)
            return engine.run(question, dict(bindings))

        def dispatch(event: Event) -> None:
            for fn in subscribers:
                fn(event)

        ticking = [fn.tick for fn in subscribers if callable(getattr(fn, "tick", None))]

        def tick() -> None:
            for fn in ticking:
                fn()

        try:
            result = run_with_events(make, dispatch, tick=tick if ticking else None)
        except KeyboardInterrupt:
            if "engine" in holder:
                self.last_result = holder["engine"].result
                self.last_result.status = "interrupted"
                self.last_result.log = str(log.path) if log is not None else None
            raise
        finally:
            if log is not None:
                log.close()
        result.log = str(log.path) if log is not None else None
        self.last_result = result
        return result

    async def arun(self, question: str, /, **bindings: Any) -> RLMResult:
        """Async variant for code that already runs an event loop of its own (events go to subscribers directly)."""
        config = self.check(question, bindings)

        def emit(event: Event) -> None:
            for fn in self._subscribers:
                fn(event)

        result = await Engine(config, emit).run(question, dict(bindings))
        self.last_result = result
        return result
