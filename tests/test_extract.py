"""Tests for rlm_magic.extract: code blocks, FINAL directives, history trimming."""

from __future__ import annotations

import pytest

from rlm_magic.extract import CodeBlock, Final, Parsed, parse_reply

F = "```"  # keeps the test sources readable


def codes(text: str | None) -> list[str]:
    return [b.code for b in parse_reply(text).blocks]


def langs(text: str) -> list[str]:
    return [b.lang for b in parse_reply(text).blocks]


# --------------------------------------------------------------------------
# Code blocks
# --------------------------------------------------------------------------

CODE_CASES = [
    pytest.param(f"Let me look.\n{F}repl\nx = 1\nprint(x)\n{F}\n", ["x = 1\nprint(x)"], ["repl"], id="repl"),
    pytest.param(f"{F}python\nprint(1)\n{F}", ["print(1)"], ["python"], id="python"),
    pytest.param(f"{F}py\nprint(2)\n{F}", ["print(2)"], ["py"], id="py"),
    pytest.param(f"{F}Python3\nprint(3)\n{F}", ["print(3)"], ["python3"], id="python3-lowercased"),
    pytest.param(f"{F}ipython\nprint(4)\n{F}", ["print(4)"], ["ipython"], id="ipython"),
    pytest.param(f"Run this:\n{F}\nprint(5)\n{F}\n", ["print(5)"], [""], id="bare"),
    pytest.param("~~~python\nprint(6)\n~~~\n", ["print(6)"], ["python"], id="tilde"),
    pytest.param("~~~\nprint(7)\n~~~~\n", ["print(7)"], [""], id="tilde-longer-close"),
    pytest.param(
        f"````python\nmd = '''\n{F}python\ninner()\n{F}\n'''\nprint(md)\n````\n",
        [f"md = '''\n{F}python\ninner()\n{F}\n'''\nprint(md)"],
        ["python"],
        id="four-backticks-contain-three",
    ),
    pytest.param(
        f"First:\n{F}repl\na = 1\n{F}\nThen some prose.\n{F}python\nb = 2\n{F}\nAnd:\n{F}py\nc = 3\n{F}",
        ["a = 1", "b = 2", "c = 3"],
        ["repl", "python", "py"],
        id="several-in-order",
    ),
    pytest.param(
        f"1. Step one:\n   {F}python\n   for i in range(2):\n       print(i)\n   {F}\n",
        ["for i in range(2):\n    print(i)"],
        ["python"],
        id="indented-in-list-item",
    ),
    pytest.param(
        f"{F}python\n    x = 1\n    y = 2\n{F}",
        ["x = 1\ny = 2"],
        ["python"],
        id="indented-content-dedented",
    ),
    pytest.param(
        f"{F}bash\npip install x\n{F}\n{F}json\n{{\"a\": 1}}\n{F}\n{F}sql\nSELECT 1\n{F}\n{F}text\nhello\n{F}",
        [],
        [],
        id="non-python-skipped",
    ),
    pytest.param(
        f"{F}text\nnot code\n{F}python\nstill text\n{F}\n{F}python\nreal = 1\n{F}",
        ["real = 1"],
        ["python"],
        id="fence-lines-inside-other-lang-are-content",
    ),
    pytest.param(f"{F}python\n\n   \n{F}\n{F}repl\nx = 1\n{F}", ["x = 1"], ["repl"], id="empty-block-dropped"),
    pytest.param(f"Inline {F}print(1){F} is not a fence.", [], [], id="inline-triple-backticks"),
    pytest.param(
        f"{F}python\nfor i in range(3):\n    print(i)",
        ["for i in range(3):\n    print(i)"],
        ["python"],
        id="unclosed-code-runs-to-end",
    ),
    pytest.param(f"{F}python\na = 1\n{F}\n{F}output\nstuff\n", ["a = 1"], ["python"], id="unclosed-other-lang-ignored"),
    pytest.param(
        f"{F}python\na = 1\n{F}python\nb = 2\n{F}",
        ["a = 1", "b = 2"],
        ["python", "python"],
        id="forgotten-close-before-next-python-fence",
    ),
    pytest.param(
        f"Here:\r\n{F}python\r\nx = 1\r\nprint(x)\r\n{F}\r\nDone.\r\n",
        ["x = 1\nprint(x)"],
        ["python"],
        id="crlf",
    ),
    pytest.param(f"{F} {{.python}}\nprint(8)\n{F}", ["print(8)"], ["python"], id="pandoc-info-string"),
]


@pytest.mark.parametrize(("text", "expected_codes", "expected_langs"), CODE_CASES)
def test_code_blocks(text: str, expected_codes: list[str], expected_langs: list[str]) -> None:
    parsed = parse_reply(text)
    assert [b.code for b in parsed.blocks] == expected_codes
    assert [b.lang for b in parsed.blocks] == expected_langs
    assert parsed.has_code is bool(expected_codes)


def test_block_offsets() -> None:
    text = f"Intro line\n{F}python\nx = 1\n{F}\ntrailing"
    (block,) = parse_reply(text).blocks
    assert block.start == text.index(F)
    assert text[block.start : block.end] == f"{F}python\nx = 1\n{F}"
    assert block == CodeBlock("x = 1", "python", block.start, block.end)


def test_unclosed_block_ends_at_end_of_text() -> None:
    text = f"{F}repl\nx = 1\n"
    (block,) = parse_reply(text).blocks
    assert block.end == len(text)


# --------------------------------------------------------------------------
# Invented output after code
# --------------------------------------------------------------------------

CODE = f"Let me check.\n{F}python\nprint(6 * 7)\n{F}"

INVENTED_OUTPUT_CASES = [
    pytest.param(f"{CODE}\n{F}output\n42\n{F}\nSo the answer is 42.", id="output-fence"),
    pytest.param(f"{CODE}\nOutput:\n{F}\n42\n{F}\n", id="bare-after-output-label"),
    pytest.param(f"{CODE}\n**REPL output:**\n{F}\n42\n{F}\n", id="bare-after-emphasised-label"),
    pytest.param(f"{CODE}\nresult:\n{F}\n42\n{F}\n", id="bare-after-lowercase-result"),
    pytest.param(f"{CODE}\n\n{F}\n42\n{F}\n", id="bare-right-after-code"),
    pytest.param(f"{CODE}\nThis prints 42, so the answer is 42.\n", id="plain-prose"),
    pytest.param(f"{CODE}\n{F}text\n>>> 42\n{F}\n", id="text-fence"),
]


@pytest.mark.parametrize("text", INVENTED_OUTPUT_CASES)
def test_invented_output_is_not_code_and_cut_from_history(text: str) -> None:
    parsed = parse_reply(text)
    assert [b.code for b in parsed.blocks] == ["print(6 * 7)"]
    history = parsed.history_text()
    assert history == CODE
    assert "42\n" not in history and "42." not in history


def test_bare_fence_after_real_prose_is_code() -> None:
    text = f"{CODE}\nNow let me also look at the second file in detail.\n{F}\nprint(2)\n{F}"
    assert codes(text) == ["print(6 * 7)", "print(2)"]


def test_history_without_code_is_whole_text() -> None:
    text = "I need to think about this.\nNo code yet."
    assert parse_reply(text).history_text() == text


def test_history_keeps_final_after_code() -> None:
    text = f"{CODE}\nOutput:\n{F}\n42\n{F}\nThe answer follows.\nFINAL(\n  '42'\n) trailing words\nmore chatter"
    parsed = parse_reply(text)
    assert parsed.final == Final("FINAL", "42", text.index("FINAL("), True)
    assert parsed.history_text() == f"{CODE}\nFINAL(\n  '42'\n) trailing words"


def test_history_with_final_before_code_is_cut_at_code() -> None:
    text = f"FINAL(early)\n{CODE}\nThis prints 42"
    parsed = parse_reply(text)
    assert parsed.final is not None and parsed.final.after_code is False
    assert parsed.history_text() == f"FINAL(early)\n{CODE}"


# --------------------------------------------------------------------------
# FINAL directives
# --------------------------------------------------------------------------

FINAL_CASES = [
    pytest.param("FINAL(42)", ("FINAL", "42"), id="plain"),
    pytest.param("The work is done.\n  FINAL(The capital is Paris)\n", ("FINAL", "The capital is Paris"), id="indented-prose"),
    pytest.param("**FINAL(yes)**", ("FINAL", "yes"), id="bold"),
    pytest.param("`FINAL(yes)`", ("FINAL", "yes"), id="code-span"),
    pytest.param("> FINAL(quoted)", ("FINAL", "quoted"), id="blockquote"),
    pytest.param("- FINAL(bullet)", ("FINAL", "bullet"), id="list-bullet"),
    pytest.param("I will call FINAL(x) later.", None, id="mid-sentence"),
    pytest.param("Then FINAL(x).\nFINAL(real)", ("FINAL", "real"), id="mid-sentence-then-line-start"),
    pytest.param(f"{F}python\nFINAL(42)\n{F}", None, id="inside-code-block"),
    pytest.param(f"{F}python\nx = 1\n{F}\n{F}output\nFINAL(42)\n{F}", None, id="inside-output-block"),
    pytest.param(f"{F}output\nFINAL(42)\n", None, id="inside-unclosed-output-block"),
    pytest.param("FINAL_VAR(answer)", ("FINAL_VAR", "answer"), id="final-var"),
    pytest.param("FINAL_VAR('answer')", ("FINAL_VAR", "answer"), id="final-var-single-quotes"),
    pytest.param('FINAL_VAR( "answer" )', ("FINAL_VAR", "answer"), id="final-var-double-quotes"),
    pytest.param("FINAL_VAR(my answer)", None, id="final-var-not-identifier"),
    pytest.param("FINAL_VAR(x[0])\nFINAL(fallback)", ("FINAL", "fallback"), id="final-var-invalid-then-final"),
    pytest.param("FINAL_VAR(class)", None, id="final-var-keyword"),
    pytest.param("FINAL(f(g(1), (2)))", ("FINAL", "f(g(1), (2))"), id="nested-parens"),
    pytest.param('FINAL("a (b) c")', ("FINAL", "a (b) c"), id="parens-in-string"),
    pytest.param('FINAL("close ) paren")', ("FINAL", "close ) paren"), id="unbalanced-paren-in-string"),
    pytest.param("FINAL('it\\'s \\n done')", ("FINAL", "it's \n done"), id="escapes"),
    pytest.param('FINAL("""line one\nline (two)""")', ("FINAL", "line one\nline (two)"), id="triple-quoted"),
    pytest.param("FINAL(\n  The answer spans\n  two lines\n)", ("FINAL", "The answer spans\n  two lines"), id="multi-line-raw"),
    pytest.param("FINAL(It's 42) and that's final.", ("FINAL", "It's 42"), id="apostrophes"),
    pytest.param("FINAL(3.14)", ("FINAL", "3.14"), id="number-stays-raw"),
    pytest.param("FINAL(no closing paren\nmore text", None, id="unmatched"),
    pytest.param("FINAL()\nFINAL(  )", None, id="empty-argument"),
    pytest.param("FINAL(first)\nFINAL(second)", ("FINAL", "first"), id="first-wins"),
    pytest.param("FINAL_ANSWER(x)", None, id="other-token"),
    pytest.param("Done.\r\nFINAL(\r\n'crlf'\r\n)\r\n", ("FINAL", "crlf"), id="crlf"),
    pytest.param("~~FINAL(retracted)~~", None, id="strikethrough"),
]


@pytest.mark.parametrize(("text", "expected"), FINAL_CASES)
def test_final(text: str, expected: tuple[str, str] | None) -> None:
    final = parse_reply(text).final
    if expected is None:
        assert final is None
    else:
        assert final is not None
        assert (final.kind, final.value) == expected
        assert text[final.start :].startswith(final.kind + "(")


def test_final_argument_does_not_run_into_a_fence() -> None:
    text = f"FINAL(see below\n{F}python\nx = (1)\n{F}\n"
    parsed = parse_reply(text)
    assert parsed.final is None
    assert codes(text) == ["x = (1)"]


@pytest.mark.parametrize(
    ("text", "after_code"),
    [
        pytest.param(f"FINAL(x)\n{F}python\nprint(1)\n{F}", False, id="before-code"),
        pytest.param(f"{F}python\nprint(1)\n{F}\nFINAL(x)", True, id="after-code"),
        pytest.param(f"{F}json\n{{}}\n{F}\nFINAL(x)", False, id="after-non-code-fence"),
        pytest.param("FINAL(x)", False, id="no-code"),
    ],
)
def test_after_code(text: str, after_code: bool) -> None:
    final = parse_reply(text).final
    assert final is not None and final.after_code is after_code


# --------------------------------------------------------------------------
# Degenerate input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, ""])
def test_none_and_empty(text: str | None) -> None:
    parsed = parse_reply(text)
    assert parsed == Parsed("", (), None)
    assert parsed.has_code is False
    assert parsed.history_text() == ""


@pytest.mark.parametrize(
    "text",
    ["```", "````\n", "~~~~~", "FINAL(", "FINAL('", 'FINAL("""', "\r", "\n\n", "((((", "FINAL_VAR()", "```python\n"],
)
def test_garbage_never_raises(text: str) -> None:
    parsed = parse_reply(text)
    assert parsed.text == text
    parsed.history_text()


def test_many_unmatched_directives_stay_cheap() -> None:
    import time

    text = "FINAL(\n" * 5000 + "FINAL('(\n" * 5000
    t0 = time.perf_counter()
    assert parse_reply(text).final is None
    assert time.perf_counter() - t0 < 10  # quadratic scanning would take minutes
