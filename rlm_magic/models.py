"""Model calls through litellm: one place that knows about providers.

Model strings go to litellm untouched; keys come from the environment the way
litellm reads them.  Every call becomes an :class:`LLMCall` record with the
provider's own token counts (estimated with litellm's counter only when the
provider sent none, and marked so) and litellm's own cost (``None`` when it
does not know the model).  Transient errors are retried by litellm
(``num_retries`` reaches the OpenAI-compatible client's backoff).  API errors
never raise out of :meth:`ModelClient.complete`; they become the record's
``error`` so a run can carry on or report them.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

from .cassette import PROVIDER, Cassette, CassetteMiss, register_provider
from .result import LLMCall


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


@dataclass
class ModelOptions:
    """How to reach the models; shared by root and sub calls."""

    api_base: str | None = None
    api_key: str | None = None
    num_retries: int = 3
    request_timeout: float = 300.0
    extra: dict[str, Any] = field(default_factory=dict)  # passed to litellm.acompletion as is
    cassette: Cassette | None = None  # record/replay of every call
    stream: bool = True  # stream root calls where the server supports it
    cache_dir: str | None = None  # litellm disk cache for repeated calls across runs


#: (model, api_base) pairs whose server answered a streaming request without streaming.
_NO_STREAM: set[tuple[str, str | None]] = set()


class CallCache:
    """Identical model calls answered from disk across runs (diskcache), replayed like cassette entries.

    litellm's own disk cache pulls in its proxy's web stack, so this keeps to
    diskcache and reuses the cassette provider to answer hits through litellm.
    """

    def __init__(self, directory: str) -> None:
        try:
            import diskcache
        except ImportError:
            raise RuntimeError("cache_dir needs the diskcache package: pip install 'rlm-magic[cache]'") from None
        self.store = diskcache.Cache(directory)

    @staticmethod
    def key(model: str, messages: list[dict[str, Any]], extra: dict[str, Any]) -> str:
        import hashlib
        import json

        blob = json.dumps({"model": model, "messages": messages, "extra": extra}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.store.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.store.set(key, entry)


_caches: dict[str, CallCache] = {}


def use_disk_cache(directory: str) -> CallCache:
    """The process's cache for ``directory`` (opened once)."""
    if directory not in _caches:
        _caches[directory] = CallCache(directory)
    return _caches[directory]


@lru_cache(maxsize=64)
def context_window(model: str) -> int | None:
    """The model's input window per litellm's model info, or None when litellm does not know it."""
    try:
        info = _litellm().get_model_info(model)
    except Exception:
        return None
    window = info.get("max_input_tokens") or info.get("max_tokens")
    return int(window) if window else None


def count_tokens(model: str, text: str) -> int:
    try:
        return int(_litellm().token_counter(model=model, text=text))
    except Exception:
        return max(1, len(text) // 4)


def check_fits(model: str, prompt: str, window: int | None) -> str | None:
    """An explanation when ``prompt`` will not fit ``window`` tokens, else None.

    Counting tokens of a huge string is slow, so obviously small prompts skip
    the count and obviously huge ones are rejected on their length.
    """
    if not window:
        return None
    if len(prompt) < window * 0.9:  # a token almost always spans at least one character
        return None
    tokens = len(prompt) // 4 if len(prompt) > window * 8 else count_tokens(model, prompt)
    if tokens <= window:
        return None
    return (
        f"prompt too long for the sub-model {model}: about {tokens:,} tokens, but it accepts {window:,}. "
        f"Split the text into chunks of under ~{window * 3:,} characters and use llm_query_batched."
    )


class ModelClient:
    """Makes litellm calls and turns responses into :class:`LLMCall` records."""

    def __init__(self, options: ModelOptions) -> None:
        self.options = options

    def _kwargs(self, model: str) -> dict[str, Any]:
        opts = self.options
        kw: dict[str, Any] = {"num_retries": opts.num_retries, "timeout": opts.request_timeout, **opts.extra}
        if opts.api_base:
            kw["api_base"] = opts.api_base
        if opts.api_key:
            kw["api_key"] = opts.api_key
        elif opts.api_base and model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            # Local OpenAI-compatible servers (vLLM, Ollama, LM Studio) need no key,
            # but the OpenAI client refuses to start without one.
            kw["api_key"] = "no-key-needed"
        return kw

    async def complete(self, model: str, messages: list[dict[str, Any]], *, role: str, prompt: str = "",
                       on_text: Callable[[str], None] | None = None) -> LLMCall:
        """One call, live or from the cassette; raises only :class:`CassetteMiss`.

        With ``on_text`` (and ``stream`` on), a live call streams and ``on_text``
        receives the text so far as it grows.
        """
        litellm = _litellm()
        cassette = self.options.cassette
        call = LLMCall(model=model, role=role, prompt=prompt)
        entry = None
        if cassette is not None and cassette.mode in ("replay", "auto"):
            entry = cassette.take(model, messages)
            if entry is None and cassette.mode == "replay":
                raise cassette.miss(model, messages, role)
        cache = use_disk_cache(self.options.cache_dir) if self.options.cache_dir else None
        cache_key = cache.key(model, messages, self.options.extra) if cache is not None else None
        if entry is None and cache is not None:
            entry = cache.get(cache_key)
            call.cached = entry is not None
        if entry is not None:  # replay through litellm's own call path, against the cassette provider
            register_provider()
            target, kwargs = f"{PROVIDER}/{model}", {"metadata": {"rlm_cassette_entry": entry}, "api_key": "cassette"}
        else:
            target, kwargs = model, self._kwargs(model)
        started = time.monotonic()
        resp, call.error = await self._send(litellm, target, model, messages, kwargs,
                                            on_text if entry is None else None, retry=entry is None)
        call.latency = time.monotonic() - started
        if resp is not None:
            message = resp.choices[0].message if getattr(resp, "choices", None) else None
            call.response = getattr(message, "content", None) if message is not None else None
            call.reasoning = getattr(message, "reasoning_content", None) if message is not None else None
            self._usage(call, resp, messages)
            replayed = (getattr(resp, "_hidden_params", None) or {}).get("rlm_cassette")
            call.cost = 0.0 if call.cached else replayed["cost"] if replayed else _cost(litellm, resp)
        if entry is not None:
            call.error = call.error.replace("RuntimeError: (replayed) ", "", 1) if call.error else None
        else:
            usage = None if call.prompt_tokens is None else {
                "prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens,
                "estimated": call.tokens_estimated}
            if cassette is not None:
                cassette.record(model=model, role=role, messages=messages, response=call.response,
                                reasoning=call.reasoning, usage=usage, cost=call.cost, error=call.error)
            if cache is not None and call.error is None:
                cache.put(cache_key, {"model": model, "response": {"content": call.response,
                                                                   "reasoning": call.reasoning},
                                      "usage": usage, "cost": call.cost, "error": None})
        return call

    async def _send(self, litellm: Any, target: str, model: str, messages: list[dict[str, Any]],
                    kwargs: dict[str, Any], on_text: Callable[[str], None] | None, *, retry: bool) -> tuple[Any, str | None]:
        """The response, or the error text once litellm's retries (and ours, for garbled replies) are spent."""
        attempt = 0
        while True:
            try:
                resp = None
                if on_text is not None and self._may_stream(model):
                    resp = await self._streamed(litellm, model, messages, kwargs, on_text)
                if resp is None:
                    resp = await litellm.acompletion(model=target, messages=messages, **kwargs)
                return resp, None
            except CassetteMiss:
                raise
            except Exception as exc:  # every provider error, after litellm's retries
                if retry and attempt < self.options.num_retries and _unreadable(exc):
                    attempt += 1  # the HTTP client retried statuses; a garbled body is ours to retry
                    await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
                    continue
                return None, _error_text(exc)

    def _may_stream(self, model: str) -> bool:
        return self.options.stream and (model, self.options.api_base) not in _NO_STREAM

    async def _streamed(self, litellm: Any, model: str, messages: list[dict[str, Any]], kwargs: dict[str, Any],
                        on_text: Callable[[str], None]) -> Any:
        """Stream a call and rebuild the full response; None when this server does not stream.

        A server that ignores ``stream`` (or fails before its first chunk) is
        remembered and called without streaming from then on, so streaming can
        only ever add live text, never lose a reply.
        """
        chunks: list[Any] = []
        text = ""
        saw_usage = False
        streamed = False  # a real stream opens with a role delta or carries text
        try:
            stream = await litellm.acompletion(model=model, messages=messages, stream=True,
                                               stream_options={"include_usage": True}, **kwargs)
            async for chunk in stream:
                chunks.append(chunk)
                saw_usage = saw_usage or bool(getattr(chunk, "usage", None))
                for choice in getattr(chunk, "choices", None) or []:
                    delta = getattr(choice, "delta", None)
                    piece = getattr(delta, "content", None)
                    streamed = streamed or bool(piece or getattr(delta, "role", None)
                                                or getattr(delta, "reasoning_content", None))
                    if piece:
                        text += piece
                        on_text(text)
        except Exception as exc:
            # Rate limits, server errors and timeouts are real failures (litellm already retried them);
            # a 400 (e.g. stream_options refused) or an unreadable stream means "no streaming here".
            status = getattr(exc, "status_code", None)
            if chunks or (status is not None and status != 400):
                raise
            _NO_STREAM.add((model, self.options.api_base))
            return None
        if not streamed:  # the server answered with one JSON body that litellm could not read as a stream
            _NO_STREAM.add((model, self.options.api_base))
            return None
        resp = litellm.stream_chunk_builder(chunks, messages=messages)
        resp._hidden_params["rlm_stream_usage"] = saw_usage
        return resp

    def _usage(self, call: LLMCall, resp: Any, messages: list[dict[str, Any]]) -> None:
        usage = getattr(resp, "usage", None)
        replayed = (getattr(resp, "_hidden_params", None) or {}).get("rlm_cassette")
        if replayed is not None:
            if replayed["usage_reported"]:
                call.prompt_tokens = getattr(usage, "prompt_tokens", None)
                call.completion_tokens = getattr(usage, "completion_tokens", None)
                call.tokens_estimated = replayed["tokens_estimated"]
            return
        hidden = getattr(resp, "_hidden_params", None) or {}
        reported = hidden["rlm_stream_usage"] if "rlm_stream_usage" in hidden else _provider_reported_usage(resp)
        if usage is not None and reported:
            call.prompt_tokens = getattr(usage, "prompt_tokens", None)
            call.completion_tokens = getattr(usage, "completion_tokens", None)
            return
        litellm = _litellm()
        call.tokens_estimated = True
        try:
            call.prompt_tokens = int(litellm.token_counter(model=call.model, messages=messages))
        except Exception:
            call.prompt_tokens = sum(len(str(m.get("content") or "")) for m in messages) // 4
        call.completion_tokens = count_tokens(call.model, call.response or "") if call.response else 0


def _provider_reported_usage(resp: Any) -> bool:
    """Did the provider itself send usage?  litellm fills in zeros (or its own count) when it did not."""
    hidden = getattr(resp, "_hidden_params", None) or {}
    raw = hidden.get("original_response")
    if isinstance(raw, str) and raw:
        return '"usage"' in raw
    if isinstance(raw, dict):
        return raw.get("usage") is not None
    usage = getattr(resp, "usage", None)
    # Every prompt has tokens, so an all-zero usage is litellm's placeholder, not a report.
    return usage is not None and any(getattr(usage, k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))


def _cost(litellm: Any, resp: Any) -> float | None:
    try:
        cost = litellm.completion_cost(completion_response=resp)
    except Exception:
        return None
    return float(cost) if cost is not None else None


_NOISE = re.compile(r"^(?:litellm\.)?\w+(?:Error|Exception)\s*(?::|-)\s*|^OpenAIException\s*-\s*")


_UNREADABLE = ("Expecting value", "JSONDecodeError", "Unterminated string", "Extra data", "Invalid control character",
               "MidStreamFallbackError", "Connection error", "Server disconnected", "incomplete chunked read")


def _unreadable(exc: BaseException) -> bool:
    """A reply that arrived garbled or cut off (not an HTTP error status, which the client already retried)."""
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in _UNREADABLE)


def _error_text(exc: BaseException) -> str:
    """``Type: message`` without litellm's repeated ``litellm.XError: XError: OpenAIException -`` prefixes."""
    text = str(exc).strip().replace("\n", " ")
    while True:
        trimmed = _NOISE.sub("", text, count=1)
        if trimmed == text:
            break
        text = trimmed
    if len(text) > 400:
        text = text[:400] + "…"
    return f"{type(exc).__name__}: {text}"
