"""The child's line to the notebook process: one JSON request, one JSON reply.

A fresh Unix-socket connection per request keeps this thread-safe and means an
interrupted call (KeyboardInterrupt while waiting) can never leave a stale
reply behind for the next caller.
"""

from __future__ import annotations

import json
import socket
from typing import Any


class ChannelError(RuntimeError):
    pass


class Channel:
    def __init__(self, address: str) -> None:
        self.address = address

    def _connect(self) -> socket.socket:
        if self.address.startswith("tcp://"):
            host, port = self.address[6:].rsplit(":", 1)
            return socket.create_connection((host, int(port)))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.address)
        return sock

    def request(self, payload: dict[str, Any], buffers: list[Any] | None = None) -> dict[str, Any]:
        if buffers:  # values too big for a JSON line travel as comm buffers; the request names them
            from .wire import send_data

            payload = dict(payload, data=send_data(buffers))
        data = (json.dumps(payload, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            sock = self._connect()
        except OSError as exc:
            raise ChannelError(f"cannot reach the notebook process ({exc})") from None
        with sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw:
            raise ChannelError("the notebook process closed the channel without a reply")
        reply = json.loads(raw.decode("utf-8"))
        if not isinstance(reply, dict):
            raise ChannelError("malformed reply from the notebook process")
        return reply
