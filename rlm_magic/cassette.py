"""Record every model call of a run to a cassette, and replay runs from it offline.

A cassette is a JSON-lines text file, one line per call: a key derived from
the model and the messages, the role, the messages themselves (so a reviewer
can read what was asked), the response, the usage and the cost.  No API key,
header or other request option is ever written.

Replay goes through litellm's real call path: the call is made with litellm
against the ``rlm-cassette`` custom provider registered here, which answers
from the cassette, so the engine receives an ordinary ``ModelResponse``.

Matching is exact on model and messages, after *volatile* parts are masked:
by default the run's scratch paths and memory addresses, plus any regular
expressions the user adds (``cassette_ignore``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("record", "replay", "auto")
PROVIDER = "rlm-cassette"

#: Masked before matching: scratch folders of a run, and memory addresses in reprs.
DEFAULT_IGNORE = (
    r"/(?:dev/shm|tmp|var/folders/[^/\s]+/[^/\s]+/T)/rlm-[A-Za-z0-9_]+",
    r"\b0x[0-9a-fA-F]{6,16}\b",
)


class CassetteMiss(RuntimeError):
    """A replayed run asked for a call the cassette does not hold."""


@dataclass
class Cassette:
    """One cassette file, opened in a mode; safe to share between concurrent sub-calls."""

    path: Path
    mode: str = "replay"
    ignore: tuple[str, ...] = ()
    _entries: dict[str, deque[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _all: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _served: int = 0
    _written: int = 0

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.mode not in MODES:
            raise ValueError(f"cassette mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        self._patterns = [re.compile(p) for p in (*DEFAULT_IGNORE, *self.ignore)]
        if self.mode == "replay" and not self.path.exists():
            raise FileNotFoundError(f"cassette {self.path} does not exist (record it first with record=...)")
        if self.mode != "replay":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._load()

    # -- keys ------------------------------------------------------------
    def _mask(self, text: str) -> str:
        for pattern in self._patterns:
            text = pattern.sub("<…>", text)
        return text

    def normalise(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, str):
                content = self._mask(content)
            out.append({"role": m.get("role"), "content": content})
        return out

    def key(self, model: str, messages: list[dict[str, Any]]) -> str:
        blob = json.dumps({"model": model, "messages": self.normalise(messages)}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]

    # -- reading ---------------------------------------------------------
    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    raise ValueError(f"{self.path}:{number}: not a JSON line") from None
                # Keys are recomputed, so a cassette still matches after the ignore list changes.
                entry["key"] = self.key(entry["model"], entry["messages"])
                self._entries.setdefault(entry["key"], deque()).append(entry)
                self._all.append(entry)

    def take(self, model: str, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The recorded call for these messages (each recording is served once, in order)."""
        key = self.key(model, messages)
        with self._lock:
            queue = self._entries.get(key)
            if not queue:
                return None
            self._served += 1
            return queue.popleft()

    def miss(self, model: str, messages: list[dict[str, Any]], role: str) -> CassetteMiss:
        """An error that names the call and shows how it differs from the closest recording."""
        wanted = self.normalise(messages)
        same_role = [e for e in self._all if e.get("role") == role and e.get("model") == model] or self._all
        best, best_score = None, -1.0
        flat_wanted = _flatten(wanted)
        for entry in same_role:
            score = difflib.SequenceMatcher(None, _flatten(self.normalise(entry["messages"])), flat_wanted,
                                            autojunk=False).quick_ratio()
            if score > best_score:
                best, best_score = entry, score
        head = (f"cassette miss in {self.path}: no recorded {role} call to {model} matches call "
                f"#{self._served + 1} of this run")
        if best is None:
            return CassetteMiss(head + " (the cassette is empty)")
        diff = difflib.unified_diff(
            _flatten(self.normalise(best["messages"])).splitlines(), flat_wanted.splitlines(),
            fromfile="recorded", tofile="this run", lineterm="", n=1,
        )
        lines = list(diff)
        shown = "\n".join(line[:200] for line in lines[:24])
        more = f"\n… ({len(lines) - 24} more diff lines)" if len(lines) > 24 else ""
        return CassetteMiss(f"{head}.\nClosest recording differs:\n{shown}{more}\n"
                            "Re-record with record=..., use cassette=... (auto) to call live on a miss, "
                            "or mask volatile text with cassette_ignore.")

    # -- writing ---------------------------------------------------------
    def record(self, *, model: str, role: str, messages: list[dict[str, Any]], response: str | None,
               reasoning: str | None, usage: dict[str, Any] | None, cost: float | None, error: str | None) -> None:
        entry = {
            "key": self.key(model, messages),
            "role": role,
            "model": model,
            "messages": [{"role": m.get("role"), "content": m.get("content")} for m in messages],
            "response": {"content": response, "reasoning": reasoning},
            "usage": usage,
            "cost": cost,
            "error": error,
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
            self._written += 1
            self._all.append(entry)

    @property
    def stats(self) -> dict[str, int]:
        return {"served": self._served, "written": self._written}


def _flatten(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in messages)


# -- litellm provider ------------------------------------------------------
_provider_lock = threading.Lock()


def register_provider() -> None:
    """Register the ``rlm-cassette`` provider with litellm once per process."""
    import litellm
    from litellm import CustomLLM
    from litellm.types.utils import ModelResponse

    with _provider_lock:
        if any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
            return

        class CassetteProvider(CustomLLM):
            """Answers a call from the cassette entry the caller found for it."""

            def _answer(self, model_response: ModelResponse, optional_params: dict, litellm_params: dict | None,
                        kwargs: dict) -> ModelResponse:
                metadata = (litellm_params or {}).get("metadata") or kwargs.get("metadata") or {}
                entry = metadata.get("rlm_cassette_entry") or optional_params.get("rlm_cassette_entry")
                if entry is None:
                    raise CassetteMiss("the rlm-cassette provider was called without a cassette entry")
                if entry.get("error"):
                    raise RuntimeError(f"(replayed) {entry['error']}")
                response = entry.get("response") or {}
                message: dict[str, Any] = {"role": "assistant", "content": response.get("content")}
                if response.get("reasoning"):
                    message["reasoning_content"] = response["reasoning"]
                usage = entry.get("usage") or {}
                model_response = ModelResponse(
                    model=entry.get("model"),
                    choices=[{"index": 0, "finish_reason": "stop", "message": message}],
                    usage={
                        "prompt_tokens": usage.get("prompt_tokens") or 0,
                        "completion_tokens": usage.get("completion_tokens") or 0,
                        "total_tokens": (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0),
                    },
                )
                model_response._hidden_params["rlm_cassette"] = {
                    "cost": entry.get("cost"), "tokens_estimated": bool(usage.get("estimated")),
                    "usage_reported": bool(usage),
                }
                return model_response

            def completion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,  # noqa: ANN001
                           encoding, api_key, logging_obj, optional_params, acompletion=None, litellm_params=None,
                           logger_fn=None, headers=None, timeout=None, client=None, **kwargs):  # noqa: ANN003
                return self._answer(model_response, optional_params, litellm_params, kwargs)

            async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response,  # noqa: ANN001
                                  print_verbose, encoding, api_key, logging_obj, optional_params, acompletion=None,
                                  litellm_params=None, logger_fn=None, headers=None, timeout=None, client=None,
                                  **kwargs):  # noqa: ANN003
                return self._answer(model_response, optional_params, litellm_params, kwargs)

        litellm.custom_provider_map = [*litellm.custom_provider_map,
                                       {"provider": PROVIDER, "custom_handler": CassetteProvider()}]
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
