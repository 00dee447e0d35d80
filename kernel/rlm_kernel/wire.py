"""The REPL's line to the notebook over the Jupyter protocol itself.

Used when the kernel shares no files with the notebook (a remote ``kernel=``
spec), and for results under ``sandbox=strict``, where the run folder is
read-only.  Three paths, all standard Jupyter messages:

* values in: the notebook opens a comm (target :data:`BIND_TARGET`) whose
  binary buffers hold the bytes; the handler parks them in :data:`INBOX` until
  the bootstrap code loads them;
* values out: a comm opened from here (target :data:`DATA_TARGET`) carries
  the buffers on iopub;
* requests (sub-calls, SUBMIT): an ``input_request`` on the stdin channel with
  a marked prompt, answered by an ``input_reply``.  stdin is the one channel a
  kernel reads while user code runs, so a blocking call works mid-cell.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from .channel import ChannelError

BIND_TARGET = "rlm_magic.bind"
DATA_TARGET = "rlm_magic.data"
#: Starts every prompt this module sends, so the notebook tells our requests from a model's ``input()``.
PROMPT_MARK = "\x1frlm\x1f"

#: Values sent by the notebook, by id, until the bootstrap code loads them.
INBOX: dict[str, tuple[dict[str, Any], list[Any]]] = {}


def register(kernel: Any) -> None:
    """Accept value comms from the notebook (idempotent: a re-run replaces the handler)."""

    def on_open(comm: Any, msg: dict[str, Any]) -> None:
        data = msg["content"].get("data") or {}
        INBOX[str(data.get("id"))] = (data, list(msg.get("buffers") or []))

    kernel.comm_manager.register_target(BIND_TARGET, on_open)


def take(key: str) -> list[Any]:
    """The buffers sent under ``key`` (each is handed over once)."""
    try:
        return INBOX.pop(key)[1]
    except KeyError:
        raise RuntimeError(f"value {key!r} did not arrive from the notebook") from None


def send_data(buffers: list[Any]) -> str:
    """Publish ``buffers`` on iopub; returns the id a request refers to them by."""
    import comm

    key = uuid.uuid4().hex
    channel = comm.create_comm(target_name=DATA_TARGET, data={"id": key}, buffers=buffers)
    channel.close()
    return key


class WireChannel:
    """Same interface as :class:`rlm_kernel.channel.Channel`, over the kernel's stdin channel."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        # One request at a time: stdin carries one outstanding input_request, and threads share it.
        self.lock = threading.Lock()

    def request(self, payload: dict[str, Any], buffers: list[Any] | None = None) -> dict[str, Any]:
        with self.lock:
            payload = dict(payload, id=uuid.uuid4().hex)
            if buffers:
                payload["data"] = send_data(buffers)
            try:
                text = self.kernel.raw_input(PROMPT_MARK + json.dumps(payload, ensure_ascii=False))
            except EOFError:
                raise ChannelError("the notebook process closed the request") from None
        try:
            reply = json.loads(text)
        except ValueError:
            raise ChannelError("malformed reply from the notebook process") from None
        if not isinstance(reply, dict) or reply.get("id") != payload["id"]:
            raise ChannelError("the reply from the notebook process belongs to another request")
        return reply
