"""Splitting the ``%%rlm`` argument line into ``name=value`` pairs.

The magic line mixes two kinds of values that splitting on spaces (or
even ``shlex.split``) cannot tell apart:

* Python expressions that are evaluated later in the user's namespace, such as
  ``recent=df[df.year == 2024]`` or ``a=f(x, y=2)``.  They contain spaces,
  ``==`` and ``name=`` text of their own, but only inside brackets or around
  operators.
* Free text such as ``question=What is the total?`` that the user did not
  bother to quote.

So an argument is defined by where the *next* one starts: outside quotes, at
bracket depth 0, whitespace followed by an identifier that is immediately
followed by a single ``=`` (not ``==``).  Everything up to that point belongs
to the current value.  This module only splits and unquotes; it never
evaluates anything, and it does not know which names are valid.  The caller
decides that (and whether an empty value is acceptable), using
:func:`close_matches` for "did you mean" hints.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass
from typing import Iterable

__all__ = [
    "Arg",
    "ArgumentError",
    "close_matches",
    "split_args",
    "split_subcommand",
]

_QUOTES = "'\""
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}

# ``name=`` where the ``=`` is not the first half of ``==``.  ``<=``, ``>=``
# and ``!=`` can never match because the character before ``=`` must be an
# identifier character.
_NAME_EQ = re.compile(r"([^\W\d]\w*)=(?!=)")
# ``--flag=...`` / ``-x=...`` and a bare ``--flag``: users coming from
# command-line tools write these; left alone they would silently become part
# of the previous value.  A bare ``-x`` is *not* flagged mid-line because it is
# ordinary arithmetic (``n=total -x``).
_FLAG_ASSIGN = re.compile(r"--?[^\W\d][\w-]*=(?!=)")
_FLAG_BARE = re.compile(r"--[^\W\d][\w-]*(?=\s|$)")
# ``max-iterations=5``: not an identifier, so it is not a boundary, and it
# would otherwise vanish into the previous value.
_KEBAB_ASSIGN = re.compile(r"([^\W\d]\w*(?:-\w+)+)=(?!=)")
# One whitespace-delimited token, keeping quoted stretches together, for
# naming the offending token in messages.
_TOKEN = re.compile(r"""(?:"(?:\\.|[^"\\])*"?|'[^']*'?|[^\s'"]+)+""")

_SNIPPET_MAX = 60


class ArgumentError(ValueError):
    """The magic line cannot be split into ``name=value`` arguments.

    It is a :class:`ValueError` so callers that already catch bad input keep
    working.  ``position`` is the 0-based index in ``line`` the problem is at
    (``None`` when there is no single place to point at); the message repeats
    it as a 1-based column because that is what people count in an editor.
    """

    def __init__(
        self, message: str, *, line: str | None = None, position: int | None = None
    ) -> None:
        super().__init__(message)
        self.line = line
        self.position = position

    def caret(self) -> str:
        """Return the line with a ``^`` under the problem, or ``""``.

        Kept out of ``str(self)`` so the message stays one line for callers
        that embed it in their own sentence; a notebook front end can append
        this to show exactly where the parse failed.
        """
        if self.line is None or self.position is None:
            return ""
        line = self.line.replace("\t", " ").replace("\n", " ")
        return f"{line}\n{' ' * self.position}^"


@dataclass(frozen=True)
class Arg:
    """One ``name=value`` argument.

    ``text`` is kept even when the value was quoted because the caller treats
    the two cases differently: an unquoted value may be an expression to look
    up or evaluate (``df["a b"]``), while a quoted one is always a literal
    string.
    """

    name: str
    text: str  # raw value text as written, stripped
    value: str  # unquoted if the whole value is one quoted string, else == text
    quoted: bool


def _snippet(line: str, start: int) -> str:
    """Text from ``start`` to the end of the line, shortened for messages."""
    text = line[start:].strip()
    if len(text) > _SNIPPET_MAX:
        text = text[: _SNIPPET_MAX - 3].rstrip() + "..."
    return text


def _quote_end(text: str, start: int) -> int:
    """Index of the quote closing the one at ``start``, or -1 if none.

    Follows POSIX shell rules so the result agrees with :mod:`shlex`, which
    does the actual unquoting: a backslash inside double quotes protects the
    next character; inside single quotes nothing is special.
    """
    quote = text[start]
    i = start + 1
    while i < len(text):
        ch = text[i]
        if quote == '"' and ch == "\\":
            i += 2
            continue
        if ch == quote:
            return i
        i += 1
    return -1


def _is_whole_quoted(text: str) -> bool:
    """Whether ``text`` is made only of quoted stretches, with nothing between.

    Adjacent stretches (``'It''s'``, ``"a"'b'``) count as one quoted string,
    as they do for both the shell and Python: they form a single word with no
    unquoted character that could be part of an expression.
    """
    if not text or text[0] not in _QUOTES:
        return False
    i = 0
    while i < len(text):
        if text[i] not in _QUOTES:
            return False
        end = _quote_end(text, i)
        if end < 0:
            return False
        i = end + 1
    return True


def _unquote(text: str) -> str:
    """Unquote a value that :func:`_is_whole_quoted` accepted, via shlex."""
    parts = shlex.split(text)
    # A whole-quoted word has no unquoted whitespace, so shlex yields exactly
    # one part; anything else would mean the two quote scanners disagree.
    if len(parts) != 1:  # pragma: no cover - defensive
        raise ArgumentError(f"cannot unquote {text!r}")
    return parts[0]


def _flag_hint(token: str) -> str:
    """Suggest the ``name=`` spelling of a ``--flag`` style token, or ``""``."""
    name = token.lstrip("-").partition("=")[0].replace("-", "_")
    if name.isidentifier():
        return f"; write {name}=... instead"
    return ""


def _leading_error(line: str, start: int) -> ArgumentError:
    """Explain text at the start of the line that is not ``name=value``."""
    m = _TOKEN.match(line, start)
    token = m.group(0) if m else line[start:].strip()
    after = line[m.end() :].lstrip() if m else ""
    tail = "arguments are written name=value"
    if token.startswith("-"):
        msg = f"{token!r} looks like a command-line flag; {tail}{_flag_hint(token)}"
    elif "=" in token:
        name, _, rest = token.partition("=")
        if not name:
            msg = f"{token!r} has no argument name before '='; {tail}"
        elif rest.startswith("=") and name.isidentifier():
            msg = f"{token!r} uses '=='; {tail} with a single '='"
        else:
            hint = ""
            fixed = name.replace("-", "_")
            if fixed != name and fixed.isidentifier():
                hint = f" (did you mean {fixed}=?)"
            msg = (
                f"{name!r} is not a valid argument name{hint}; {tail} "
                "where name is a Python identifier"
            )
    elif after.startswith("=") and not after.startswith("=="):
        msg = f"unexpected {token!r}; {tail} with no spaces around '='"
    else:
        msg = f"unexpected {token!r}; {tail}"
    return ArgumentError(msg, line=line, position=start)


def split_args(line: str) -> list[Arg]:
    """Split a magic line into :class:`Arg` objects, in the order written.

    Raises :class:`ArgumentError` for unterminated quotes, unbalanced
    brackets, flag-style or otherwise invalid names, text before the first
    ``name=`` and repeated names.  A subcommand line (``help``, ``end x``) is
    an error here; check :func:`split_subcommand` first.

    An empty value (``question=`` at the end or before another argument) is
    returned as ``""``: whether that is acceptable depends on the argument,
    which only the caller knows.
    """
    n = len(line)
    # (index of the name, name, index just after '=')
    starts: list[tuple[int, str, int]] = []
    stack: list[tuple[str, int]] = []
    i = 0

    def current() -> str:
        """Where we are, for messages: the argument being read, if any."""
        return _snippet(line, starts[-1][0]) if starts else _snippet(line, 0)

    while i < n:
        ch = line[i]
        if ch in _QUOTES:
            end = _quote_end(line, i)
            if end < 0:
                other = '"' if ch == "'" else "'"
                raise ArgumentError(
                    f"unterminated {ch} quote in {current()} (opened at column "
                    f"{i + 1}); close it, or wrap the whole value in {other} quotes",
                    line=line,
                    position=i,
                )
            i = end + 1
            continue
        if ch in _OPENERS:
            stack.append((ch, i))
            i += 1
            continue
        if ch in _CLOSERS:
            if not stack:
                raise ArgumentError(
                    f"unbalanced closing {ch} in {current()} (at column {i + 1}); "
                    "remove it, or quote the value",
                    line=line,
                    position=i,
                )
            opener, pos = stack.pop()
            if _OPENERS[opener] != ch:
                raise ArgumentError(
                    f"closing {ch} does not match {opener} opened at column "
                    f"{pos + 1} in {current()} (at column {i + 1})",
                    line=line,
                    position=i,
                )
            i += 1
            continue
        at_word = not ch.isspace() and (i == 0 or line[i - 1].isspace())
        if at_word and not stack:
            m = _NAME_EQ.match(line, i)
            if m:
                name = m.group(1)
                if not name.isidentifier():
                    raise ArgumentError(
                        f"{name!r} is not a valid argument name; arguments are "
                        "written name=value where name is a Python identifier",
                        line=line,
                        position=i,
                    )
                starts.append((i, name, m.end()))
                i = m.end()
                continue
            if starts:
                # Only mid-line; at the start of the line the leading-text
                # check below gives the same kind of message.
                _check_stray_name(line, i, starts[-1][1])
        i += 1

    if stack:
        opener, pos = stack[-1]
        raise ArgumentError(
            f"unclosed {opener} in {current()} (opened at column {pos + 1}); "
            f"close it with {_OPENERS[opener]}, or quote the value",
            line=line,
            position=pos,
        )

    first = n - len(line.lstrip())
    if first == n:
        return []
    if not starts or starts[0][0] != first:
        raise _leading_error(line, first)

    args: list[Arg] = []
    seen: dict[str, int] = {}
    for k, (pos, name, value_start) in enumerate(starts):
        if name in seen:
            raise ArgumentError(
                f"{name}= given twice (at columns {seen[name] + 1} and {pos + 1}); "
                "give each argument once",
                line=line,
                position=pos,
            )
        seen[name] = pos
        end = starts[k + 1][0] if k + 1 < len(starts) else n
        text = line[value_start:end].strip()
        if _is_whole_quoted(text):
            args.append(Arg(name, text, _unquote(text), True))
        else:
            args.append(Arg(name, text, text, False))
    return args


def _check_stray_name(line: str, i: int, current: str) -> None:
    """Reject flag-like or kebab-case ``name=`` text inside a value.

    Neither is a boundary, so without this check ``context=df --verbose`` or
    ``a=1 max-iterations=5`` would silently become part of the value before
    them.  Quoting the value makes such text literal.
    """
    m = _FLAG_ASSIGN.match(line, i) or _FLAG_BARE.match(line, i)
    if m:
        token = m.group(0).rstrip("=")
        raise ArgumentError(
            f"{token!r} looks like a command-line flag; arguments are written "
            f"name=value{_flag_hint(token)}, or quote the value of {current}= if "
            "the text belongs to it",
            line=line,
            position=i,
        )
    m = _KEBAB_ASSIGN.match(line, i)
    if m:
        name = m.group(1)
        raise ArgumentError(
            f"{name!r} is not a valid argument name (did you mean "
            f"{name.replace('-', '_')}=?); arguments are written name=value "
            f"where name is a Python identifier, or quote the value of {current}= "
            "if the text belongs to it",
            line=line,
            position=i,
        )


def split_subcommand(line: str) -> tuple[str, list[str]] | None:
    """Recognise a subcommand line such as ``help`` or ``end my-session``.

    A line whose first word is an identifier not immediately followed by
    ``=`` is a subcommand: returns ``(word, shlex.split(rest))``.  Otherwise
    (including the empty line) returns ``None`` and the line is meant for
    :func:`split_args`.

    ``name = value`` (spaces around a single ``=``) also returns ``None``:
    it is a misspelt argument, not a subcommand called ``name``, and
    :func:`split_args` explains how to write it.  The rest is split with
    shlex because subcommand arguments are paths and session names, which
    the shell rules handle well; they are never evaluated.
    """
    m = re.match(r"\s*(\S+)", line)
    if not m:
        return None
    word = m.group(1)
    if not word.isidentifier():
        return None
    rest = line[m.end() :]
    stripped = rest.lstrip()
    if stripped.startswith("=") and not stripped.startswith("=="):
        return None
    try:
        parts = shlex.split(rest)
    except ValueError as exc:  # shlex: "No closing quotation" / "No escaped character"
        raise ArgumentError(
            f"cannot split the arguments of {word!r}: {exc}",
            line=line,
            position=m.end(),
        ) from exc
    return word, parts


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Suggest up to ``n`` candidates resembling ``word``, best first.

    Names starting with ``_`` are private and never suggested.  Matching
    ignores case (``Model`` finds ``model``), and when difflib finds fewer
    than ``n`` matches, candidates that ``word`` is a prefix of are added
    (``max`` finds ``max_iterations``, which difflib's ratio scores too low).
    """
    if n <= 0 or not word:
        return []
    names: list[str] = []
    for c in candidates:
        if c and not c.startswith("_") and c not in names:
            names.append(c)
    folded: dict[str, str] = {}
    for c in names:
        folded.setdefault(c.casefold(), c)
    key = word.casefold()
    found = [folded[f] for f in difflib.get_close_matches(key, list(folded), n=n)]
    if len(found) < n and len(key) >= 2:
        for c in sorted(names):
            if len(found) >= n:
                break
            if c.casefold().startswith(key) and c not in found:
                found.append(c)
    return found
