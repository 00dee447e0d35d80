"""The notebook's end of the messages that replace files and sockets (see ``rlm_kernel.wire``).

A kernel that cannot see this machine's files (a remote ``kernel=`` spec)
gets its values as comm buffers and sends its requests over stdin; results
come back as comm buffers on iopub, which the strict sandbox uses as well
(its run folder is read-only).  A :class:`WireLink` belongs to one
:class:`~rlm_magic.session.KernelSession` and is driven by its execute loop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from queue import Empty
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import zmq
import zmq.asyncio

from rlm_kernel.wire import BIND_TARGET, DATA_TARGET, PROMPT_MARK

if TYPE_CHECKING:
    from .session import KernelSession

#: Answers a request the child sent over the protocol (a sub-call batch, a submission).
RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class WireLink:
    def __init__(self, session: KernelSession) -> None:
        self.session = session
        #: Set while a run takes requests over stdin (a kernel that shares no files with us).
        self.on_request: RequestHandler | None = None
        self._inbox: dict[str, list[Any]] = {}  # buffers the child sent, by id
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._data_comms: set[str] = set()

    # -- notebook -> child ---------------------------------------------
    def send_values(self, key: str, buffers: list[Any]) -> None:
        """Hand the child a value as binary frames (a comm_open it parks until the bootstrap loads it)."""
        kc = self.session.kc
        content = {"comm_id": uuid.uuid4().hex, "target_name": BIND_TARGET, "data": {"id": key}}
        kc.session.send(kc.shell_channel.socket, kc.session.msg("comm_open", content), buffers=buffers)

    # -- child -> notebook ---------------------------------------------
    async def next_message(self, wait: float, *, stdin: bool) -> tuple[str, dict[str, Any]]:
        """The next iopub message or, while requests come over the protocol, stdin message."""
        kc = self.session.kc
        if not stdin:
            return "iopub", await kc.get_iopub_msg(timeout=wait)
        for name, channel in (("stdin", kc.stdin_channel), ("iopub", kc.iopub_channel)):
            if await channel.msg_ready():
                return name, await channel.get_msg(timeout=0)
        poller = zmq.asyncio.Poller()
        poller.register(kc.iopub_channel.socket, zmq.POLLIN)
        poller.register(kc.stdin_channel.socket, zmq.POLLIN)
        ready = dict(await poller.poll(int(wait * 1000)))
        if kc.stdin_channel.socket in ready:
            return "stdin", await kc.stdin_channel.get_msg(timeout=0)
        if kc.iopub_channel.socket in ready:
            return "iopub", await kc.iopub_channel.get_msg(timeout=0)
        raise Empty

    def on_stdin(self, msg: dict[str, Any], requests: set[asyncio.Task[None]]) -> None:
        """Start answering a request; ``requests`` holds the tasks the execute loop cancels when the code ends."""
        if msg.get("msg_type") != "input_request":
            return
        prompt = str(msg["content"].get("prompt", ""))
        if not prompt.startswith(PROMPT_MARK) or self.on_request is None:
            self.session.kc.input("\x04")  # model code called input(): there is nobody to type, so end of file
            return
        for task in requests:  # the child waits for one request at a time; an older one was given up
            task.cancel()
        requests.clear()
        task = asyncio.ensure_future(self._answer(prompt[len(PROMPT_MARK):], self.on_request))
        requests.add(task)
        task.add_done_callback(requests.discard)

    async def _answer(self, text: str, handler: RequestHandler) -> None:
        try:
            req = json.loads(text)
            if not isinstance(req, dict):
                raise ValueError
        except ValueError:
            reply: dict[str, Any] = {"ok": False, "error": "malformed request"}
            req = {}
        else:
            reply = await handler(req)
        self.session.kc.input(json.dumps({**reply, "id": req.get("id")}, ensure_ascii=False))

    def take_data(self, msg: dict[str, Any]) -> bool:
        """Keep the buffers of a value the child sent (any parent: it may come from a thread)."""
        kind, content = msg.get("msg_type"), msg.get("content") or {}
        if kind == "comm_close" and content.get("comm_id") in self._data_comms:
            self._data_comms.discard(content.get("comm_id"))
            return True
        if kind != "comm_open" or content.get("target_name") != DATA_TARGET:
            return False
        key = str((content.get("data") or {}).get("id"))
        self._data_comms.add(content.get("comm_id"))
        self._inbox[key] = list(msg.get("buffers") or [])
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def received(self, key: str, timeout: float = 60.0) -> list[Any]:
        """The buffers the child sent under ``key``; they may still be on their way when its request arrives."""
        if key not in self._inbox:
            waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        return self._inbox.pop(key)

    def forget(self) -> None:
        """Drop values nobody asked for (a submission that failed half-way); called when a run ends."""
        self._inbox.clear()
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()
