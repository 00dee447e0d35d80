"""Record/replay: a recorded run replays identically with the server stopped, offline."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from rlm_magic import RLM
from rlm_magic.scripted import Reply, ScriptedServer, code_reply
from rlm_magic.views.text import TextView

ROOT = [
    code_reply("import os\nprint(os.getcwd())\nprint(context.shape)", "Where am I, and what is the data?"),
    code_reply("rs = llm_query_batched([f'part {i}' for i in range(4)])\nprint(rs)"),
    code_reply("SUBMIT(answer='total ' + str(context.x.sum()), parts=rs, frame=context.head(2))"),
]


def sub(req):  # noqa: ANN001, ANN201
    return Reply(content="read " + req.prompt, usage={"prompt_tokens": 7, "completion_tokens": 3})


def run(cassette: Path, mode: str, url: str, **extra) -> tuple:  # noqa: ANN003
    log = io.StringIO()
    rlm = RLM(model="openai/root", sub_model="openai/sub", api_base=url, num_retries=0, verbose=False,
              cassette=str(cassette), cassette_mode=mode, on_event=TextView(log), **extra)
    res = rlm.run("What is the total?", context=pd.DataFrame({"x": [1, 2, 3]}))
    return res, log.getvalue()


def _unpath(text: str | None) -> str | None:
    return None if text is None else re.sub(r"/rlm-[A-Za-z0-9_]+", "/rlm-<run>", text)


def comparable(res) -> dict:  # noqa: ANN001
    """What must match between a recorded run and its replay (timings and the run's scratch path aside)."""
    return {
        "status": res.status,
        "answer": res.answer,
        "parts": res.fields["parts"],
        "turns": [(t.reply, [(c.code, c.error) for c in t.code], len(t.sub_calls)) for t in res.turns],
        "calls": sorted((c.role, c.model, _unpath(c.prompt), c.response, c.prompt_tokens, c.completion_tokens,
                         c.tokens_estimated, c.cost, c.error) for c in res.calls),
    }


@pytest.fixture
def recorded(tmp_path: Path) -> tuple:
    server = ScriptedServer({"root": list(ROOT), "sub": sub}).start()
    url = server.url
    cassette = tmp_path / "run.jsonl"
    try:
        res, log = run(cassette, "record", url)
    finally:
        server.stop()
    return cassette, url, res, log


def test_replay_with_server_stopped_is_identical(recorded) -> None:
    cassette, url, first, first_log = recorded
    assert first.status == "finished"
    lines = cassette.read_text().splitlines()
    assert len(lines) == len(first.calls) == 7
    subs = [c for c in first.calls if c.role == "sub"]
    # the server reported usage without total_tokens: it is still the provider's count, not an estimate
    assert {(c.prompt_tokens, c.completion_tokens, c.tokens_estimated) for c in subs} == {(7, 3, False)}
    second, second_log = run(cassette, "replay", url)
    assert comparable(second) == comparable(first)
    pd.testing.assert_frame_equal(second.fields["frame"], first.fields["frame"])
    # the text view differs only in the scratch path the first block printed
    mask = lambda s: "\n".join("<cwd>" if "/rlm-" in ln else ln for ln in s.splitlines())  # noqa: E731
    assert mask(second_log) == mask(first_log)
    assert "/rlm-" in first_log  # the volatile path was really there, and was masked for matching


def test_cassette_lines_are_reviewable_and_hold_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-should-never-be-written")
    server = ScriptedServer({"root": list(ROOT), "sub": sub}).start()
    cassette = tmp_path / "c.jsonl"
    try:
        run(cassette, "record", server.url, api_key="sk-explicit-secret")
        auth = [r.body for r in server.requests]
    finally:
        server.stop()
    text = cassette.read_text()
    assert "sk-live-should-never-be-written" not in text and "sk-explicit-secret" not in text
    assert "authorization" not in text.lower()
    entry = json.loads(text.splitlines()[0])
    assert set(entry) == {"key", "role", "model", "messages", "response", "usage", "cost", "error"}
    assert entry["role"] == "root" and entry["model"] == "openai/root"
    assert entry["messages"][-1]["content"].startswith("Question:\nWhat is the total?")
    assert auth  # the live calls did happen


def test_replay_miss_names_the_call_and_shows_a_diff(recorded) -> None:
    cassette, url, _, _ = recorded
    rlm = RLM(model="openai/root", sub_model="openai/sub", api_base=url, num_retries=0, verbose=False,
              cassette=str(cassette), cassette_mode="replay")
    res = rlm.run("What is the grand total?", context=pd.DataFrame({"x": [1, 2, 3]}))
    assert res.status == "error"
    assert "CassetteMiss" in res.error and "root call to openai/root" in res.error
    assert "-What is the total?" in res.error and "+What is the grand total?" in res.error


def test_sub_call_miss_stops_the_run(recorded) -> None:
    cassette, url, _, _ = recorded
    lines = [json.loads(x) for x in cassette.read_text().splitlines()]
    kept = [e for e in lines if not (e["role"] == "sub" and e["messages"][0]["content"] == "part 2")]
    cassette.write_text("".join(json.dumps(e) + "\n" for e in kept))
    res, _ = run(cassette, "replay", url)
    assert res.status == "error" and "sub call to openai/sub" in res.error and "+[user] part 2" in res.error


def test_auto_mode_replays_hits_and_records_misses(recorded, tmp_path: Path) -> None:
    cassette, _, first, _ = recorded
    before = len(cassette.read_text().splitlines())
    server = ScriptedServer({"root": [code_reply("SUBMIT('new question answered')")]}).start()
    try:
        res, _ = run(cassette, "auto", server.url)  # same question: all hits, no request
        assert res.answer == first.answer and not server.requests
        rlm = RLM(model="openai/root", sub_model="openai/sub", api_base=server.url, num_retries=0, verbose=False,
                  cassette=str(cassette), cassette_mode="auto")
        other = rlm.run("Another question?", context=pd.DataFrame({"x": [1]}))
    finally:
        server.stop()
    assert other.answer == "new question answered"
    assert len(server.requests) == 1
    assert len(cassette.read_text().splitlines()) == before + 1


def test_ignore_patterns_mask_volatile_output(tmp_path: Path) -> None:
    root = [code_reply("import random\nprint('seed', random.random())"), code_reply("SUBMIT('done')")]
    server = ScriptedServer({"root": list(root)}).start()
    cassette = tmp_path / "v.jsonl"
    url = server.url
    try:
        RLM(model="openai/root", api_base=url, num_retries=0, verbose=False, cassette=str(cassette),
            cassette_mode="record").run("q", x=1)
    finally:
        server.stop()
    strict = RLM(model="openai/root", api_base=url, num_retries=0, verbose=False, cassette=str(cassette),
                 cassette_mode="replay").run("q", x=1)
    assert strict.status == "error" and "CassetteMiss" in strict.error  # the random number differs
    masked = RLM(model="openai/root", api_base=url, num_retries=0, verbose=False, cassette=str(cassette),
                 cassette_mode="replay", cassette_ignore=[r"seed [0-9.]+"]).run("q", x=1)
    assert masked.status == "finished" and masked.answer == "done"


def test_magic_record_then_replay_offline(shell, server, tmp_path: Path, capsys) -> None:
    server.add("root", *ROOT)
    server.set_handler("sub", sub)
    shell.user_ns["df"] = pd.DataFrame({"x": [1, 2, 3]})
    path = tmp_path / "nb.jsonl"
    shell.run_cell(f"%rlm record {path}")
    assert shell.run_cell('%%rlm context=df question="What is the total?"').error_in_exec is None
    recorded = shell.user_ns["_rlm"]
    server.stop()
    shell.run_cell(f"%rlm replay {path}")
    out_before = capsys.readouterr().out
    assert "replaying model calls from" in out_before
    assert shell.run_cell('%%rlm context=df question="What is the total?"').error_in_exec is None
    assert comparable(shell.user_ns["_rlm"]) == comparable(recorded)
    res = shell.run_cell(f'%%rlm context=df replay={tmp_path / "missing.jsonl"} question="q"')
    assert "does not exist" in str(res.error_in_exec)
    shell.run_cell("%rlm cassette off")


def test_environment_variable_selects_a_cassette(recorded, monkeypatch: pytest.MonkeyPatch) -> None:
    cassette, url, first, _ = recorded
    monkeypatch.setenv("RLM_CASSETTE", str(cassette))
    monkeypatch.setenv("RLM_CASSETTE_MODE", "replay")
    res = RLM(model="openai/root", sub_model="openai/sub", api_base=url, num_retries=0, verbose=False).run(
        "What is the total?", context=pd.DataFrame({"x": [1, 2, 3]}))
    assert comparable(res) == comparable(first)
