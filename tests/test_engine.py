"""End-to-end tests of the RLM engine: real child kernels, real litellm, scripted loopback models.

Every run goes ``RLM.run`` -> engine -> litellm -> :class:`ScriptedServer` on
127.0.0.1, and the code the scripted root model writes runs in a real
ipykernel child.  Nothing reaches a real API.

Sub-model handlers: ``ScriptedServer`` only takes handlers at construction
time (``add`` appends to list scripts and refuses handlers), so this module
overrides the ``server`` fixture with one whose ``default`` script dispatches
to the ``handlers`` dict below (public API only).  Root models are scripted
with ``server.add(...)`` lists as usual.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import pytest

from rlm_magic import prompts
from rlm_magic.events import (
    BatchFinished,
    BatchStarted,
    CodeFinished,
    CodeStarted,
    ModelCalled,
    ReplyParsed,
    RunFinished,
    RunStarted,
    TurnStarted,
)
from rlm_magic.result import RLMResult
from rlm_magic.scripted import Reply, Request, ScriptedServer, code_reply, count_words

#: A notebook-side global the child must never see (test 16).
secret_var = "parent-process-only-value"

LEAK_KEY = "sk-test-should-not-leak"
LEAK_TOKEN = "tok-service-should-not-leak"


# --------------------------------------------------------------------------- #
# Fixtures and helpers
# --------------------------------------------------------------------------- #


@pytest.fixture
def handlers() -> dict[str, Callable[[Request], Any]]:
    """Model name (as the server receives it) -> handler, for models not scripted with ``add``."""
    return {}


@pytest.fixture
def server(handlers: dict[str, Callable[[Request], Any]]) -> Iterator[ScriptedServer]:
    def dispatch(req: Request) -> Any:
        handler = handlers.get(req.model)
        if handler is None:
            return Reply(status=404, error_message=f"test has no handler for model {req.model!r}")
        return handler(req)

    srv = ScriptedServer(default=dispatch).start()
    try:
        yield srv
    finally:
        srv.stop()


def root_requests(server: ScriptedServer) -> list[Request]:
    return server.requests_for("root")


def total_chars(req: Request) -> int:
    return sum(len(m.get("content") or "") for m in req.messages)


def outputs(res: RLMResult) -> list[str]:
    return [run.output for turn in res.turns for run in turn.code]


def sub_prompts(server: ScriptedServer, model: str = "sub") -> list[str]:
    return [r.prompt for r in server.requests_for(model)]


# --------------------------------------------------------------------------- #
# 1. Huge context: answered from code, prompt stays small
# --------------------------------------------------------------------------- #


def test_million_row_frame_answered_from_code_with_small_prompt(make_rlm, server):
    n = 1_000_000
    idx = np.arange(n)
    df = pd.DataFrame({
        "region": np.array(["north", "south", "east", "west"])[idx % 4],
        "sales": (idx % 1000).astype(np.int64),
    })
    df.loc[500_000, "sales"] = 424242  # only row 500,000 has this value
    expected = df.groupby("region")["sales"].sum()

    server.add(
        "root",
        code_reply("print(context.shape)\nprint(context.groupby('region')['sales'].sum())", "Look first."),
        code_reply("SUBMIT(answer=int(context['sales'].idxmax()), "
                   "sums=context.groupby('region')['sales'].sum())"),
    )
    res = make_rlm().run("Which row has the biggest sale, and what are the sales per region?", context=df)

    assert res.status == "finished", res.error
    assert res.answer == 500_000
    pd.testing.assert_series_equal(res.fields["sums"], expected)
    assert "(1000000, 2)" in res.turns[0].code[0].output

    first = root_requests(server)[0]
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert total_chars(first) < 6_000, total_chars(first)
    body = "\n".join(m["content"] for m in first.messages)
    assert "424242" not in body
    assert "424,242" not in body
    assert "1,000,000" in body  # the size is described, not the data


# --------------------------------------------------------------------------- #
# 2. Several bindings at once
# --------------------------------------------------------------------------- #


def test_several_bindings_visible_with_types_and_described(make_rlm, server):
    df = pd.DataFrame({"city": ["Oslo", "Lima", "Pune"], "pop": [700_000, 10_000_000, 3_100_000]})
    text = "lorem ipsum " * 20_000 + "THE_END"
    records = [{"id": i, "name": f"item{i}"} for i in range(50)]
    server.add(
        "root",
        code_reply(
            "print(type(df).__name__, df.shape, int(df['pop'].sum()))\n"
            "print(type(text).__name__, len(text), text[-7:])\n"
            "print(type(records).__name__, len(records), records[7])\n"
            "SUBMIT('seen')"
        ),
    )
    res = make_rlm().run("Describe the data.", df=df, text=text, records=records)

    assert res.status == "finished", res.error
    out = res.turns[0].code[0].output
    assert "DataFrame (3, 2) 13800000" in out
    assert f"str {len(text)} THE_END" in out
    assert "list 50 {'id': 7, 'name': 'item7'}" in out

    first_user = root_requests(server)[0].messages[1]["content"]
    assert first_user.startswith("Question:\nDescribe the data.")
    assert "df: pandas.DataFrame" in first_user
    assert "text: str" in first_user
    assert "records: list" in first_user
    assert "240,007" in first_user  # the length of text, not the text
    assert len(first_user) < 4_000


# --------------------------------------------------------------------------- #
# 3. SUBMIT
# --------------------------------------------------------------------------- #


def test_submit_several_fields_keep_types(make_rlm, server):
    server.add(
        "root",
        code_reply(
            "import pandas as pd\n"
            "top = pd.DataFrame({'region': ['n', 's'], 'sales': [10.5, 3.25]})\n"
            "counts = pd.Series([1, 2, 3], index=['a', 'b', 'c'], name='counts')\n"
            "SUBMIT(answer='two regions', top=top, counts=counts, n_rows=123, tags=['x', 'y'])"
        ),
    )
    res = make_rlm().run("Summarise.", x=1)

    assert res.status == "finished", res.error
    assert res.answer == "two regions"
    assert set(res.fields) == {"answer", "top", "counts", "n_rows", "tags"}
    pd.testing.assert_frame_equal(res.fields["top"],
                                  pd.DataFrame({"region": ["n", "s"], "sales": [10.5, 3.25]}))
    pd.testing.assert_series_equal(res.fields["counts"],
                                   pd.Series([1, 2, 3], index=["a", "b", "c"], name="counts"))
    assert res.fields["n_rows"] == 123 and type(res.fields["n_rows"]) is int
    assert res.fields["tags"] == ["x", "y"]
    assert res.notes == []
    assert res.turns[0].final == "SUBMIT"
    assert res.turns[0].code[0].submitted is True


def test_submit_positional_sets_answer(make_rlm, server):
    server.add("root", code_reply("value = {'total': 42, 'items': [1, 2]}\nSUBMIT(value)"))
    res = make_rlm().run("Total?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == {"total": 42, "items": [1, 2]}
    assert res.fields == {}


def test_submit_unsendable_objects_become_repr_with_note(make_rlm, server):
    server.add("root", code_reply("SUBMIT(lambda v: v + 1, gen=(i for i in range(3)))"))
    res = make_rlm().run("Odd values.", x=1)

    assert res.status == "finished", res.error
    assert isinstance(res.answer, str) and res.answer.startswith("<function <lambda>")
    assert isinstance(res.fields["gen"], str) and res.fields["gen"].startswith("<generator object")
    assert len(res.notes) == 2
    assert any(n.startswith("answer:") and "repr" in n for n in res.notes), res.notes
    assert any(n.startswith("gen:") and "repr" in n for n in res.notes), res.notes


def test_submit_non_finite_floats_stay_floats(make_rlm, server):
    """NaN and inf are ordinary floats (a mean of nothing, a ratio over zero): they must land as floats."""
    server.add(
        "root",
        code_reply("import numpy as np\n"
                   "SUBMIT(answer='with gaps', mean=float('nan'), ratio=float('inf'), "
                   "values=[1.0, float('nan'), 3.0], np_mean=np.float64('nan'))"),
    )
    res = make_rlm().run("Mean?", x=1)
    assert res.status == "finished", res.error
    assert isinstance(res.fields["mean"], float) and math.isnan(res.fields["mean"]), res.fields["mean"]
    assert res.fields["ratio"] == math.inf
    values = res.fields["values"]
    assert isinstance(values, list), values
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == 3.0
    assert isinstance(res.fields["np_mean"], float) and math.isnan(res.fields["np_mean"])
    assert res.notes == []


# --------------------------------------------------------------------------- #
# 4. FINAL and FINAL_VAR
# --------------------------------------------------------------------------- #


def test_final_on_own_line_ends_run(make_rlm, server):
    server.add("root", "I already know this.\nFINAL(The answer is 42)")
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == "The answer is 42"
    assert len(res.turns) == 1
    assert res.turns[0].final == "FINAL"
    assert res.turns[0].code == []
    assert len(root_requests(server)) == 1


def test_final_mid_sentence_does_not_end_run(make_rlm, server):
    server.add(
        "root",
        "When I know more I will write FINAL(7) for you.",
        code_reply("SUBMIT(8)"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == 8
    assert len(res.turns) == 2
    assert res.turns[0].final is None
    assert res.turns[1].final == "SUBMIT"
    second = root_requests(server)[1]
    assert prompts.NO_CODE in second.prompt


def test_final_var_of_existing_variable(make_rlm, server):
    server.add(
        "root",
        code_reply("result_list = [1, 2, 3]\nprint(len(result_list))"),
        "The variable holds the answer.\nFINAL_VAR(result_list)",
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == [1, 2, 3]
    assert len(res.turns) == 2
    assert res.turns[1].final == "FINAL_VAR"


def test_final_var_of_missing_variable_is_refused(make_rlm, server):
    server.add(
        "root",
        "FINAL_VAR(no_such_var)",
        code_reply("SUBMIT('done')"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == "done"
    assert len(res.turns) == 2
    assert res.turns[0].final is None
    second = root_requests(server)[1]
    assert second.messages[-1]["role"] == "user"
    assert prompts.final_var_missing("no_such_var") in second.prompt
    assert "no_such_var" in second.prompt


def test_final_after_code_in_same_reply_is_not_accepted(make_rlm, server):
    server.add(
        "root",
        code_reply("print(6 * 7)", "Compute it.") + "\n\nFINAL(41)",
        "FINAL(42)",
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == "42"
    assert len(res.turns) == 2
    assert res.turns[0].final is None
    assert res.turns[0].code[0].output.strip() == "42"
    assert res.turns[1].final == "FINAL"
    second = root_requests(server)[1]
    assert prompts.FINAL_BEFORE_OUTPUT in second.prompt
    assert "42" in second.prompt


# --------------------------------------------------------------------------- #
# 5. Fence styles
# --------------------------------------------------------------------------- #


def test_fence_styles_execute_in_order_and_share_variables(make_rlm, server):
    server.add(
        "root",
        "First with repl:\n```repl\na = 2\nprint('repl', a)\n```\n"
        "Now python:\n```python\nb = a * 10\nprint('python', b)\n```\n"
        "And a bare fence:\n```\nprint('bare', a + b)\n```\n",
        "```\nprint('bare alone', a * b)\n```",
        code_reply("SUBMIT(a + b)"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert [r.output.strip() for r in res.turns[0].code] == ["repl 2", "python 20", "bare 22"]
    assert [r.error for r in res.turns[0].code] == [None, None, None]
    assert [r.output.strip() for r in res.turns[1].code] == ["bare alone 40"]
    assert res.answer == 22
    second = root_requests(server)[1].prompt
    assert second.index("repl 2") < second.index("python 20") < second.index("bare 22")


# --------------------------------------------------------------------------- #
# 6. Invented output
# --------------------------------------------------------------------------- #


def test_invented_output_is_ignored(make_rlm, server):
    server.add(
        "root",
        "Let me compute.\n```repl\nprint(6 * 7)\n```\nOutput:\n```\n99999\n```\n"
        "So the answer is clearly 99999.",
        "Sum it.\n```repl\ns = sum(range(10))\nprint(s)\n```\nThis prints 12345, which proves it.",
        code_reply("SUBMIT(s)"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert len(res.turns[0].code) == 1  # the invented "Output" fence did not run
    assert res.turns[0].code[0].output.strip() == "42"
    assert res.answer == 45

    second = root_requests(server)[1]
    assistant, user = second.messages[-2], second.messages[-1]
    assert assistant["role"] == "assistant" and user["role"] == "user"
    assert "print(6 * 7)" in assistant["content"]
    assert "99999" not in assistant["content"]
    assert "clearly" not in assistant["content"]
    assert "42" in user["content"] and "99999" not in user["content"]

    third = root_requests(server)[2]
    assistant, user = third.messages[-2], third.messages[-1]
    assert "s = sum(range(10))" in assistant["content"]
    assert "12345" not in assistant["content"]
    assert "45" in user["content"] and "12345" not in user["content"]
    # nothing invented survives anywhere in the history
    assert all("99999" not in (m["content"] or "") for m in third.messages)


# --------------------------------------------------------------------------- #
# 7. Code errors
# --------------------------------------------------------------------------- #


def test_code_errors_fed_back_and_run_recovers(make_rlm, server):
    server.add(
        "root",
        code_reply("print('before')\n1/0"),
        code_reply("def f(:\n    pass"),
        code_reply("SUBMIT('recovered')"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == "recovered"
    assert res.turns[0].code[0].error.startswith("ZeroDivisionError")
    assert res.turns[1].code[0].error.startswith("SyntaxError")
    second, third = root_requests(server)[1], root_requests(server)[2]
    assert "ZeroDivisionError" in second.prompt and "before" in second.prompt
    assert "SyntaxError" in third.prompt


# --------------------------------------------------------------------------- #
# 8. Timeout
# --------------------------------------------------------------------------- #


def test_infinite_loop_interrupted_and_variables_kept(make_rlm, server):
    server.add(
        "root",
        code_reply("keep = 123\nprint('defined')"),
        code_reply("print('looping', flush=True)\nwhile True:\n    pass"),
        code_reply("print('still here', keep)\nSUBMIT(keep)"),
    )
    started = time.monotonic()
    res = make_rlm(timeout=2.0).run("What?", x=1)
    assert res.status == "finished", res.error
    loop = res.turns[1].code[0]
    assert loop.timed_out is True
    assert loop.duration < 10
    assert "stopped" in loop.output and "variables are kept" in loop.output
    assert res.turns[1].note is None  # no kernel replacement
    third = root_requests(server)[2].prompt
    assert "(timed out)" in third
    assert "stopped" in third
    assert "restarted" not in third
    assert res.turns[2].code[0].output.startswith("still here 123")
    assert res.answer == 123
    assert time.monotonic() - started < 20


# --------------------------------------------------------------------------- #
# 9. Budgets
# --------------------------------------------------------------------------- #


def test_max_iterations_asks_once_for_final_answer(make_rlm, server):
    server.add(
        "root",
        code_reply("print('turn one')"),
        code_reply("print('turn two')"),
        "I could not finish.\nFINAL(best guess: 7)",
        code_reply("SUBMIT('must never be asked for')"),
    )
    res = make_rlm(max_iterations=2).run("What?", x=1)
    assert res.status == "max_iterations"
    assert res.answer == "best guess: 7"
    assert len(res.turns) == 2
    assert [c.role for c in res.calls] == ["root", "root", "final"]
    assert len(root_requests(server)) == 3
    assert server.remaining("root") == 1
    last = root_requests(server)[2].prompt
    assert "out of budget" in last and "all 2 turns used" in last
    final_req = root_requests(server)[2]
    assert "turn two" in final_req.messages[-2]["content"]  # the last output is still shown


def test_max_llm_calls_stops_sub_calls(make_rlm, server, handlers):
    handlers["sub"] = lambda req: f"answer to {req.prompt}"
    server.add(
        "root",
        code_reply("outs = [llm_query(f'q{i}') for i in range(5)]\nfor o in outs:\n    print(o)"),
        "Out of calls.\nFINAL(partial)",
    )
    res = make_rlm(max_llm_calls=4).run("What?", x=1)
    assert res.status == "max_llm_calls"
    assert res.answer == "partial"
    lines = res.turns[0].code[0].output.strip().splitlines()
    assert lines[:3] == ["answer to q0", "answer to q1", "answer to q2"]
    assert len(lines) == 5
    for line in lines[3:]:
        assert line.startswith("[llm_query error]")
        assert "budget" in line
    assert sub_prompts(server) == ["q0", "q1", "q2"]
    assert [c.role for c in res.calls] == ["root", "sub", "sub", "sub", "final"]
    assert len(res.turns) == 1


PRICED_ROOT = "openai/rlm-test-priced-root"


@pytest.fixture
def priced_root() -> Iterator[str]:
    """Teach litellm a price for one scripted model name, through its public register_model."""
    import litellm

    litellm.register_model({PRICED_ROOT: {
        "input_cost_per_token": 0.001, "output_cost_per_token": 0.002,
        "litellm_provider": "openai", "mode": "chat",
    }})
    try:
        yield PRICED_ROOT
    finally:
        litellm.model_cost.pop(PRICED_ROOT, None)


def test_max_cost_ends_run(make_rlm, server, priced_root):
    name = priced_root.split("/", 1)[1]
    usage = {"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010}
    server.add(
        name,
        Reply(content=code_reply("print('spent')"), usage=usage),
        Reply(content="Too expensive.\nFINAL(cheap answer)", usage=usage),
        code_reply("SUBMIT('must never be asked for')"),
    )
    res = make_rlm(model=priced_root, max_cost=1.0).run("What?", x=1)
    assert res.status == "max_cost"
    assert res.answer == "cheap answer"
    assert [c.role for c in res.calls] == ["root", "final"]
    assert res.calls[0].cost == pytest.approx(1000 * 0.001 + 10 * 0.002)
    assert res.total_cost == pytest.approx(2 * 1.02)
    assert res.turns[0].code[0].output.strip() == "spent"
    assert "cost limit" in server.requests_for(name)[-1].prompt


# --------------------------------------------------------------------------- #
# 10. Modes
# --------------------------------------------------------------------------- #


def test_no_subcalls_mode(make_rlm, server, handlers):
    handlers["sub"] = lambda req: "should not be reached"
    server.add(
        "root",
        code_reply("print('llm_query_batched' in globals())\nprint(llm_query('hi'))"),
        code_reply("SUBMIT('no sub')"),
    )
    res = make_rlm(mode="no_subcalls").run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.turns[0].code[0].error.startswith("NameError")
    second = root_requests(server)[1].prompt
    assert "NameError" in second and "llm_query" in second
    assert res.turns[0].code[0].output.startswith("False")
    system = root_requests(server)[0].messages[0]
    assert system["role"] == "system"
    assert "There is no sub-model" in system["content"]
    assert "llm_query(prompt) -> str" not in system["content"]
    assert server.requests_for("sub") == []


def test_conservative_system_prompt_differs_from_standard(make_rlm, server):
    server.add("root", code_reply("SUBMIT(1)"), code_reply("SUBMIT(2)"))
    assert make_rlm().run("What?", x=1).answer == 1
    assert make_rlm(mode="conservative").run("What?", x=1).answer == 2
    standard, conservative = (r.messages[0]["content"] for r in root_requests(server))
    assert standard != conservative
    assert "Sub-calls cost money" in conservative
    assert "Sub-calls cost money" not in standard
    assert "llm_query(prompt) -> str" in standard and "llm_query(prompt) -> str" in conservative


# --------------------------------------------------------------------------- #
# 11. Sub-calls
# --------------------------------------------------------------------------- #


def test_llm_query_sends_exactly_the_prompt(make_rlm, server, handlers):
    handlers["sub"] = lambda req: f"len={len(req.prompt)}"
    prompt = "Summarise: alpha beta\nline two {braces} and 'quotes'"
    server.add("root", code_reply(f"r = llm_query({prompt!r})\nprint(r)\nSUBMIT(r)"))
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == f"len={len(prompt)}"
    reqs = server.requests_for("sub")
    assert len(reqs) == 1
    assert reqs[0].messages == [{"role": "user", "content": prompt}]
    subs = [c for c in res.calls if c.role == "sub"]
    assert len(subs) == 1 and subs[0].prompt == prompt and subs[0].model == "openai/sub"
    assert res.turns[0].sub_calls == subs


def test_sub_system_prompt_is_sent_when_set(make_rlm, server, handlers):
    handlers["sub"] = lambda req: "ok"
    server.add("root", code_reply("SUBMIT(llm_query('the prompt'))"))
    res = make_rlm(sub_system_prompt="You are terse.").run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == "ok"
    assert server.requests_for("sub")[0].messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "the prompt"},
    ]


def test_llm_query_batched_runs_concurrently(make_rlm, server, handlers):
    handlers["sub"] = lambda req: Reply(content=f"r:{req.prompt}", delay=0.5)
    server.add("root", code_reply("outs = llm_query_batched([f'p{i}' for i in range(8)])\nSUBMIT(outs)"))
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == [f"r:p{i}" for i in range(8)]
    assert server.max_concurrent >= 4
    subs = [c for c in res.calls if c.role == "sub"]
    assert len(subs) == 8
    assert len({c.batch for c in subs}) == 1 and subs[0].batch is not None


def test_llm_query_batched_failed_item_is_error_string(make_rlm, server, handlers):
    handlers["sub"] = lambda req: Reply(status=500) if req.prompt == "p3" else f"ok:{req.prompt}"
    server.add("root", code_reply("outs = llm_query_batched([f'p{i}' for i in range(6)])\nSUBMIT(outs)"))
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    outs = res.answer
    assert len(outs) == 6
    assert outs[3].startswith("[llm_query error]")
    assert [o for i, o in enumerate(outs) if i != 3] == [f"ok:p{i}" for i in (0, 1, 2, 4, 5)]
    failed = [c for c in res.calls if c.role == "sub" and c.error]
    assert len(failed) == 1 and failed[0].prompt == "p3"


def test_identical_prompts_sent_once(make_rlm, server, handlers):
    handlers["sub"] = lambda req: Reply(content=f"echo:{req.prompt}", delay=0.2)
    server.add(
        "root",
        code_reply("outs = llm_query_batched(['same', 'same', 'other', 'same'])\n"
                   "again = llm_query('same')\nSUBMIT(outs + [again])"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == ["echo:same", "echo:same", "echo:other", "echo:same", "echo:same"]
    assert Counter(sub_prompts(server)) == Counter({"same": 1, "other": 1})


# --------------------------------------------------------------------------- #
# 12. Sub-call context window
# --------------------------------------------------------------------------- #


def test_sub_context_window_setting_refuses_long_prompt(make_rlm, server, handlers):
    handlers["sub"] = lambda req: "short ok"
    server.add(
        "root",
        code_reply("big = ' '.join(['word'] * 5000)\nr = llm_query(big)\nprint(r[:400])\n"
                   "SUBMIT(answer=r, small=llm_query('tiny'))"),
    )
    res = make_rlm(sub_context_window=100).run("What?", x=1)
    assert res.status == "finished", res.error
    refused = res.fields["answer"]
    assert refused.startswith("[llm_query error]")
    assert "too long" in refused and "100" in refused
    assert res.fields["small"] == "short ok"
    assert sub_prompts(server) == ["tiny"]


def test_litellm_known_window_refuses_huge_prompt_without_request(make_rlm, server, handlers):
    handlers["gpt-3.5-turbo"] = lambda req: "small ok"
    server.add(
        "root",
        code_reply("big = ' '.join(['word'] * 200_000)\n"
                   "SUBMIT(answer=llm_query(big), small=llm_query('hello'))"),
    )
    res = make_rlm(sub_model="openai/gpt-3.5-turbo").run("What?", x=1)
    assert res.status == "finished", res.error
    refused = res.fields["answer"]
    assert refused.startswith("[llm_query error]")
    assert "too long" in refused
    assert "16,385" in refused  # litellm's window for gpt-3.5-turbo
    assert res.fields["small"] == "small ok"
    assert sub_prompts(server, "gpt-3.5-turbo") == ["hello"]


# --------------------------------------------------------------------------- #
# 13. Usage accounting
# --------------------------------------------------------------------------- #


def test_usage_accounting(make_rlm, server, handlers):
    def sub(req: Request) -> Reply:
        if req.prompt == "count me please":
            return Reply(content="three word reply")
        return Reply(content="four words in reply", omit_usage=True)

    handlers["sub"] = sub
    root_second = code_reply("print(llm_query('second one'))")
    server.add(
        "root",
        Reply(content=code_reply("print(llm_query('count me please'))"),
              usage={"prompt_tokens": 111, "completion_tokens": 22, "total_tokens": 133}),
        root_second,
        code_reply("SUBMIT('done')"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    roots = [c for c in res.calls if c.role == "root"]
    subs = [c for c in res.calls if c.role == "sub"]
    assert len(roots) == 3 and len(subs) == 2

    assert (roots[0].prompt_tokens, roots[0].completion_tokens, roots[0].tokens_estimated) == (111, 22, False)
    reqs = root_requests(server)
    for call, req in zip(roots[1:], reqs[1:]):
        assert call.tokens_estimated is False
        assert call.prompt_tokens == sum(count_words(m.get("content")) for m in req.messages)
        assert call.completion_tokens == count_words(call.response)
    assert roots[1].completion_tokens == count_words(root_second)

    assert (subs[0].prompt_tokens, subs[0].completion_tokens, subs[0].tokens_estimated) == (3, 3, False)
    assert subs[1].tokens_estimated is True
    assert subs[1].prompt_tokens > 0 and subs[1].completion_tokens > 0

    usage = res.usage
    assert set(usage) == {"root:openai/root", "sub:openai/sub"}
    u_root, u_sub = usage["root:openai/root"], usage["sub:openai/sub"]
    assert u_root.calls == 3 and u_sub.calls == 2
    assert u_root.prompt_tokens == sum(c.prompt_tokens for c in roots)
    assert u_root.completion_tokens == sum(c.completion_tokens for c in roots)
    assert u_sub.prompt_tokens == sum(c.prompt_tokens for c in subs)
    assert u_root.estimated is False and u_sub.estimated is True
    assert all(c.cost is None for c in res.calls)
    assert u_root.cost is None and u_sub.cost is None
    assert res.total_cost is None
    assert res.total_tokens == sum(c.prompt_tokens + c.completion_tokens for c in res.calls)


# --------------------------------------------------------------------------- #
# 14. Empty root replies
# --------------------------------------------------------------------------- #


def test_none_and_empty_root_content_nudges_and_continues(make_rlm, server):
    server.add(
        "root",
        Reply(content=None),
        Reply(content=None, reasoning="thinking..."),
        Reply(content=""),
        code_reply("SUBMIT('after empties')"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == "after empties"
    assert len(res.turns) == 4
    assert all(t.code == [] and t.final is None for t in res.turns[:3])
    assert res.turns[1].reasoning == "thinking..."
    reqs = root_requests(server)
    assert len(reqs) == 4
    for req in reqs[1:]:
        assert req.messages[-2]["role"] == "assistant"
        assert req.messages[-2]["content"] == "(empty reply)"
        assert prompts.EMPTY_REPLY in req.prompt


# --------------------------------------------------------------------------- #
# 15. Transient errors
# --------------------------------------------------------------------------- #


def test_rate_limit_is_retried(make_rlm, server):
    server.add(
        "root",
        Reply(status=429, headers={"retry-after-ms": "10"}),
        code_reply("SUBMIT('ok')"),
    )
    res = make_rlm(num_retries=2).run("What?", x=1)
    assert res.status == "finished", res.error
    assert res.answer == "ok"
    assert len(root_requests(server)) == 2
    assert res.calls[0].error is None


def test_server_error_without_retries_ends_run(make_rlm, server):
    server.add("root", Reply(status=500, error_message="boom from scripted server"), code_reply("SUBMIT(1)"))
    res = make_rlm(num_retries=0).run("What?", x=1)
    assert res.status == "error"
    assert res.error is not None
    assert res.error.startswith("root model call failed")
    assert "boom from scripted server" in res.error
    assert len(root_requests(server)) == 1
    assert res.calls[0].error is not None and res.answer is None


# --------------------------------------------------------------------------- #
# 16. Isolation of the child
# --------------------------------------------------------------------------- #


def test_child_sees_neither_unbound_globals_nor_secrets(make_rlm, server, monkeypatch):
    assert globals()["secret_var"] == "parent-process-only-value"
    monkeypatch.setenv("OPENAI_API_KEY", LEAK_KEY)
    monkeypatch.setenv("MY_SERVICE_TOKEN", LEAK_TOKEN)
    server.add(
        "root",
        code_reply(
            "import os\n"
            "print('secret_var' in globals())\n"
            "print(repr(os.environ.get('OPENAI_API_KEY')), repr(os.environ.get('MY_SERVICE_TOKEN')))\n"
            f"print(any({LEAK_KEY!r} in v for v in os.environ.values()))\n"
            f"print(any({LEAK_TOKEN!r} in v for v in os.environ.values()))\n"
            "print(x)\n"
            "SUBMIT('checked')"
        ),
    )
    res = make_rlm().run("What?", x=5)
    assert res.status == "finished", res.error
    lines = res.turns[0].code[0].output.splitlines()
    assert lines[:5] == ["False", "None None", "False", "False", "5"]
    assert not any(LEAK_KEY in (r.output or "") for t in res.turns for r in t.code)


# --------------------------------------------------------------------------- #
# 17. JSON round trip
# --------------------------------------------------------------------------- #


def test_result_json_round_trip(make_rlm, server, tmp_path):
    server.add(
        "root",
        code_reply("print('peek')"),
        code_reply("import pandas as pd\n"
                   "t = pd.DataFrame({'k': ['a', 'b'], 'v': [1.5, 2.5], 'n': [1, 2]})\n"
                   "s = pd.Series([4, 5], index=['p', 'q'], name='counts')\n"
                   "SUBMIT(answer='see table', table=t, n=3, counts=s)"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    path = tmp_path / "run.json"
    res.to_json(str(path))
    for loaded in (RLMResult.from_json(res.to_json()), RLMResult.from_json(str(path))):
        assert loaded.status == res.status == "finished"
        assert loaded.answer == "see table"
        assert set(loaded.fields) == {"answer", "table", "n", "counts"}
        pd.testing.assert_series_equal(loaded.fields["counts"],
                                       pd.Series([4, 5], index=["p", "q"], name="counts"))
        pd.testing.assert_frame_equal(loaded.fields["table"], res.fields["table"])
        pd.testing.assert_frame_equal(loaded.fields["table"],
                                      pd.DataFrame({"k": ["a", "b"], "v": [1.5, 2.5], "n": [1, 2]}))
        assert loaded.fields["n"] == 3
        assert len(loaded.turns) == len(res.turns) == 2
        assert len(loaded.calls) == len(res.calls) == 2
        assert loaded.turns[0].code[0].output == res.turns[0].code[0].output
        assert loaded.turns[1].final == "SUBMIT"
        assert loaded.calls[0].prompt_tokens == res.calls[0].prompt_tokens


def test_result_json_round_trip_integer_column_labels(make_rlm, server):
    """A crosstab / pivot / DataFrame(ndarray) has non-string column labels; a saved run must reload."""
    server.add(
        "root",
        code_reply("import pandas as pd\n"
                   "ct = pd.crosstab(pd.Series(['a', 'b', 'a'], name='r'), pd.Series([1, 2, 2], name='c'))\n"
                   "SUBMIT(answer='crosstab', ct=ct)"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    expected = pd.crosstab(pd.Series(["a", "b", "a"], name="r"), pd.Series([1, 2, 2], name="c"))
    pd.testing.assert_frame_equal(res.fields["ct"], expected)  # the SUBMIT path keeps the labels
    loaded = RLMResult.from_json(res.to_json())
    pd.testing.assert_frame_equal(loaded.fields["ct"], expected)


def test_result_json_round_trip_datetime_column(make_rlm, server):
    """Dates keep their dtype, including the common 9999-12-31 'open end' sentinel."""
    server.add(
        "root",
        code_reply("import pandas as pd\n"
                   "d = pd.DataFrame({'valid_to': pd.to_datetime(['2024-01-31', '9999-12-31']), 'id': [1, 2]})\n"
                   "SUBMIT(answer='dates', d=d)"),
    )
    res = make_rlm().run("What?", x=1)
    assert res.status == "finished", res.error
    expected = pd.DataFrame({"valid_to": pd.to_datetime(["2024-01-31", "9999-12-31"]), "id": [1, 2]})
    pd.testing.assert_frame_equal(res.fields["d"], expected)  # the SUBMIT path keeps them
    loaded = RLMResult.from_json(res.to_json())
    pd.testing.assert_frame_equal(loaded.fields["d"], expected)


# --------------------------------------------------------------------------- #
# 18. Events
# --------------------------------------------------------------------------- #


def test_events_sequence(make_rlm, server, handlers):
    handlers["sub"] = lambda req: f"r:{req.prompt}"
    server.add(
        "root",
        code_reply("a = llm_query('one')\nb = llm_query_batched(['two', 'three'])\nprint(a, b)"),
        code_reply("SUBMIT('done')"),
    )
    events: list[Any] = []
    res = make_rlm(on_event=events.append).run("What?", x=1)
    assert res.status == "finished", res.error

    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished)
    assert events[-1].result is res
    assert sum(isinstance(e, RunStarted) for e in events) == 1
    assert sum(isinstance(e, RunFinished) for e in events) == 1
    kinds = [type(e) for e in events]
    for kind in (TurnStarted, ReplyParsed, CodeStarted, CodeFinished, ModelCalled, BatchStarted, BatchFinished):
        assert kind in kinds, kind.__name__
    # turn 1 in order
    first_turn = [k for k in kinds if k in (TurnStarted, ReplyParsed, CodeStarted, CodeFinished)]
    assert first_turn[:4] == [TurnStarted, ReplyParsed, CodeStarted, CodeFinished]
    assert [e.turn for e in events if isinstance(e, TurnStarted)] == [1, 2]
    called = [e for e in events if isinstance(e, ModelCalled)]
    assert [e.call.role for e in called].count("root") == 2
    sub_events = [e for e in called if e.call.role == "sub"]
    assert sorted(e.call.prompt for e in sub_events) == ["one", "three", "two"]
    assert all(e.turn == 1 for e in sub_events)
    batch = next(e for e in events if isinstance(e, BatchFinished))
    assert batch.size == 2 and batch.errors == 0


# --------------------------------------------------------------------------- #
# 19. Output cap
# --------------------------------------------------------------------------- #


def test_output_is_capped_with_marker(make_rlm, server):
    server.add("root", code_reply("print('x' * 200_000)"), code_reply("SUBMIT('done')"))
    res = make_rlm(max_output_chars=1000).run("What?", x=1)
    assert res.status == "finished", res.error
    run = res.turns[0].code[0]
    assert run.output_chars == 200_001
    assert len(run.output) < 1_500
    fed = root_requests(server)[1].prompt
    assert len(fed) < 3_000
    assert "truncated" in fed
    assert "200,001" in fed


def test_disk_cache_answers_repeated_calls_across_runs(make_rlm, server, handlers, tmp_path):
    """cache_dir: a rerun of the same question is answered from litellm's disk cache."""
    script = [code_reply("print(llm_query('what is in chunk 1?'))"), code_reply("SUBMIT('ok')")]
    server.add("root", *script, *script)
    handlers["sub"] = lambda req: Reply(content="chunk one facts")
    first = make_rlm(cache_dir=str(tmp_path / "cache")).run("q", x=1)
    sent = len(server.requests)
    second = make_rlm(cache_dir=str(tmp_path / "cache")).run("q", x=1)
    assert second.answer == first.answer == "ok"
    assert len(server.requests) == sent  # nothing new reached the server
    assert all(c.cached for c in second.calls) and not any(c.cached for c in first.calls)
    assert second.turns[0].code[0].output.strip() == "chunk one facts"
