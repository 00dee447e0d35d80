"""Tests for rlm_magic.parsing: splitting the %%rlm argument line."""

from __future__ import annotations

import pytest

from rlm_magic.parsing import (
    Arg,
    ArgumentError,
    close_matches,
    split_args,
    split_subcommand,
)


def plain(name: str, text: str) -> Arg:
    return Arg(name=name, text=text, value=text, quoted=False)


def quoted(name: str, text: str, value: str) -> Arg:
    return Arg(name=name, text=text, value=value, quoted=True)


# --------------------------------------------------------------------------
# split_args: successful splits
# --------------------------------------------------------------------------

SPLITS = [
    pytest.param(
        'context=df question="Which region has the highest total revenue, and why?" '
        "model=openai/gpt-4o max_iterations=5",
        [
            plain("context", "df"),
            quoted(
                "question",
                '"Which region has the highest total revenue, and why?"',
                "Which region has the highest total revenue, and why?",
            ),
            plain("model", "openai/gpt-4o"),
            plain("max_iterations", "5"),
        ],
        id="card-example",
    ),
    pytest.param(
        "recent=df[df.year == 2024] docs=[a, b] question=What is the total? "
        "api_base=http://127.0.0.1:8000/v1",
        [
            plain("recent", "df[df.year == 2024]"),
            plain("docs", "[a, b]"),
            plain("question", "What is the total?"),
            plain("api_base", "http://127.0.0.1:8000/v1"),
        ],
        id="expressions-and-unquoted-question",
    ),
    pytest.param(
        "a=f(x, y=2)",
        [plain("a", "f(x, y=2)")],
        id="keyword-inside-parens-is-not-a-boundary",
    ),
    pytest.param(
        "a=f(x, y=2) b=g(z=[1, 2], w={'k': v})",
        [plain("a", "f(x, y=2)"), plain("b", "g(z=[1, 2], w={'k': v})")],
        id="nested-keywords",
    ),
    pytest.param(
        'cfg={"k": 1, "j": [1, 2], "n": {"m": None}} model=m',
        [plain("cfg", '{"k": 1, "j": [1, 2], "n": {"m": None}}'), plain("model", "m")],
        id="dict-literal",
    ),
    pytest.param(
        "cfg={'a b': 1}",
        [plain("cfg", "{'a b': 1}")],
        id="dict-with-spaced-key",
    ),
    pytest.param(
        'question="set x=1 please" model=m',
        [quoted("question", '"set x=1 please"', "set x=1 please"), plain("model", "m")],
        id="name-eq-inside-double-quotes",
    ),
    pytest.param(
        "question='set x=1 please' model=m",
        [quoted("question", "'set x=1 please'", "set x=1 please"), plain("model", "m")],
        id="name-eq-inside-single-quotes",
    ),
    pytest.param(
        "question=What is the total revenue per region?",
        [plain("question", "What is the total revenue per region?")],
        id="unquoted-multi-word",
    ),
    pytest.param(
        "question=What is the total revenue? model=m max_iterations=3",
        [
            plain("question", "What is the total revenue?"),
            plain("model", "m"),
            plain("max_iterations", "3"),
        ],
        id="unquoted-multi-word-then-args",
    ),
    pytest.param(
        "api_base=https://user@example.com:8443/v1/path?x=1&y=2",
        [plain("api_base", "https://user@example.com:8443/v1/path?x=1&y=2")],
        id="url-with-query",
    ),
    pytest.param(
        "api_base=http://localhost:11434 model=ollama/llama3:8b",
        [plain("api_base", "http://localhost:11434"), plain("model", "ollama/llama3:8b")],
        id="url-and-model-with-colon",
    ),
    pytest.param(
        "model=openai/gpt-4o",
        [plain("model", "openai/gpt-4o")],
        id="model-with-slash",
    ),
    pytest.param(
        "max_iterations=5 temperature=0.2 budget=-1 big=1e6 n=1_000",
        [
            plain("max_iterations", "5"),
            plain("temperature", "0.2"),
            plain("budget", "-1"),
            plain("big", "1e6"),
            plain("n", "1_000"),
        ],
        id="numbers",
    ),
    pytest.param(
        "question='single quoted'",
        [quoted("question", "'single quoted'", "single quoted")],
        id="single-quoted",
    ),
    pytest.param(
        r'question="say \"hi\" to C:\path and \\ done"',
        [
            quoted(
                "question",
                r'"say \"hi\" to C:\path and \\ done"',
                r'say "hi" to C:\path and \ done',
            )
        ],
        id="double-quoted-escapes-shell-like",
    ),
    pytest.param(
        r"question='no \escapes in single'",
        [quoted("question", r"'no \escapes in single'", r"no \escapes in single")],
        id="single-quoted-backslash-literal",
    ),
    pytest.param(
        "question=\"What's the total?\" model=m",
        [quoted("question", "\"What's the total?\"", "What's the total?"), plain("model", "m")],
        id="apostrophe-inside-double-quotes",
    ),
    pytest.param(
        "question='say \"hi\"'",
        [quoted("question", "'say \"hi\"'", 'say "hi"')],
        id="double-quote-inside-single-quotes",
    ),
    pytest.param(
        "question='It''s' model=m",
        [quoted("question", "'It''s'", "Its"), plain("model", "m")],
        id="adjacent-quoted-strings-concatenate",
    ),
    pytest.param(
        "question=\"a\"'b'",
        [quoted("question", "\"a\"'b'", "ab")],
        id="mixed-adjacent-quotes",
    ),
    pytest.param(
        'x=df["a b"]',
        [plain("x", 'df["a b"]')],
        id="quotes-inside-expression",
    ),
    pytest.param(
        "x=df['a b'] y=df[\"c\"].sum()",
        [plain("x", "df['a b']"), plain("y", 'df["c"].sum()')],
        id="quotes-inside-expressions",
    ),
    pytest.param(
        'question="a" "b"',
        [plain("question", '"a" "b"')],
        id="two-separate-quoted-strings-not-quoted",
    ),
    pytest.param(
        'question="a"x',
        [plain("question", '"a"x')],
        id="quoted-then-text-not-quoted",
    ),
    pytest.param(
        'question="brackets ( [ { are fine in quotes"',
        [quoted("question", '"brackets ( [ { are fine in quotes"', "brackets ( [ { are fine in quotes")],
        id="brackets-in-quotes-ignored",
    ),
    pytest.param(
        'question=""',
        [quoted("question", '""', "")],
        id="empty-quoted",
    ),
    pytest.param("question=", [plain("question", "")], id="empty-at-end"),
    pytest.param(
        "question= model=m",
        [plain("question", ""), plain("model", "m")],
        id="empty-before-next",
    ),
    pytest.param(
        "question=   model=m",
        [plain("question", ""), plain("model", "m")],
        id="empty-with-spaces",
    ),
    pytest.param(
        "   context=df    model=m   ",
        [plain("context", "df"), plain("model", "m")],
        id="surrounding-whitespace-stripped",
    ),
    pytest.param(
        "context=df\tmodel=m",
        [plain("context", "df"), plain("model", "m")],
        id="tab-separator",
    ),
    pytest.param(
        'question=  "padded"  ',
        [quoted("question", '"padded"', "padded")],
        id="quoted-with-surrounding-space",
    ),
    pytest.param(
        "q=a == b c=1",
        [plain("q", "a == b"), plain("c", "1")],
        id="spaced-double-equals",
    ),
    pytest.param(
        "q=x y==1",
        [plain("q", "x y==1")],
        id="double-equals-after-name-not-boundary",
    ),
    pytest.param(
        "q=x y<=1 z>=2 w!=3",
        [plain("q", "x y<=1 z>=2 w!=3")],
        id="comparison-operators-not-boundaries",
    ),
    pytest.param(
        "q=(y:=2)",
        [plain("q", "(y:=2)")],
        id="walrus-in-parens",
    ),
    pytest.param(
        "a=b=c",
        [plain("a", "b=c")],
        id="eq-without-space-is-value",
    ),
    pytest.param(
        "a=x.y=1",
        [plain("a", "x.y=1")],
        id="attribute-assign-text-is-value",
    ),
    pytest.param(
        "n=total -x",
        [plain("n", "total -x")],
        id="single-dash-arithmetic-allowed",
    ),
    pytest.param(
        "question=This is good -- really?",
        [plain("question", "This is good -- really?")],
        id="double-dash-not-followed-by-letter",
    ),
    pytest.param(
        'question="use --strict please"',
        [quoted("question", '"use --strict please"', "use --strict please")],
        id="flag-text-inside-quotes-ok",
    ),
    pytest.param(
        "größe=1 _private=2 CamelCase=3",
        [plain("größe", "1"), plain("_private", "2"), plain("CamelCase", "3")],
        id="identifier-names",
    ),
    pytest.param(
        "a=f(\n  x,\n  y=2\n) b=1",
        [plain("a", "f(\n  x,\n  y=2\n)"), plain("b", "1")],
        id="newlines-are-whitespace",
    ),
    pytest.param(
        "question=#1 priority? model=m",
        [plain("question", "#1 priority?"), plain("model", "m")],
        id="hash-is-not-a-comment",
    ),
    pytest.param(
        "a=$HOME b=~",
        [plain("a", "$HOME"), plain("b", "~")],
        id="no-expansion",
    ),
]


@pytest.mark.parametrize(("line", "expected"), SPLITS)
def test_split_args(line: str, expected: list[Arg]) -> None:
    assert split_args(line) == expected


@pytest.mark.parametrize("line", ["", " ", "   \t  ", "\n"])
def test_blank_line_gives_no_args(line: str) -> None:
    assert split_args(line) == []


def test_arg_is_frozen() -> None:
    arg = split_args("a=1")[0]
    with pytest.raises(AttributeError):
        arg.name = "b"  # type: ignore[misc]


def test_order_preserved() -> None:
    names = [a.name for a in split_args("z=1 a=2 m=3")]
    assert names == ["z", "a", "m"]


def test_nothing_is_evaluated() -> None:
    # Would raise or have side effects if anything were evaluated.
    line = "context=__import__('os').system('false') q=1/0"
    assert split_args(line) == [
        plain("context", "__import__('os').system('false')"),
        plain("q", "1/0"),
    ]


# --------------------------------------------------------------------------
# split_args: errors
# --------------------------------------------------------------------------

ERRORS = [
    pytest.param(
        "question=What's the total? model=m",
        ["unterminated ' quote in question=What's the total? model=m", "column 14"],
        13,
        id="apostrophe-in-unquoted-value",
    ),
    pytest.param(
        'model=m question="never closed',
        ['unterminated " quote in question="never closed', "column 18"],
        17,
        id="unterminated-double",
    ),
    pytest.param(
        r'question="escaped \" is not a close',
        ['unterminated " quote in question='],
        9,
        id="escaped-quote-does-not-close",
    ),
    pytest.param(
        "x=df['a]",
        ["unterminated ' quote in x=df['a]"],
        5,
        id="unterminated-inside-brackets",
    ),
    pytest.param(
        "'oops",
        ["unterminated ' quote in 'oops", "column 1"],
        0,
        id="unterminated-before-any-arg",
    ),
    pytest.param(
        "a=f(x)) b=1",
        ["unbalanced closing ) in a=f(x)) b=1", "column 7"],
        6,
        id="unbalanced-paren",
    ),
    pytest.param(
        "question=smile :) model=m",
        ["unbalanced closing ) in question=smile :)", "quote the value"],
        16,
        id="unbalanced-in-unquoted-question",
    ),
    pytest.param(
        "a=] b=1",
        ["unbalanced closing ] in a=]"],
        2,
        id="unbalanced-bracket",
    ),
    pytest.param(
        "a=f(x] b=1",
        ["closing ] does not match ( opened at column 4", "in a=f(x]"],
        5,
        id="mismatched",
    ),
    pytest.param(
        "a=f(x b=2",
        ["unclosed ( in a=f(x b=2", "opened at column 4"],
        3,
        id="unclosed-paren",
    ),
    pytest.param(
        "a={'k': [1, 2}",
        ["closing } does not match [ opened at column 9"],
        13,
        id="mismatched-nested",
    ),
    pytest.param(
        "--model gpt-4o",
        ["'--model'", "arguments are written name=value", "model=..."],
        0,
        id="long-flag",
    ),
    pytest.param(
        "--model=gpt-4o question=hi",
        ["'--model=gpt-4o'", "arguments are written name=value", "model=..."],
        0,
        id="long-flag-with-eq",
    ),
    pytest.param(
        "-x",
        ["'-x'", "arguments are written name=value"],
        0,
        id="short-flag",
    ),
    pytest.param(
        "  -v context=df",
        ["'-v'", "arguments are written name=value"],
        2,
        id="short-flag-before-arg",
    ),
    pytest.param(
        "context=df --verbose",
        ["'--verbose'", "arguments are written name=value", "quote the value of context="],
        11,
        id="flag-after-arg",
    ),
    pytest.param(
        "context=df --max-iterations=5",
        ["'--max-iterations'", "max_iterations=..."],
        11,
        id="kebab-flag-after-arg",
    ),
    pytest.param(
        "context=df -n=5",
        ["'-n'", "arguments are written name=value"],
        11,
        id="short-flag-with-eq-after-arg",
    ),
    pytest.param(
        "foo bar=1",
        ["unexpected 'foo'", "arguments are written name=value"],
        0,
        id="leading-text",
    ),
    pytest.param(
        '"quoted words" bar=1',
        ["unexpected '\"quoted words\"'", "arguments are written name=value"],
        0,
        id="leading-quoted-text",
    ),
    pytest.param(
        "help",
        ["unexpected 'help'", "arguments are written name=value"],
        0,
        id="subcommand-is-not-args",
    ),
    pytest.param(
        "context = df",
        ["unexpected 'context'", "no spaces around '='"],
        0,
        id="spaces-around-eq",
    ),
    pytest.param(
        "a==1",
        ["'a==1'", "single '='"],
        0,
        id="double-eq-name",
    ),
    pytest.param(
        "=5",
        ["'=5' has no argument name", "arguments are written name=value"],
        0,
        id="missing-name",
    ),
    pytest.param(
        "1x=5",
        ["'1x' is not a valid argument name", "arguments are written name=value"],
        0,
        id="name-starts-with-digit",
    ),
    pytest.param(
        "max-iterations=5",
        ["'max-iterations' is not a valid argument name", "did you mean max_iterations=?"],
        0,
        id="kebab-name-first",
    ),
    pytest.param(
        "model=m max-iterations=5",
        ["'max-iterations' is not a valid argument name", "did you mean max_iterations=?"],
        8,
        id="kebab-name-later",
    ),
    pytest.param(
        "df.x=1",
        ["'df.x' is not a valid argument name"],
        0,
        id="dotted-name",
    ),
    pytest.param(
        "model=a model=b",
        ["model= given twice", "columns 1 and 9"],
        8,
        id="duplicate",
    ),
    pytest.param(
        "model=a question=q model=",
        ["model= given twice"],
        19,
        id="duplicate-empty",
    ),
]


@pytest.mark.parametrize(("line", "fragments", "position"), ERRORS)
def test_split_args_errors(line: str, fragments: list[str], position: int) -> None:
    with pytest.raises(ArgumentError) as info:
        split_args(line)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert info.value.position == position
    assert info.value.line == line


def test_argument_error_is_value_error() -> None:
    assert issubclass(ArgumentError, ValueError)
    with pytest.raises(ValueError):
        split_args("model=a model=b")


def test_argument_error_message_is_one_line() -> None:
    with pytest.raises(ArgumentError) as info:
        split_args("question=What's up")
    assert "\n" not in str(info.value)


def test_caret_points_at_problem() -> None:
    with pytest.raises(ArgumentError) as info:
        split_args("a=1 b=f(x))")
    assert info.value.caret() == "a=1 b=f(x))\n          ^"


def test_caret_empty_without_position() -> None:
    assert ArgumentError("x").caret() == ""


def test_long_value_is_shortened_in_message() -> None:
    line = "question=" + "word " * 40 + "it's"
    with pytest.raises(ArgumentError) as info:
        split_args(line)
    message = str(info.value)
    assert "unterminated ' quote in question=word" in message
    assert "..." in message
    assert len(message) < 200


# --------------------------------------------------------------------------
# split_subcommand
# --------------------------------------------------------------------------

SUBCOMMANDS = [
    pytest.param("help", ("help", []), id="help"),
    pytest.param("config", ("config", []), id="config"),
    pytest.param("  sessions  ", ("sessions", []), id="surrounding-space"),
    pytest.param("end mysession", ("end", ["mysession"]), id="end"),
    pytest.param("end  my-session", ("end", ["my-session"]), id="double-space"),
    pytest.param("replay path.jsonl", ("replay", ["path.jsonl"]), id="replay"),
    pytest.param(
        "replay 'runs/my run.jsonl' --last",
        ("replay", ["runs/my run.jsonl", "--last"]),
        id="shlex-quoted",
    ),
    pytest.param("foo bar=1", ("foo", ["bar=1"]), id="leading-word-then-arg"),
    pytest.param("help\tconfig", ("help", ["config"]), id="tab"),
    pytest.param("context=df", None, id="argument"),
    pytest.param("context=df question=hi", None, id="arguments"),
    pytest.param("a==1", None, id="double-eq"),
    pytest.param("context = df", None, id="spaced-eq-is-misspelt-arg"),
    pytest.param("", None, id="empty"),
    pytest.param("   ", None, id="blank"),
    pytest.param("--help", None, id="flag"),
    pytest.param("help()", None, id="not-identifier"),
    pytest.param("max-iterations 5", None, id="kebab-word"),
]


@pytest.mark.parametrize(("line", "expected"), SUBCOMMANDS)
def test_split_subcommand(line: str, expected: tuple[str, list[str]] | None) -> None:
    assert split_subcommand(line) == expected


def test_split_subcommand_unterminated_quote() -> None:
    with pytest.raises(ArgumentError, match="cannot split the arguments of 'replay'"):
        split_subcommand("replay 'unterminated")


# --------------------------------------------------------------------------
# close_matches
# --------------------------------------------------------------------------

NAMES = ["context", "question", "model", "max_iterations", "api_base", "_internal", "models"]


@pytest.mark.parametrize(
    ("word", "expected_first"),
    [
        ("modle", "model"),
        ("qestion", "question"),
        ("contxt", "context"),
        ("Model", "model"),
        ("max_iteration", "max_iterations"),
        ("max", "max_iterations"),
        ("api_bse", "api_base"),
    ],
)
def test_close_matches_finds(word: str, expected_first: str) -> None:
    assert close_matches(word, NAMES)[0] == expected_first


def test_close_matches_ignores_private() -> None:
    assert close_matches("_internal", NAMES) == []
    assert close_matches("internal", ["_internal"]) == []


def test_close_matches_limit_and_order() -> None:
    assert close_matches("model", NAMES) == ["model", "models"]
    assert close_matches("model", NAMES, n=1) == ["model"]
    assert close_matches("model", NAMES, n=0) == []


def test_close_matches_nothing_close() -> None:
    assert close_matches("zzzzzz", NAMES) == []
    assert close_matches("", NAMES) == []


def test_close_matches_accepts_iterables() -> None:
    assert close_matches("modle", (n for n in NAMES)) == ["model", "models"]
    assert close_matches("modle", {"model": 1}.keys()) == ["model"]


def test_close_matches_dedupes() -> None:
    assert close_matches("modle", ["model", "model"]) == ["model"]
