"""Tests for rlm_magic.scripted: the loopback OpenAI-compatible scripted server.

Every chat test goes through litellm's real code path (request building, the
OpenAI SDK's HTTP client, response parsing, retries, exception mapping,
stream reassembly) so the server is known to be a faithful stand-in for a
provider in the rest of the suite and in the example notebooks.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import litellm  # noqa: E402
import openai  # noqa: E402
import pytest  # noqa: E402

from rlm_magic.scripted import (  # noqa: E402
    CREATED,
    Reply,
    Request,
    ScriptedServer,
    code_reply,
)

litellm.suppress_debug_info = True

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "count these four words"},
]  # 3 + 4 = 7 words => default prompt_tokens == 7


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    """Start ScriptedServers for a test and always stop them afterwards."""
    started: list[ScriptedServer] = []

    def _serve(*args: Any, **kwargs: Any) -> ScriptedServer:
        srv = ScriptedServer(*args, **kwargs).start()
        started.append(srv)
        return srv

    yield _serve
    for srv in started:
        srv.stop()


def complete(srv: ScriptedServer, model: str = "root", **kwargs: Any) -> Any:
    kwargs.setdefault("messages", MESSAGES)
    kwargs.setdefault("num_retries", 0)  # the OpenAI SDK would otherwise retry 5xx
    return litellm.completion(
        model=f"openai/{model}", api_base=srv.url, api_key="sk-test", **kwargs
    )


async def acomplete(srv: ScriptedServer, model: str = "root", **kwargs: Any) -> Any:
    kwargs.setdefault("messages", MESSAGES)
    kwargs.setdefault("num_retries", 0)
    return await litellm.acompletion(
        model=f"openai/{model}", api_base=srv.url, api_key="sk-test", **kwargs
    )


def raw_post(srv: ScriptedServer, body: dict[str, Any], path: str = "/v1/chat/completions"):
    """POST without any client library; returns (status, headers, raw bytes)."""
    base = srv.url.removesuffix("/v1")
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# -- scripts ---------------------------------------------------------------


def test_list_script_is_consumed_in_order_then_exhausted(serve) -> None:
    srv = serve({"root": ["first", Reply(content="second")]})
    assert complete(srv).choices[0].message.content == "first"
    assert complete(srv).choices[0].message.content == "second"
    with pytest.raises(litellm.exceptions.InternalServerError) as info:
        complete(srv)
    assert "scripted model 'root' has no more replies (it was asked 3 times)" in str(info.value)
    assert [r.index for r in srv.requests] == [0, 1, 2]
    assert all(r.model == "root" for r in srv.requests)


def test_add_appends_to_a_list_script(serve) -> None:
    srv = serve({"root": ["a"]})
    srv.add("root", "b")
    srv.add("sub", Reply(content="c"))
    assert srv.remaining("root") == 2
    assert complete(srv).choices[0].message.content == "a"
    assert complete(srv).choices[0].message.content == "b"
    assert complete(srv, model="sub").choices[0].message.content == "c"
    assert [r.model for r in srv.requests_for("sub")] == ["sub"]
    assert len(srv.requests_for("root")) == 2


def test_handler_receives_prompt_and_system(serve) -> None:
    seen: list[Request] = []

    def handler(req: Request) -> str:
        seen.append(req)
        return f"echo: {req.prompt} / {req.system}"

    srv = serve({"root": handler})
    resp = complete(srv)
    assert resp.choices[0].message.content == "echo: count these four words / You are terse."
    assert seen[0].prompt == "count these four words"
    assert seen[0].body["messages"] == MESSAGES
    assert seen[0] is srv.requests[0]


def test_prompt_joins_list_contents() -> None:
    req = Request(
        model="m",
        messages=[
            {"role": "user", "content": "old"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ],
        body={},
        index=0,
    )
    assert req.prompt == "a\nb"
    assert req.system is None


def test_default_script_and_unknown_model(serve) -> None:
    srv = serve({"root": ["r"]}, default=lambda req: f"default for {req.model}")
    assert complete(srv, model="anything").choices[0].message.content == "default for anything"

    bare = serve({"root": ["r"]})
    with pytest.raises(litellm.exceptions.NotFoundError) as info:
        complete(bare, model="ghost")
    assert "ghost" in str(info.value)


def test_handler_exception_becomes_500_and_server_survives(serve) -> None:
    calls = iter([ValueError("boom in handler"), "recovered"])

    def handler(req: Request) -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    srv = serve({"root": handler})
    with pytest.raises(litellm.exceptions.InternalServerError) as info:
        complete(srv)
    assert "boom in handler" in str(info.value)
    assert complete(srv).choices[0].message.content == "recovered"
    assert srv.running


# -- message content -------------------------------------------------------


def test_none_content_arrives_as_none(serve) -> None:
    srv = serve({"root": [None, Reply(content=None)]}, default=lambda req: None)
    assert complete(srv).choices[0].message.content is None
    assert complete(srv).choices[0].message.content is None
    assert complete(srv, model="other").choices[0].message.content is None


def test_reasoning_content_arrives(serve) -> None:
    srv = serve({"root": [Reply(content="answer", reasoning="because reasons")]})
    msg = complete(srv).choices[0].message
    assert msg.content == "answer"
    assert msg.reasoning_content == "because reasons"


def test_finish_reason_arrives(serve) -> None:
    srv = serve({"root": [Reply(content="cut", finish_reason="length")]})
    assert complete(srv).choices[0].finish_reason == "length"


def test_code_reply() -> None:
    assert code_reply("print(1)") == "```repl\nprint(1)\n```"
    assert code_reply("x = 1\n", "Look first.") == "Look first.\n\n```repl\nx = 1\n```"


# -- usage -------------------------------------------------------------------


def test_default_usage_counts_words(serve) -> None:
    srv = serve({"root": ["one two three", None]})
    usage = complete(srv).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 3, 10)
    usage = complete(srv).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 0, 7)


def test_explicit_usage(serve) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 25, "total_tokens": 1025}
    srv = serve({"root": [Reply(content="x", usage=usage)]})
    got = complete(srv).usage
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (1000, 25, 1025)


def test_omit_usage(serve) -> None:
    srv = serve({"root": [Reply(content="a b c", omit_usage=True)] * 2})
    status, _, raw = raw_post(srv, {"model": "root", "messages": MESSAGES})
    assert status == 200 and "usage" not in json.loads(raw)
    # litellm fills in an all-zero usage object when the provider sends none.
    usage = complete(srv).get("usage")
    assert usage is None or usage.total_tokens == 0


def test_response_shape_is_deterministic(serve) -> None:
    srv = serve(default=lambda req: Reply(content="hi", reasoning="r"))
    status, headers, raw = raw_post(srv, {"model": "m", "messages": MESSAGES})
    status2, _, raw2 = raw_post(srv, {"model": "m", "messages": MESSAGES}, path="/chat/completions")
    assert status == status2 == 200
    assert headers["Content-Type"] == "application/json"
    first, second = json.loads(raw), json.loads(raw2)
    assert first == {
        "id": "chatcmpl-scripted-0",
        "object": "chat.completion",
        "created": CREATED,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "reasoning_content": "r"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
    }
    assert second == {**first, "id": "chatcmpl-scripted-1"}


def test_models_endpoint(serve) -> None:
    srv = serve({"root": [], "sub": lambda req: ""})
    with urllib.request.urlopen(srv.url + "/models", timeout=5) as resp:
        payload = json.loads(resp.read())
    assert payload["object"] == "list"
    assert [m["id"] for m in payload["data"]] == ["root", "sub"]


# -- errors and retries --------------------------------------------------------


def test_429_is_retried_by_litellm_num_retries(serve) -> None:
    srv = serve(
        {"root": [Reply(status=429, headers={"retry-after-ms": "10"}), "after the storm"]}
    )
    started = time.monotonic()
    resp = complete(srv, num_retries=2)
    assert resp.choices[0].message.content == "after the storm"
    assert len(srv.requests) == 2
    assert time.monotonic() - started < 3  # retry-after-ms kept the back-off short


def test_429_without_retries_raises_rate_limit_error(serve) -> None:
    srv = serve({"root": [Reply(status=429, error_message="slow down", headers={"retry-after-ms": "10"})]})
    with pytest.raises(litellm.exceptions.RateLimitError) as info:
        complete(srv)
    assert "slow down" in str(info.value)
    assert len(srv.requests) == 1


def test_500_without_retries_raises_internal_server_error(serve) -> None:
    srv = serve({"root": [Reply(status=500, error_message="the GPU caught fire")]})
    with pytest.raises(litellm.exceptions.InternalServerError) as info:
        complete(srv)
    assert isinstance(info.value, openai.APIError)
    assert "the GPU caught fire" in str(info.value)
    assert len(srv.requests) == 1


def test_error_body_is_openai_shaped(serve) -> None:
    srv = serve({"root": [Reply(status=429, headers={"retry-after-ms": "10"})]})
    status, headers, raw = raw_post(srv, {"model": "root", "messages": MESSAGES})
    assert status == 429
    assert headers["retry-after-ms"] == "10"
    error = json.loads(raw)["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "429"
    assert "429" in error["message"]


def test_malformed_json_raises(serve) -> None:
    srv = serve({"root": [Reply(content="never seen", malformed=True)]})
    status, _, raw = raw_post(srv, {"model": "root", "messages": MESSAGES})
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)
    srv.add("root", Reply(malformed=True))
    # litellm maps the SDK's JSON decode failure to InternalServerError.
    with pytest.raises(openai.APIError):
        complete(srv)


# -- streaming ---------------------------------------------------------------


def test_streaming_is_reassembled_by_litellm(serve) -> None:
    text = "The quick brown fox jumps over the lazy dog"
    srv = serve({"root": [Reply(content=text, reasoning="thinking hard")]})
    chunks = list(complete(srv, stream=True, stream_options={"include_usage": True}))
    assert len(chunks) >= 3
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    assert content == text
    assert reasoning == "thinking hard"
    assert srv.requests[0].body["stream"] is True
    usages = [u for c in chunks if (u := getattr(c, "usage", None))]
    assert usages and usages[-1].prompt_tokens == 7

    rebuilt = litellm.stream_chunk_builder(chunks, messages=MESSAGES)
    assert rebuilt.choices[0].message.content == text


def test_streaming_raw_sse_format(serve) -> None:
    srv = serve({"root": ["abcdef"]})
    status, headers, raw = raw_post(srv, {"model": "root", "messages": MESSAGES, "stream": True})
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = [line.removeprefix("data: ") for line in raw.decode().split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "abcdef"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[-1]  # no include_usage was asked for


def test_async_streaming(serve) -> None:
    srv = serve({"root": ["streamed asynchronously"]})

    async def run() -> str:
        stream = await acomplete(srv, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(run()) == "streamed asynchronously"


# -- concurrency and lifecycle ----------------------------------------------


def test_concurrent_acompletion_calls_overlap(serve) -> None:
    srv = serve({"root": lambda req: Reply(content=f"done {req.prompt}", delay=0.3)})

    async def run() -> list[str]:
        calls = [
            acomplete(srv, messages=[{"role": "user", "content": f"job{i}"}]) for i in range(8)
        ]
        return [r.choices[0].message.content for r in await asyncio.gather(*calls)]

    started = time.monotonic()
    results = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert sorted(results) == sorted(f"done job{i}" for i in range(8))
    assert len(srv.requests) == 8
    assert srv.max_concurrent >= 4
    assert elapsed < 8 * 0.3  # informative only; max_concurrent is the real check


def test_stop_releases_port_and_thread() -> None:
    srv = ScriptedServer({"root": ["x"]}).start()
    port, thread = srv.port, srv._thread
    assert thread is not None and thread.is_alive()
    srv.stop()
    assert not thread.is_alive()
    assert not srv.running
    srv.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with socket.socket() as sock:  # the port can be bound again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_context_manager_and_stop_wakes_delayed_replies() -> None:
    with ScriptedServer({"root": [Reply(content="slow", delay=30)]}) as srv:
        errors: list[BaseException] = []

        def hit() -> None:
            try:
                raw_post(srv, {"model": "root", "messages": MESSAGES})
            except BaseException as exc:  # noqa: BLE001 - only recorded
                errors.append(exc)

        client = threading.Thread(target=hit, daemon=True)
        client.start()
        deadline = time.monotonic() + 5
        while not srv.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.requests
        started = time.monotonic()
    assert time.monotonic() - started < 5  # stop() did not wait out the 30 s delay
    client.join(timeout=5)
    assert not client.is_alive()
