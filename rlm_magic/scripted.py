"""A loopback, OpenAI-compatible chat-completions server that answers from a script.

Why this exists
---------------
``%%rlm`` talks to models through litellm, and litellm talks HTTP.  To test the
magic (and to let the example notebooks run without an API key or a network),
we need a *real* HTTP endpoint whose answers we decide in advance.  Mocking
``litellm.completion`` would skip litellm's request building, response parsing,
retry logic, streaming reassembly and exception mapping -- exactly the parts
that break in practice -- so instead this module serves the genuine OpenAI wire
format on ``127.0.0.1`` and litellm is pointed at it with ``api_base``.

It uses the standard library only (``http.server.ThreadingHTTPServer`` in a
daemon thread), so it can ship inside the package and be used from notebooks,
tests and benchmarks alike.  Responses are deterministic (fixed ``id``,
``created`` and token counts) so recorded runs are reproducible.

Usage
-----
>>> import litellm
>>> from rlm_magic.scripted import Reply, ScriptedServer, code_reply
>>> script = {
...     "root": [
...         code_reply("print(len(context))", "Let me look at the data."),
...         "FINAL(42)",
...     ],
...     "sub": lambda req: f"summary of {len(req.prompt)} chars",
... }
>>> with ScriptedServer(script) as srv:                      # doctest: +SKIP
...     r = litellm.completion(model="openai/root", api_base=srv.url,
...                            api_key="sk-test",
...                            messages=[{"role": "user", "content": "hi"}])
...     r.choices[0].message.content
...     srv.requests[0].prompt
'Let me look at the data.\\n\\n```repl\\nprint(len(context))\\n```'
'hi'

Model names are matched as the server receives them: litellm strips the
provider prefix, so ``model="openai/root"`` arrives as ``"root"``.

Scripts
-------
Each model name maps either to a **list** of replies consumed in order (when it
runs out the server answers HTTP 500 with ``scripted model '<name>' has no more
replies (it was asked N times)``), or to a **handler** ``Callable[[Request],
Reply | str | None]`` that is called for every request.  A ``str`` is shorthand
for ``Reply(content=...)`` and ``None`` for ``Reply(content=None)`` (a JSON
``null`` content, as reasoning models sometimes send).  ``default`` serves model
names absent from the mapping; without it an unknown model gets HTTP 404.

Token usage
-----------
Unless a reply gives ``usage`` explicitly (or ``omit_usage=True``), usage is
computed deterministically so that cost/usage accounting can be asserted:

* ``prompt_tokens`` -- the number of whitespace-separated words across the
  contents of all request messages (text parts of list contents included);
* ``completion_tokens`` -- the number of whitespace-separated words in the reply
  content (0 when the content is ``None``);
* ``total_tokens`` -- their sum.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

__all__ = [
    "CREATED",
    "Handler",
    "Reply",
    "Request",
    "Script",
    "ScriptedServer",
    "code_reply",
    "count_words",
]

_log = logging.getLogger(__name__)

#: The fixed ``created`` timestamp of every response (2024-01-01T00:00:00Z), so
#: that recorded transcripts do not differ from run to run.
CREATED = 1704067200

#: Number of content pieces a streamed reply is split into (at most).
_STREAM_PIECES = 3


@dataclass
class Reply:
    """One scripted answer of the server.

    The defaults describe an ordinary successful completion with empty text;
    each field switches on one behaviour a real provider can exhibit, so that
    client code can be tested against it.
    """

    #: The assistant message text; ``None`` is sent as JSON ``null``.
    content: str | None = ""
    #: Sent as ``message.reasoning_content`` (and streamed as such) when set.
    reasoning: str | None = None
    #: Seconds to wait before answering.  Each request is served on its own
    #: thread, so delays of concurrent requests overlap.
    delay: float = 0.0
    #: HTTP status.  Anything but 200 sends an OpenAI-style error body
    #: ``{"error": {"message", "type", "code"}}`` instead of a completion.
    status: int = 200
    #: Explicit ``usage`` object; ``None`` means "compute it" (module docs).
    usage: dict[str, Any] | None = None
    #: Send no ``usage`` field at all (some gateways do this).
    omit_usage: bool = False
    #: Send a 200 response whose body is not valid JSON.
    malformed: bool = False
    #: ``choices[0].finish_reason`` (e.g. ``"length"`` to simulate truncation).
    finish_reason: str = "stop"
    #: Extra response headers, e.g. ``{"retry-after-ms": "10"}`` on a 429 so
    #: that the client's retry does not sleep for seconds.
    headers: dict[str, str] = field(default_factory=dict)
    #: Message of the error body when ``status != 200``; a message naming the
    #: status is used when this is ``None``.
    error_message: str | None = None


@dataclass
class Request:
    """A chat-completions request as the server received it."""

    #: The ``model`` field of the body (litellm strips ``openai/``).
    model: str
    #: The ``messages`` field of the body.
    messages: list[dict[str, Any]]
    #: The full decoded JSON body.
    body: dict[str, Any]
    #: Order of arrival across the whole server, starting at 0.
    index: int

    @property
    def prompt(self) -> str:
        """Content of the last ``user`` message (text parts joined by newlines).

        Returns ``""`` when there is no user message.
        """
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    @property
    def system(self) -> str | None:
        """Content of the first ``system`` message, or ``None`` if there is none."""
        for message in self.messages:
            if message.get("role") == "system":
                return _text_of(message.get("content"))
        return None

    @property
    def stream(self) -> bool:
        """Whether the client asked for a Server-Sent-Events stream."""
        return bool(self.body.get("stream"))


#: A handler computes the reply to one request.  ``str`` means
#: ``Reply(content=str)`` and ``None`` means ``Reply(content=None)``.
Handler = Callable[[Request], Union[Reply, str, None]]

#: What a model name can be mapped to: replies consumed in order, or a handler.
Script = Union[list[Union[Reply, str, None]], Handler]


def code_reply(code: str, text: str = "") -> str:
    """Return ``text`` followed by ``code`` in a fenced ```` ```repl ```` block.

    This is the shape in which the RLM root model asks for code to be run, so
    scripts read naturally: ``code_reply("print(len(context))", "Peek first.")``.
    """
    block = f"```repl\n{code.strip(chr(10))}\n```"
    text = text.strip()
    return f"{text}\n\n{block}" if text else block


def count_words(value: Any) -> int:
    """Count whitespace-separated words in a message content.

    ``None`` counts 0; a list content counts the words of its text parts.  This
    is the deterministic "tokenizer" behind the default ``usage``.
    """
    return len(_text_of(value).split())


def _text_of(content: Any) -> str:
    """Flatten an OpenAI message content (str, list of parts or None) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return str(content)


def _as_reply(value: Reply | str | None) -> Reply:
    if isinstance(value, Reply):
        return value
    if value is None:
        return Reply(content=None)
    if isinstance(value, str):
        return Reply(content=value)
    raise TypeError(
        f"a scripted reply must be a Reply, str or None, not {type(value).__name__}"
    )


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class _ScriptError(Exception):
    """Raised internally to answer a request with an error JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops connections under llm_query_batched-style bursts,
    # and clients then wait a second before retrying.
    request_queue_size = 256
    """The HTTP server, carrying a back-reference to its :class:`ScriptedServer`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: ScriptedServer) -> None:
        self.owner = owner
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early (timeouts, cancelled tasks) is normal in
        # tests; do not spray tracebacks over the notebook or pytest output.
        _log.debug("scripted server: error serving %s", client_address, exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    """Serves one HTTP request; the logic lives in :class:`ScriptedServer`."""

    # HTTP/1.0: one request per connection.  It keeps shutdown simple (no idle
    # keep-alive threads) and lets SSE bodies end by closing the connection.
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence http.server's per-request logging to stderr."""

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._send_json(200, self.server.owner._models_payload())
        else:
            self._send_error(404, f"no route for GET {path}")

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._drain()
            self._send_error(404, f"no route for POST {path}")
            return
        try:
            body = json.loads(self._drain() or b"null")
        except ValueError as exc:
            self._send_error(400, f"request body is not valid JSON: {exc}")
            return
        if not isinstance(body, dict):
            self._send_error(400, "request body must be a JSON object")
            return
        self.server.owner._serve_chat(self, body)

    # -- helpers used by ScriptedServer ------------------------------------

    def _drain(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send_json(status, _error_body(status, message), headers)


def _phrase(status: int) -> str:
    """``"429 Too Many Requests"`` for known statuses, ``"599"`` otherwise."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _error_body(status: int, message: str) -> dict[str, Any]:
    if status >= 500:
        kind = "server_error"
    else:
        kind = _ERROR_TYPES.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}


class ScriptedServer:
    """An OpenAI-compatible chat-completions endpoint on loopback, answering from a script.

    Point litellm at :attr:`url` (``api_base=srv.url``, any ``api_key``) and use
    ``model="openai/<name>"``.  Every request is recorded in :attr:`requests`
    so tests can assert on what the client actually sent.

    Parameters
    ----------
    models:
        Maps a model name *as received* (``"root"`` for ``"openai/root"``) to a
        list of replies consumed in order, or to a handler called per request.
    default:
        List or handler for model names that are not in ``models``.  Without it
        such a request is answered with HTTP 404.
    host, port:
        Where to listen; ``port=0`` (the default) picks a free port.
    streaming:
        When False, act like servers that ignore ``"stream": true`` and always
        answer with one JSON body.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        models: dict[str, Script] | None = None,
        *,
        default: Script | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        streaming: bool = True,
    ) -> None:
        self.streaming = streaming
        self._scripts: dict[str, Script] = {}
        for name, script in (models or {}).items():
            self._scripts[name] = self._normalise(script)
        self._default: Script | None = (
            None if default is None else self._normalise(default)
        )
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._asked: dict[str, int] = {}
        self._active = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: Every chat request received, in arrival order.
        self.requests: list[Request] = []
        #: Highest number of chat requests that were in progress at once.
        self.max_concurrent: int = 0

    @staticmethod
    def _normalise(script: Script) -> Script:
        if callable(script):
            return script
        if isinstance(script, (list, tuple)):
            return list(script)
        raise TypeError(
            f"a script must be a list of replies or a callable, not {type(script).__name__}"
        )

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Bind the socket and serve from a daemon thread; returns ``self``.

        Calling it on a running server does nothing.
        """
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server((self._host, self._port), self)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ScriptedServer:{httpd.server_address[1]}",
            daemon=True,
        )
        self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and join the server thread.

        Replies still sleeping out their ``delay`` are woken up so that this
        returns promptly.  Safe to call more than once.
        """
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is currently serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def port(self) -> int:
        """The port actually bound (only meaningful once started)."""
        if self._httpd is None:
            raise RuntimeError("ScriptedServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for OpenAI clients, e.g. ``http://127.0.0.1:54321/v1``."""
        return f"http://{self._host}:{self.port}/v1"

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "stopped"
        return f"<ScriptedServer {where} models={sorted(self._scripts)}>"

    # -- scripting ---------------------------------------------------------

    def add(self, model: str, *replies: Reply | str | None) -> None:
        """Append replies to the list script of ``model`` (creating it if absent).

        Raises ``TypeError`` if ``model`` is scripted with a handler.
        """
        for reply in replies:
            _as_reply(reply)  # validate early, in the caller's frame
        with self._lock:
            script = self._scripts.setdefault(model, [])
            if not isinstance(script, list):
                raise TypeError(f"model {model!r} is scripted with a handler, not a list")
            script.extend(replies)

    def set_handler(self, model: str, handler: Handler) -> None:
        """Answer ``model`` with ``handler`` from now on (replacing any script it had)."""
        if not callable(handler):
            raise TypeError("handler must be callable")
        with self._lock:
            self._scripts[model] = handler

    def remaining(self, model: str) -> int:
        """How many list replies of ``model`` have not been served yet."""
        with self._lock:
            script = self._scripts.get(model)
            return len(script) if isinstance(script, list) else 0

    def requests_for(self, model: str) -> list[Request]:
        """The recorded requests whose ``model`` is ``model``, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.model == model]

    # -- request handling (runs on the server's handler threads) -----------

    def _models_payload(self) -> dict[str, Any]:
        with self._lock:
            names = sorted(self._scripts)
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": CREATED, "owned_by": "scripted"}
                for n in names
            ],
        }

    def _next_reply(self, request: Request) -> Reply:
        """Pick the reply for ``request`` (raises :class:`_ScriptError`)."""
        name = request.model
        with self._lock:
            asked = self._asked[name] = self._asked.get(name, 0) + 1
            script = self._scripts.get(name, self._default)
            if script is None:
                raise _ScriptError(
                    404, f"scripted server has no model {name!r} and no default script"
                )
            if isinstance(script, list):
                if not script:
                    raise _ScriptError(
                        500,
                        f"scripted model '{name}' has no more replies "
                        f"(it was asked {asked} times)",
                    )
                return _as_reply(script.pop(0))
        # Handlers run outside the lock so that slow handlers overlap.
        try:
            return _as_reply(script(request))
        except Exception as exc:  # the server thread must survive any handler bug
            raise _ScriptError(
                500,
                f"scripted handler for model '{name}' raised "
                f"{type(exc).__name__}: {exc}",
            ) from exc

    def _serve_chat(self, http: _RequestHandler, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        with self._lock:
            request = Request(
                model=str(body.get("model", "")),
                messages=list(messages) if isinstance(messages, list) else [],
                body=body,
                index=len(self.requests),
            )
            self.requests.append(request)
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)
        try:
            try:
                reply = self._next_reply(request)
            except _ScriptError as err:
                http._send_error(err.status, err.message)
                return
            if reply.delay > 0:
                self._stopping.wait(reply.delay)
            if reply.status != 200:
                message = reply.error_message or f"scripted error: {_phrase(reply.status)}"
                http._send_error(reply.status, message, reply.headers)
            elif request.stream and self.streaming:
                self._send_stream(http, request, reply)
            elif reply.malformed:
                http._send_bytes(
                    200, b'{"id": "chatcmpl-scripted", "choices": [', "application/json",
                    reply.headers,
                )
            else:
                http._send_json(200, self._completion(request, reply), reply.headers)
        finally:
            with self._lock:
                self._active -= 1

    @staticmethod
    def _usage(request: Request, reply: Reply) -> dict[str, Any]:
        if reply.usage is not None:
            return dict(reply.usage)
        prompt = sum(count_words(m.get("content")) for m in request.messages)
        completion = count_words(reply.content)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(self, request: Request, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        payload: dict[str, Any] = {
            "id": f"chatcmpl-scripted-{request.index}",
            "object": "chat.completion",
            "created": CREATED,
            "model": request.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": reply.finish_reason}
            ],
        }
        if not reply.omit_usage:
            payload["usage"] = self._usage(request, reply)
        return payload

    def _send_stream(self, http: _RequestHandler, request: Request, reply: Reply) -> None:
        """Answer with Server-Sent Events in ``chat.completion.chunk`` format."""
        base = {
            "id": f"chatcmpl-scripted-{request.index}",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": request.model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        events: list[str] = [json.dumps(chunk({"role": "assistant", "content": ""}))]
        for piece in _pieces(reply.reasoning):
            events.append(json.dumps(chunk({"reasoning_content": piece})))
        for piece in _pieces(reply.content):
            events.append(json.dumps(chunk({"content": piece})))
        if reply.malformed:
            events.append('{"id": "chatcmpl-scripted", "choices": [')
        events.append(json.dumps(chunk({}, reply.finish_reason)))
        options = request.body.get("stream_options") or {}
        if isinstance(options, dict) and options.get("include_usage") and not reply.omit_usage:
            events.append(
                json.dumps({**base, "choices": [], "usage": self._usage(request, reply)})
            )
        events.append("[DONE]")

        http.send_response(200)
        http.send_header("Content-Type", "text/event-stream")
        http.send_header("Cache-Control", "no-cache")
        for name, value in reply.headers.items():
            http.send_header(name, value)
        http.end_headers()
        for event in events:
            http.wfile.write(f"data: {event}\n\n".encode())
            http.wfile.flush()
        # HTTP/1.0 without Content-Length: closing the connection ends the body.
        http.close_connection = True


def _pieces(text: str | None, count: int = _STREAM_PIECES) -> Iterable[str]:
    """Split ``text`` into at most ``count`` consecutive non-empty pieces."""
    if not text:
        return []
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]
