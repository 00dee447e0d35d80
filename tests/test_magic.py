"""End-to-end tests of ``%%rlm`` / ``%rlm`` driven through a real IPython shell.

Every cell goes through ``shell.run_cell`` (so IPython's input transformers,
``var_expand`` and display hook are exercised) and every model call goes
through litellm's real HTTP path to the loopback ScriptedServer of the
``server`` fixture.  The root model is ``openai/root`` (server name ``root``),
the sub-model ``openai/sub`` (server name ``sub``).
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import pandas as pd
import pytest
from IPython.core.error import UsageError
from traitlets.config import Config

from .conftest import kernel_children
from rlm_magic.result import RLMResult
from rlm_magic.scripted import Reply, ScriptedServer, code_reply

CARD_QUESTION = "Which region has the highest total revenue, and why?"


# ---------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------


@pytest.fixture
def magics(shell: Any) -> Iterator[Any]:
    """The RLMMagics instance; every setting and the shell's %config section are restored afterwards.

    ``%config RLMMagics.x = ...`` merges into ``shell.config``, which the
    singleton shell keeps across tests; without this it would leak into the
    RLMMagics of later tests.
    """
    m = next(c for c in shell.configurables if type(c).__name__ == "RLMMagics")
    names = m.class_trait_names(config=True)
    saved = {n: getattr(m, n) for n in names}
    had_section = "RLMMagics" in shell.config
    saved_section = Config(shell.config["RLMMagics"]) if had_section else None
    try:
        yield m
    finally:
        for n, v in saved.items():
            setattr(m, n, v)
        if had_section:
            shell.config["RLMMagics"] = saved_section
        elif "RLMMagics" in shell.config:
            del shell.config["RLMMagics"]


@pytest.fixture
def sales() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": ["North", "South", "West", "West", "East", "North"],
            "revenue": [100.0, 250.0, 300.0, 420.0, 80.0, 90.0],
            "year": [2023, 2024, 2024, 2023, 2024, 2024],
        }
    )


def run_cell(shell: Any, capsys: pytest.CaptureFixture[str], source: str) -> tuple[Any, str, str]:
    """Run one cell; return (ExecutionResult, stdout, stderr) of that cell only."""
    capsys.readouterr()
    res = shell.run_cell(source)
    cap = capsys.readouterr()
    return res, cap.out, cap.err


def bundle(res: Any) -> dict[str, str]:
    assert res.result is not None, "the cell displayed nothing"
    assert hasattr(res.result, "_repr_mimebundle_"), type(res.result)
    return res.result._repr_mimebundle_()


def assert_ok(res: Any, err: str = "") -> None:
    assert res.error_before_exec is None, res.error_before_exec
    assert res.error_in_exec is None, f"{res.error_in_exec!r}\n{err}"


def first_user_message(server: ScriptedServer, model: str = "root") -> str:
    reqs = server.requests_for(model)
    assert reqs, f"no request reached model {model!r}"
    users = [m["content"] for m in reqs[0].messages if m.get("role") == "user"]
    assert users, reqs[0].messages
    return users[0]


def assert_usage_error(res: Any, out: str, err: str, *needles: str) -> str:
    """The cell failed with a UsageError shown as exactly one short line, and no traceback."""
    assert res.error_before_exec is None, res.error_before_exec
    assert isinstance(res.error_in_exec, UsageError), repr(res.error_in_exec)
    message = str(res.error_in_exec)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"UsageError: {message}"], err
    assert "\n" not in message
    assert "Traceback" not in out + err
    assert "File \"" not in out + err
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def assert_nothing_started(server: ScriptedServer) -> None:
    assert server.requests == [], [r.model for r in server.requests]
    assert kernel_children() == []


# ---------------------------------------------------------------------------
# 1. the card's syntax
# ---------------------------------------------------------------------------

_BEST_REGION = (
    "totals = context.groupby('region').revenue.sum()\n"
    "best = totals.idxmax()\n"
    "SUBMIT(answer=best + ' leads with ' + str(int(totals.max())) + ' in total revenue')"
)


@pytest.mark.parametrize(
    "source",
    [
        f'%%rlm context=df question="{CARD_QUESTION}"',
        f'%%rlm context=df question="{CARD_QUESTION}"\n',
        f'%%rlm context=df question="{CARD_QUESTION}"\n\n   \n\t\n',
        f'%rlm context=df question="{CARD_QUESTION}"',
    ],
    ids=["one-line-cell", "trailing-newline", "blank-body-lines", "line-magic"],
)
def test_card_syntax(shell, server, capsys, sales, source):
    server.add("root", code_reply(_BEST_REGION))
    shell.user_ns["df"] = sales
    res, out, err = run_cell(shell, capsys, source)
    assert_ok(res, err)
    b = bundle(res)
    assert "West leads with 720 in total revenue" in b["text/markdown"]
    assert "West leads with 720 in total revenue" in b["text/plain"]
    rlm = shell.user_ns["_rlm"]
    assert isinstance(rlm, RLMResult)
    assert rlm.status == "finished"
    assert rlm.answer == "West leads with 720 in total revenue"
    assert rlm.question == CARD_QUESTION
    assert CARD_QUESTION in first_user_message(server)
    assert len(server.requests_for("root")) == 1
    assert "Traceback" not in out + err
    # the displayed output (IPython's display hook) is the answer
    assert re.search(r"^Out\[\d+\]: West leads with 720 in total revenue$", out, re.M), out


# ---------------------------------------------------------------------------
# 2. quoting and IPython's var_expand on the magic line
# ---------------------------------------------------------------------------

_SUBMIT_OK = code_reply("SUBMIT(answer='ok')")


@pytest.mark.parametrize(
    ("source", "question"),
    [
        ("%%rlm context=df question='How many rows?'", "How many rows?"),
        ('%%rlm context=df question="What\'s the total revenue?"', "What's the total revenue?"),
        ("%%rlm context=df question='It''s fine'", "Its fine"),
        ("%%rlm question=How many rows are there context=df", "How many rows are there"),
        ("%%rlm context=df question=How many rows are there?", "How many rows are there?"),
        ("%rlm context=df question=How many rows are there?", "How many rows are there?"),
        ('%%rlm context=df question="What does {} mean here?"', "What does {} mean here?"),
        ('%%rlm context=df question="Prices are in $ (USD); sum them"', "Prices are in $ (USD); sum them"),
    ],
    ids=["single", "double-apostrophe", "adjacent-single", "unquoted", "unquoted-qmark-cell",
         "unquoted-qmark-line", "empty-braces", "bare-dollar"],
)
def test_quoting(shell, server, capsys, sales, source, question):
    server.add("root", _SUBMIT_OK)
    shell.user_ns["df"] = sales
    res, out, err = run_cell(shell, capsys, source)
    assert_ok(res, err)
    assert shell.user_ns["_rlm"].question == question
    assert f"Question:\n{question}\n" in first_user_message(server)
    assert bundle(res)["text/plain"] == "ok"


def test_braces_and_dollar_expand_on_the_magic_line(shell, server, capsys, sales):
    server.add("root", _SUBMIT_OK)
    shell.user_ns.update(df=sales, name="sales", topic="revenue")
    res, _, err = run_cell(shell, capsys, '%%rlm context=df question="rows in {name} about $topic, {1 + 1} times"')
    assert_ok(res, err)
    assert "Question:\nrows in sales about revenue, 2 times\n" in first_user_message(server)


def test_cell_body_braces_reach_the_model_literally(shell, server, capsys, sales):
    server.add("root", _SUBMIT_OK)
    shell.user_ns.update(df=sales, a=5, name="sales")
    res, _, err = run_cell(shell, capsys, '%%rlm context=df\nReturn a dict {"a": 1} for {name} and $name')
    assert_ok(res, err)
    assert 'Question:\nReturn a dict {"a": 1} for {name} and $name\n' in first_user_message(server)


# ---------------------------------------------------------------------------
# 3. the cell body
# ---------------------------------------------------------------------------


def test_cell_body_is_the_question(shell, server, capsys, sales):
    server.add("root", _SUBMIT_OK)
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, "%%rlm context=df\nWhich region sells most?\nExplain briefly.\n")
    assert_ok(res, err)
    assert shell.user_ns["_rlm"].question == "Which region sells most?\nExplain briefly."
    assert "Question:\nWhich region sells most?\nExplain briefly.\n" in first_user_message(server)


def test_cell_body_adds_instructions_to_question(shell, server, capsys, sales):
    server.add("root", _SUBMIT_OK)
    shell.user_ns["df"] = sales
    res, _, err = run_cell(
        shell, capsys, '%%rlm context=df question="Which region sells most?"\nAnswer in one sentence.\n'
    )
    assert_ok(res, err)
    msg = first_user_message(server)
    assert "Which region sells most?" in msg
    assert "Answer in one sentence." in msg
    assert msg.index("Which region sells most?") < msg.index("Answer in one sentence.")


# ---------------------------------------------------------------------------
# 4. expression bindings
# ---------------------------------------------------------------------------


def test_expression_bindings(shell, server, capsys, sales):
    docs = ["first paper about rlm", "second paper", "third"]
    blob = "abcdefghij" * 20_000  # 200,000 characters
    shell.user_ns.update(df=sales, papers=docs, long_text=blob)
    server.add(
        "root",
        code_reply(
            "SUBMIT(answer='ok', n_recent=len(recent), recent_type=type(recent).__name__,\n"
            "       recent_years=sorted(set(recent.year)), n_docs=len(docs), doc0=docs[0],\n"
            "       blob_len=len(blob), blob_tail=blob[-5:], n=n, k=k)"
        ),
    )
    res, _, err = run_cell(
        shell,
        capsys,
        "%%rlm recent=df[df.year == 2024] docs=papers blob=long_text n=len(df) * 2 k={'a': [1, 2]}\n"
        "Summarise the recent rows.",
    )
    assert_ok(res, err)
    ns = shell.user_ns
    assert ns["n_recent"] == 4
    assert ns["recent_type"] == "DataFrame"
    assert ns["recent_years"] == [2024]
    assert ns["n_docs"] == 3 and ns["doc0"] == "first paper about rlm"
    assert ns["blob_len"] == 200_000 and ns["blob_tail"] == "fghij"
    assert ns["n"] == 12
    assert ns["k"] == {"a": [1, 2]}
    assert set(ns["_rlm"].bindings) == {"recent", "docs", "blob", "n", "k"}
    msg = first_user_message(server)
    for name in ("recent", "docs", "blob", "n", "k"):
        assert name in msg


# ---------------------------------------------------------------------------
# 5. reserved options
# ---------------------------------------------------------------------------


def test_option_model(shell, server, capsys, sales):
    server.add("other", _SUBMIT_OK)
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df model=openai/other question="q?"')
    assert_ok(res, err)
    assert [r.model for r in server.requests] == ["other"]
    assert shell.user_ns["_rlm"].model == "openai/other"


def test_option_sub_model(shell, server, capsys, sales):
    server.add("root", code_reply("SUBMIT(answer=llm_query('ping'))"))
    server.add("sub2", "pong")
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df sub_model=openai/sub2 question="q?"')
    assert_ok(res, err)
    assert [r.model for r in server.requests] == ["root", "sub2"]
    assert server.requests_for("sub2")[0].prompt == "ping"
    assert bundle(res)["text/plain"] == "pong"
    assert shell.user_ns["_rlm"].sub_model == "openai/sub2"


def test_option_api_base(shell, server, capsys, sales):
    other = ScriptedServer({"root": [_SUBMIT_OK]}).start()
    try:
        shell.user_ns["df"] = sales
        res, _, err = run_cell(shell, capsys, f'%%rlm context=df api_base={other.url} question="q?"')
        assert_ok(res, err)
        assert [r.model for r in other.requests] == ["root"]
        assert server.requests == []
    finally:
        other.stop()


def test_option_out(shell, server, capsys, sales):
    server.add("root", code_reply("SUBMIT('forty-two')"))
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df out=ans question="q?"')
    assert_ok(res, err)
    assert shell.user_ns["ans"] == "forty-two"
    assert bundle(res)["text/plain"] == "forty-two"


def test_option_out_overwrite_notice(shell, server, capsys, sales):
    server.add("root", code_reply("SUBMIT('new value')"))
    shell.user_ns.update(df=sales, ans=[1, 2])
    res, out, err = run_cell(shell, capsys, '%%rlm context=df out=ans question="q?"')
    assert_ok(res, err)
    assert shell.user_ns["ans"] == "new value"
    notices = [ln for ln in out.splitlines() if "overwrote" in ln]
    assert len(notices) == 1 and "'ans'" in notices[0], out


def test_option_out_is_not_clobbered_by_a_failed_run(shell, server, capsys, sales):
    """A failed run has no answer; it must not replace the user's variable with None."""
    server.add("root", Reply(status=500, error_message="down"))
    shell.user_ns.update(df=sales, ans="previous")
    res, out, err = run_cell(shell, capsys, '%%rlm context=df out=ans question="q?"')
    assert_usage_error(res, out, err, "down")
    assert shell.user_ns["_rlm"].status == "error"
    assert shell.user_ns["ans"] == "previous"


def test_option_verbose_false_prints_no_log(shell, server, capsys, sales):
    server.add("root", code_reply("print('peek')\nSUBMIT(answer='quiet')"))
    shell.user_ns["df"] = sales
    res, out, err = run_cell(shell, capsys, '%%rlm context=df verbose=false question="q?"')
    assert_ok(res, err)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.fullmatch(r"Out\[\d+\]: quiet", lines[0]), out
    res, out, err = run_cell(shell, capsys, '%%rlm context=df verbose=maybe question="q?"')
    assert_usage_error(res, out, err, "verbose=", "'maybe'")


def test_numeric_option_from_notebook_value(shell, server, magics, capsys, sales):
    """The hint of the bad-number message works: $name and {expr} expand on the magic line."""
    shell.run_cell("%config RLMMagics.max_iterations = 1")
    server.add("root", code_reply("print(1)"), code_reply("print(2)"), code_reply("SUBMIT(answer='x')"))
    shell.user_ns.update(df=sales, turns=2)
    res, _, err = run_cell(shell, capsys, '%%rlm context=df max_iterations={turns + 1} question="q?"')
    assert_ok(res, err)
    assert len(shell.user_ns["_rlm"].turns) == 3
    server.add("root", code_reply("print(1)"), code_reply("SUBMIT(answer='y')"))
    res, _, err = run_cell(shell, capsys, '%%rlm context=df max_iterations=$turns question="q?"')
    assert_ok(res, err)
    assert shell.user_ns["_rlm"].status == "finished"
    assert len(shell.user_ns["_rlm"].turns) == 2


def test_option_max_iterations_overrides_config(shell, server, magics, capsys, sales):
    res, _, err = run_cell(shell, capsys, "%config RLMMagics.max_iterations = 1")
    assert_ok(res, err)
    assert magics.max_iterations == 1
    server.add("root", code_reply("print(1)"), code_reply("print(2)"), code_reply("SUBMIT(answer='third')"))
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df max_iterations=3 question="q?"')
    assert_ok(res, err)
    rlm = shell.user_ns["_rlm"]
    assert rlm.status == "finished"
    assert len(rlm.turns) == 3
    assert rlm.answer == "third"
    assert "at most 3 turns" in server.requests_for("root")[0].system


def test_config_max_iterations_applies_without_cell_option(shell, server, magics, capsys, sales):
    shell.run_cell("%config RLMMagics.max_iterations = 1")
    server.add("root", code_reply("print(1)"), "FINAL(best guess)")
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df question="q?"')
    assert_ok(res, err)
    rlm = shell.user_ns["_rlm"]
    assert rlm.status == "max_iterations"
    assert len(rlm.turns) == 1
    assert len(server.requests_for("root")) == 2  # one turn + the final best-answer call


def test_option_max_llm_calls(shell, server, capsys, sales):
    server.add("root", code_reply("print(1)"), code_reply("print(2)"), "FINAL(out of calls)")
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df max_llm_calls=2 question="q?"')
    assert_ok(res, err)
    rlm = shell.user_ns["_rlm"]
    assert rlm.status == "max_llm_calls"
    assert len(rlm.turns) == 2
    assert rlm.answer == "out of calls"
    assert len(server.requests_for("root")) == 3


def test_option_timeout(shell, server, capsys, sales):
    server.add("root", code_reply("import time\ntime.sleep(60)"), code_reply("SUBMIT(answer='after')"))
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df timeout=1 question="q?"')
    assert_ok(res, err)
    rlm = shell.user_ns["_rlm"]
    assert rlm.status == "finished"
    assert rlm.turns[0].code[0].timed_out
    assert rlm.turns[0].code[0].duration < 30
    assert "longer than 1 s" in server.requests_for("root")[1].prompt


@pytest.mark.parametrize("mode", ["no_subcalls", "conservative", "standard"])
def test_option_mode(shell, server, capsys, sales, mode):
    server.add("root", _SUBMIT_OK)
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, f'%%rlm context=df mode={mode} question="q?"')
    assert_ok(res, err)
    assert shell.user_ns["_rlm"].mode == mode
    system = server.requests_for("root")[0].system or ""
    assert ("There is no sub-model" in system) == (mode == "no_subcalls")
    assert ("Sub-calls cost money" in system) == (mode == "conservative")


def test_option_kernel_python3(shell, server, capsys, sales):
    from jupyter_client.kernelspec import KernelSpecManager

    assert "python3" in KernelSpecManager().find_kernel_specs()
    server.add("root", code_reply("SUBMIT(answer=str(len(context)))"))
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df kernel=python3 question="q?"')
    assert_ok(res, err)
    assert shell.user_ns["_rlm"].status == "finished"
    assert bundle(res)["text/plain"] == "6"


# ---------------------------------------------------------------------------
# 6. configuration precedence
# ---------------------------------------------------------------------------


def test_model_from_config(shell, server, magics, capsys, sales):
    shell.run_cell('%config RLMMagics.model = "openai/cfg"')
    server.add("cfg", _SUBMIT_OK)
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df question="q?"')
    assert_ok(res, err)
    assert [r.model for r in server.requests] == ["cfg"]


def test_env_overrides_config(shell, server, magics, capsys, sales, monkeypatch):
    shell.run_cell('%config RLMMagics.model = "openai/cfg"')
    monkeypatch.setenv("RLM_MODEL", "openai/env")
    server.add("env", _SUBMIT_OK)
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df question="q?"')
    assert_ok(res, err)
    assert [r.model for r in server.requests] == ["env"]


def test_cell_overrides_env(shell, server, magics, capsys, sales, monkeypatch):
    shell.run_cell('%config RLMMagics.model = "openai/cfg"')
    monkeypatch.setenv("RLM_MODEL", "openai/env")
    server.add("cell", _SUBMIT_OK)
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df model=openai/cell question="q?"')
    assert_ok(res, err)
    assert [r.model for r in server.requests] == ["cell"]


def test_env_sub_model_and_api_base(shell, server, magics, capsys, sales, monkeypatch):
    magics.sub_model = None
    magics.api_base = None
    monkeypatch.setenv("RLM_SUB_MODEL", "openai/envsub")
    monkeypatch.setenv("RLM_API_BASE", server.url)
    server.add("root", code_reply("SUBMIT(answer=llm_query('ping'))"))
    server.add("envsub", "pong")
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df question="q?"')
    assert_ok(res, err)
    assert [r.model for r in server.requests] == ["root", "envsub"]


def test_sub_model_defaults_to_root_model(shell, server, magics, capsys, sales):
    magics.sub_model = None
    server.add("root", code_reply("SUBMIT(answer=llm_query('ping'))"), "pong")
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df question="q?"')
    assert_ok(res, err)
    assert [r.model for r in server.requests] == ["root", "root"]
    assert server.requests[1].prompt == "ping"
    assert shell.user_ns["_rlm"].sub_model == "openai/root"
    assert bundle(res)["text/plain"] == "pong"


def test_sub_model_defaults_to_the_cells_model(shell, server, magics, capsys, sales):
    magics.sub_model = None
    server.add("cellm", code_reply("SUBMIT(answer=llm_query('ping'))"), "pong")
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df model=openai/cellm question="q?"')
    assert_ok(res, err)
    assert [r.model for r in server.requests] == ["cellm", "cellm"]


@pytest.mark.parametrize(
    "source", ['%%rlm context=df question="q?"', "%%rlm context=df\nq?", '%rlm context=df question="q?"']
)
def test_no_model_anywhere(shell, server, magics, capsys, sales, source):
    magics.model = None
    magics.sub_model = None
    shell.user_ns["df"] = sales
    res, out, err = run_cell(shell, capsys, source)
    assert_usage_error(res, out, err, "%config RLMMagics.model", "RLM_MODEL", "model=")
    assert out == ""
    assert_nothing_started(server)
    assert "_rlm" not in shell.user_ns


def test_rlm_config_shows_sources(shell, server, magics, capsys, monkeypatch):
    magics.sub_model = None
    magics.api_key = "sk-very-secret"
    shell.run_cell("%config RLMMagics.max_iterations = 7")
    monkeypatch.setenv("RLM_MODEL", "openai/fromenv")
    res, out, err = run_cell(shell, capsys, "%rlm config")
    assert_ok(res, err)
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
    assert "'openai/fromenv'" in rows["model"] and "env RLM_MODEL" in rows["model"]
    assert "'openai/fromenv'" in rows["sub_model"] and "= model" in rows["sub_model"]
    assert "7" in rows["max_iterations"] and "%config" in rows["max_iterations"]
    assert server.url in rows["api_base"] and "%config" in rows["api_base"]
    assert "180.0" not in rows["timeout"]  # the fixture set 30 s
    assert "default" in rows["mode"] and "'standard'" in rows["mode"]
    assert "sk-very-secret" not in out and "***" in rows["api_key"]
    assert server.requests == []


def test_rlm_config_cell_form_without_env(shell, server, magics, capsys):
    res, out, err = run_cell(shell, capsys, "%rlm config")
    assert_ok(res, err)
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
    assert "'openai/root'" in rows["model"] and "(%config)" in rows["model"]
    assert "'openai/sub'" in rows["sub_model"] and "(%config)" in rows["sub_model"]


def test_question_mark_help_still_works(shell, server, capsys):
    """``%rlm?`` is IPython's own help on the magic, not a run."""
    res, out, err = run_cell(shell, capsys, "%rlm?")
    assert_ok(res, err)
    assert "Run a Recursive Language Model" in out
    assert server.requests == []


@pytest.mark.parametrize("source", ["%rlm help", "%rlm", "%%rlm help"])
def test_rlm_help(shell, server, capsys, source):
    res, out, err = run_cell(shell, capsys, source)
    assert_ok(res, err)
    for opt in ("question=", "model=", "sub_model=", "api_base=", "out=", "max_iterations=", "max_llm_calls=",
                "timeout=", "mode=", "kernel=", "%config RLMMagics", "RLM_MODEL", "_rlm", "SUBMIT"):
        assert opt in out, opt
    assert server.requests == []


# ---------------------------------------------------------------------------
# 7. clear errors before any kernel starts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "needles"),
    [
        ('%%rlm context=dff question="q?"', ["dff", "did you mean df"]),
        ("%%rlm context=dff\nq?", ["dff", "did you mean df"]),
        ('%rlm context=dff question="q?"', ["dff", "did you mean df"]),
        ('%%rlm context=df max_iteration=3 question="q?"', ["max_iteration=", "did you mean max_iterations="]),
        ("%%rlm context=df", ["question is empty"]),
        ('%%rlm context=df question=""', ["question is empty"]),
        ("%%rlm context=df question='   '", ["question is empty"]),
        ('%%rlm context=df max_iterations=abc question="q?"', ["max_iterations=", "'abc'"]),
        ('%%rlm context=df max_iterations=0 question="q?"', ["max_iterations=", "positive"]),
        ('%%rlm context=df max_llm_calls=-3 question="q?"', ["max_llm_calls="]),
        ('%%rlm context=df mode=fast question="q?"', ["mode=", "'fast'", "no_subcalls"]),
        ('%%rlm context=df timeout=-1 question="q?"', ["timeout="]),
        ('%%rlm context=df out=1abc question="q?"', ["out=", "'1abc'"]),
        ('%%rlm context=df question="unterminated', ["unterminated", "quote"]),
        ("%%rlm context=df question='unterminated\nbody", ["unterminated", "quote"]),
        ('%%rlm context=df --verbose question="q?"', ["--verbose", "flag"]),
        ('%%rlm --max-iterations=3 context=df question="q?"', ["--max-iterations", "max_iterations="]),
        ('%%rlm SUBMIT=df question="q?"', ["'SUBMIT'", "REPL"]),
        ('%%rlm llm_query=df question="q?"', ["'llm_query'", "REPL"]),
        ('%%rlm context=df kernel=no-such-kernel question="q?"', ["no-such-kernel", "python3"]),
        ('%%rlm context=df[ question="q?"', ["unclosed ["]),
        ('%%rlm context=df context=df question="q?"', ["given twice"]),
        ('%%rlm context=df.nope question="q?"', ["context=", "AttributeError"]),
    ],
    ids=["unknown-var", "unknown-var-body", "unknown-var-line", "option-typo", "no-question",
         "empty-question", "blank-question", "int-abc", "int-zero", "int-negative", "mode-fast",
         "timeout-negative", "out-not-a-name", "unterminated-dq", "unterminated-sq-with-body", "flag",
         "leading-kebab-flag", "reserved-SUBMIT", "reserved-llm_query", "unknown-kernel", "unclosed-bracket",
         "twice", "expression-fails"],
)
def test_clear_errors(shell, server, capsys, sales, source, needles):
    shell.user_ns["df"] = sales
    res, out, err = run_cell(shell, capsys, source)
    assert_usage_error(res, out, err, *needles)
    assert_nothing_started(server)
    assert "_rlm" not in shell.user_ns


# ---------------------------------------------------------------------------
# 8. landing results
# ---------------------------------------------------------------------------


def test_submit_fields_land(shell, server, capsys, sales):
    server.add(
        "root",
        code_reply(
            "df_top = context.groupby('region', as_index=False).revenue.sum()"
            ".sort_values('revenue', ascending=False).head(2).reset_index(drop=True)\n"
            "SUBMIT(answer='West then South', top=df_top, count=3)"
        ),
    )
    shell.user_ns.update(df=sales, count=99)
    res, out, err = run_cell(shell, capsys, '%%rlm context=df question="Top regions?"')
    assert_ok(res, err)
    ns = shell.user_ns
    expected = (
        sales.groupby("region", as_index=False).revenue.sum()
        .sort_values("revenue", ascending=False).head(2).reset_index(drop=True)
    )
    assert isinstance(ns["top"], pd.DataFrame)
    pd.testing.assert_frame_equal(ns["top"], expected)
    assert ns["count"] == 3
    assert ns["answer"] == "West then South"  # a keyword answer= is a field like any other
    notices = [ln for ln in out.splitlines() if "overwrote" in ln]
    assert len(notices) == 1, out
    assert "'count'" in notices[0] and "int" in notices[0]
    assert bundle(res)["text/plain"] == "West then South"

    rlm = ns["_rlm"]
    assert isinstance(rlm, RLMResult)
    assert rlm.status == "finished"
    assert len(rlm.trajectory) == 1
    assert rlm.trajectory[0].final == "SUBMIT"
    assert "SUBMIT(answer=" in rlm.trajectory[0].code[0].code
    assert set(rlm.fields) >= {"top", "count"}

    back = RLMResult.from_json(rlm.to_json())
    assert back.status == "finished" and back.answer == "West then South"
    assert back.question == "Top regions?"
    pd.testing.assert_frame_equal(back.fields["top"], expected)
    assert back.fields["count"] == 3
    assert len(back.turns) == 1 and back.turns[0].code[0].code == rlm.turns[0].code[0].code
    assert back.turns[0].final == "SUBMIT"
    assert len(back.calls) == len(rlm.calls) and back.calls[0].model == rlm.calls[0].model
    assert back.to_json() == rlm.to_json()


def test_dataframe_answer_is_displayed_as_a_table(shell, server, capsys, sales):
    server.add("root", code_reply("SUBMIT(context.head(2))"))
    shell.user_ns["df"] = sales
    res, _, err = run_cell(shell, capsys, '%%rlm context=df question="First two rows?"')
    assert_ok(res, err)
    pd.testing.assert_frame_equal(shell.user_ns["_rlm"].answer, sales.head(2))
    b = bundle(res)
    assert "<table" in b["text/html"]
    assert "North" in b["text/plain"] and "South" in b["text/plain"]


def test_no_notice_when_nothing_is_overwritten(shell, server, capsys, sales):
    server.add("root", code_reply("SUBMIT(answer='a', fresh_name=1)"))
    shell.user_ns["df"] = sales
    res, out, err = run_cell(shell, capsys, '%%rlm context=df question="q?"')
    assert_ok(res, err)
    assert shell.user_ns["fresh_name"] == 1
    assert "overwrote" not in out


def test_reserved_notebook_names_are_not_overwritten(shell, server, capsys, sales):
    server.add("root", code_reply("SUBMIT(answer='a', In=1, get_ipython=2)"))
    shell.user_ns["df"] = sales
    res, out, err = run_cell(shell, capsys, '%%rlm context=df question="q?"')
    assert_ok(res, err)
    assert isinstance(shell.user_ns["In"], list)
    assert callable(shell.user_ns["get_ipython"])
    assert shell.user_ns["_rlm"].fields["In"] == 1
    assert len([ln for ln in out.splitlines() if "was not landed" in ln]) == 2


# ---------------------------------------------------------------------------
# 9. isolation of the child
# ---------------------------------------------------------------------------


def test_child_sees_only_bound_values(shell, server, capsys, sales, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-leak")
    monkeypatch.setenv("MY_API_TOKEN", "tok-leak-123")
    server.add(
        "root",
        code_reply(
            "import os\n"
            "leak = any(s in v for v in os.environ.values() for s in ('sk-test-leak', 'tok-leak-123'))\n"
            "names = ('OPENAI_API_KEY' in os.environ, 'MY_API_TOKEN' in os.environ)\n"
            "SUBMIT(answer='done', has_secret='secret' in globals(), has_df='df' in globals(),\n"
            "       env_leak=leak, env_names=list(names))"
        ),
    )
    shell.user_ns.update(df=sales, secret="hunter2")
    res, _, err = run_cell(shell, capsys, '%%rlm df=df question="q?"')
    assert_ok(res, err)
    ns = shell.user_ns
    assert ns["has_df"] is True
    assert ns["has_secret"] is False
    assert ns["env_leak"] is False
    assert ns["env_names"] == [False, False]
    assert "hunter2" not in first_user_message(server)


# ---------------------------------------------------------------------------
# 10. failed and budget-exhausted runs
# ---------------------------------------------------------------------------


def test_run_error_fails_the_cell_and_keeps_the_trajectory(shell, server, capsys, sales):
    server.add(
        "root",
        code_reply("print('looked at', len(context))"),
        Reply(status=500, error_message="the scripted model is down"),
    )
    shell.user_ns["df"] = sales
    res, out, err = run_cell(shell, capsys, '%%rlm context=df question="q?"')
    message = assert_usage_error(res, out, err, "the scripted model is down", "_rlm")
    assert len(message) < 400, message
    assert res.result is None
    rlm = shell.user_ns["_rlm"]
    assert rlm.status == "error"
    assert len(rlm.turns) == 2
    assert "looked at 6" in rlm.turns[0].code[0].output
    assert rlm.turns[1].root_call is not None and rlm.turns[1].root_call.error
    assert len(server.requests_for("root")) == 2  # num_retries=0: no retry


def test_budget_exhausted_shows_best_answer(shell, server, capsys, sales):
    server.add("root", code_reply("print(len(context))"), "FINAL(probably West)")
    shell.user_ns["df"] = sales
    res, out, err = run_cell(shell, capsys, '%%rlm context=df max_iterations=1 question="q?"')
    assert_ok(res, err)
    b = bundle(res)
    assert b["text/plain"].startswith("probably West")
    assert "turn budget exhausted" in b["text/plain"]
    assert b["text/markdown"].startswith("probably West")
    assert "turn budget exhausted" in b["text/markdown"]
    rlm = shell.user_ns["_rlm"]
    assert rlm.status == "max_iterations"
    assert rlm.answer == "probably West"
    assert "Traceback" not in out + err


# ---------------------------------------------------------------------------
# 11. braces in the body are never formatted
# ---------------------------------------------------------------------------


def test_body_braces_verbatim(shell, server, capsys, sales):
    server.add("root", _SUBMIT_OK)
    shell.user_ns.update(df=sales, x="EXPANDED")
    body = "Explain {0} {x} {{ and }} and {} plus %s %(x)s $x"
    res, _, err = run_cell(shell, capsys, f"%%rlm context=df\n{body}\n")
    assert_ok(res, err)
    assert f"Question:\n{body}\n" in first_user_message(server)
    assert shell.user_ns["_rlm"].question == body
