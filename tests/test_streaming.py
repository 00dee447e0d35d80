"""Root replies stream into the views when the server streams, and nothing is lost when it does not."""

from __future__ import annotations

from rlm_magic import RLM
from rlm_magic.events import ReplyDelta
from rlm_magic.models import _NO_STREAM
from rlm_magic.scripted import ScriptedServer, code_reply

REPLY = code_reply("SUBMIT('streamed answer')", "Thinking about it in several words so the stream has pieces.")


class Watcher(list):
    """A subscriber that, like the widget view, wants replies as they stream."""

    wants_deltas = True

    def __call__(self, event) -> None:  # noqa: ANN001
        self.append(event)


def run(server: ScriptedServer, watcher: list | None = None, **settings):  # noqa: ANN003, ANN201
    events = Watcher() if watcher is None else watcher
    rlm = RLM(model="openai/root", api_base=server.url, num_retries=0, verbose=False, warm_kernels=False,
              on_event=events if callable(events) else events.append, **settings)
    return rlm.run("q", x=1), [e for e in events if isinstance(e, ReplyDelta)]


def test_streaming_server_delivers_growing_text_and_usage() -> None:
    with ScriptedServer({"root": [REPLY]}) as server:
        res, deltas = run(server)
        assert server.requests[0].body.get("stream") is True
    assert res.answer == "streamed answer"
    assert len(deltas) >= 2 and deltas[-1].text == REPLY
    assert all(REPLY.startswith(d.text) for d in deltas)
    call = res.calls[0]
    assert call.response == REPLY and not call.tokens_estimated and call.completion_tokens == len(REPLY.split())


def test_server_that_ignores_stream_falls_back_without_losing_the_reply() -> None:
    with ScriptedServer({"root": [REPLY, REPLY]}, streaming=False) as server:
        _NO_STREAM.clear()
        res, deltas = run(server)
        assert res.answer == "streamed answer" and not deltas
        assert [r.body.get("stream") for r in server.requests] == [True, None]  # one try, then plain
        assert res.calls[0].response == REPLY


def test_stream_off() -> None:
    with ScriptedServer({"root": [REPLY]}) as server:
        res, deltas = run(server, stream=False)
        assert not server.requests[0].body.get("stream") and not deltas and res.answer == "streamed answer"


def test_no_stream_when_nobody_watches() -> None:
    """Text logs and plain scripts get whole replies: no request is spent probing a server that ignores streams."""
    with ScriptedServer({"root": [REPLY]}, streaming=False) as server:
        _NO_STREAM.clear()
        res, deltas = run(server, watcher=[])
        assert [r.body.get("stream") for r in server.requests] == [None] and res.answer == "streamed answer"
