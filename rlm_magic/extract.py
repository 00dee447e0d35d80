"""Parse a root-model reply into executable code blocks and a final-answer directive.

The root LLM answers in markdown: it writes Python in fenced blocks for us to
run in the REPL, and it ends the run either by calling ``SUBMIT(...)`` from code
(handled elsewhere) or by writing ``FINAL(answer)`` / ``FINAL_VAR(name)`` in its
prose.  This module only *reads* the reply; it never executes anything.

Why this is its own, careful module: the obvious implementations go wrong in
ways that silently corrupt a run.

* A regex over the whole reply finds ``FINAL(`` mid-sentence ("once done I
  will call FINAL(x)") or inside code, and ends the run early with garbage.
  Here a directive counts only at the start of a prose line, never inside any
  fenced block, and its argument is delimited by real parenthesis matching
  that understands Python string literals.
* Accepting only ```` ```repl ```` fences throws away the code of models that
  write ```` ```python ```` or a bare fence.  Here ``repl``, ``python``, ``py``,
  ``python3``, ``ipython`` and bare fences are code; every other language
  (``output``, ``text``, ``json``, ``bash``...) is skipped whole.
* Models routinely "predict" the result of their code right after it, as an
  ```` ```output ```` block, a bare fence under "Output:", or plain prose.  Such
  text must never be executed and must never re-enter the conversation as if
  it were real REPL output; :meth:`Parsed.history_text` cuts it off.

Everything is stdlib-only and purely functional, so it is cheap to call on
every reply and easy to test.
"""

from __future__ import annotations

import ast
import keyword
import re
import textwrap
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["CODE_LANGS", "CodeBlock", "Final", "Parsed", "parse_reply"]

#: Info-string languages whose fenced content is code for the REPL.  The empty
#: string is a bare fence.  Anything else is treated as non-code and skipped,
#: because running e.g. a ``bash`` or ``output`` block as Python is never right.
CODE_LANGS: frozenset[str] = frozenset({"repl", "python", "py", "python3", "ipython", ""})


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block of code the model wants run.

    ``start``/``end`` are offsets into the original reply so callers can map a
    block back to the text (``reply[start:end]`` is the whole fenced block,
    fence lines included, without the final line terminator).
    """

    code: str  # the code, dedented, without the fence lines
    lang: str  # "repl", "python", "py", "python3", "ipython" or "" (bare fence), lowercased
    start: int  # offset where the opening fence line begins
    end: int  # offset just after the closing fence line (end of text if unclosed)


@dataclass(frozen=True)
class Final:
    """A ``FINAL(...)`` or ``FINAL_VAR(...)`` directive found in the prose.

    ``after_code`` matters to the caller: a directive written after code in the
    same reply was written *before* that code ran, so the model could not have
    seen its output; the caller may want to run the code first, or distrust
    the answer.
    """

    kind: str  # "FINAL" or "FINAL_VAR"
    value: str  # FINAL: answer text (string literal decoded); FINAL_VAR: variable name
    start: int  # offset of the FINAL token in the reply
    after_code: bool  # True if any code block ends before this directive


@dataclass(frozen=True)
class Parsed:
    """The result of :func:`parse_reply`."""

    text: str  # the reply ('' for None)
    blocks: tuple[CodeBlock, ...]
    final: Final | None

    @property
    def has_code(self) -> bool:
        """True when the reply contains at least one non-empty code block."""
        return bool(self.blocks)

    def history_text(self) -> str:
        """Return the part of the reply worth keeping in the conversation.

        That is everything up to the end of the last code block, so anything
        the model wrote after its code -- typically invented "output" -- never
        re-enters the conversation and cannot be mistaken later for real REPL
        output.  With no code the whole reply is kept.  A FINAL directive
        standing after the last code block is kept too (its full line(s) are
        appended), so the history still records that the model answered.
        """
        if not self.blocks:
            return self.text
        last_end = self.blocks[-1].end
        head = self.text[:last_end]
        final = self.final
        if final is None or final.start < last_end:
            return head
        line_start, line_end = _directive_lines(self.text, final.start)
        return head + "\n" + self.text[line_start:line_end]


# --------------------------------------------------------------------------
# Line and fence scanning
# --------------------------------------------------------------------------

#: One line and its terminator.  ``\r\n``, ``\n`` and a lone ``\r`` all end a
#: line; unlike ``str.splitlines`` this does not split on form feeds, U+2028
#: and friends, which can legitimately occur inside code.
_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")

#: An opening fence line: optional indentation (any amount -- models indent
#: fences inside list items and we would rather accept than lose code), three
#: or more backticks or tildes, then an optional info string.
_OPEN_FENCE_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


class _Line(NamedTuple):
    start: int  # offset of the first character of the line
    content_end: int  # offset just after the content (before the terminator)
    content: str  # the line without its terminator


class _Fence(NamedTuple):
    char: str
    count: int
    indent: int
    lang: str


class _Region(NamedTuple):
    """A fenced region of the reply, code or not."""

    start: int
    end: int
    lang: str
    accepted: bool  # lang is a code language
    indent: int  # width of the opening fence's indentation
    body: tuple[str, ...]  # content lines, without terminators


def _split_lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    for m in _LINE_RE.finditer(text):
        raw = m.group(0)
        if not raw:
            continue
        content = raw.rstrip("\r\n")
        lines.append(_Line(m.start(), m.start() + len(content), content))
    return lines


def _parse_open_fence(line: str) -> _Fence | None:
    """Recognise an opening fence line and extract its language.

    As in CommonMark, a backtick fence's info string may not contain a
    backtick, so an inline span such as ```` ```x``` ```` on one line is not a
    fence.  The language is the first word of the info string, lowercased,
    with pandoc-style decoration (``{.python}``, ``{python}``) removed.
    """
    m = _OPEN_FENCE_RE.match(line)
    if m is None:
        return None
    fence = m.group("fence")
    info = m.group("info").strip()
    if fence[0] == "`" and "`" in info:
        return None
    words = info.split()
    lang = words[0] if words else ""
    lang = lang.strip("{}").lstrip(".").lower()
    return _Fence(fence[0], len(fence), len(m.group("indent").expandtabs(4)), lang)


def _is_close_fence(line: str, fence: _Fence) -> bool:
    """A closing fence: same character, at least as many, nothing else."""
    stripped = line.strip()
    return (
        len(stripped) >= fence.count
        and stripped == fence.char * len(stripped)
    )


def _scan_regions(text: str, lines: list[_Line]) -> list[_Region]:
    """Find every fenced region, in order.

    Non-code fences are scanned exactly like code fences so that their
    content (which may contain fence-like lines, ``FINAL(`` or anything else)
    is consumed and never looked at again.

    One recovery heuristic applies inside *code* fences only: a line that is
    an opening fence with the same fence string and an explicit code language
    (e.g. a second ```` ```python ```` while a ```` ``` ```` block is open) can
    never be valid Python at that position, so it is taken to mean the model
    forgot to close the previous block: that block ends and a new one begins.
    """
    regions: list[_Region] = []
    i = 0
    n = len(lines)
    while i < n:
        fence = _parse_open_fence(lines[i].content)
        if fence is None:
            i += 1
            continue
        accepted = fence.lang in CODE_LANGS
        j = i + 1
        end: int | None = None
        next_i: int | None = None
        while j < n:
            content = lines[j].content
            if _is_close_fence(content, fence):
                end = lines[j].content_end
                next_i = j + 1
                break
            if accepted:
                other = _parse_open_fence(content)
                if (
                    other is not None
                    and other.lang
                    and other.lang in CODE_LANGS
                    and other.char == fence.char
                    and other.count == fence.count
                ):
                    end = lines[j - 1].content_end
                    next_i = j
                    break
            j += 1
        if end is None or next_i is None:
            # Unclosed: the content runs to the end of the text.  For code this
            # is usually a reply cut off by the token limit, and the partial
            # code is still the model's intent; for other languages the region
            # still hides its content, it just yields no code.
            end = len(text)
            next_i = n
        body = tuple(line.content for line in lines[i + 1 : min(j, n)])
        regions.append(_Region(lines[i].start, end, fence.lang, accepted, fence.indent, body))
        i = next_i
    return regions


def _block_code(region: _Region) -> str:
    """Strip the fence's own indentation (as CommonMark does), then dedent.

    Removing the fence indentation first keeps code in an indented list item
    correct even when a line (say inside a multi-line string) is less
    indented than the rest, where a plain ``textwrap.dedent`` would give up.
    """
    out: list[str] = []
    for line in region.body:
        expanded = line.expandtabs(4) if region.indent and line[:1] == "\t" else line
        k = 0
        while k < region.indent and k < len(expanded) and expanded[k] == " ":
            k += 1
        out.append(expanded[k:])
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return textwrap.dedent("\n".join(out))


#: The text between a code block and a following bare fence that marks that
#: fence as the model's invented output rather than more code.  Matched after
#: markdown decoration (``*_`#>``) is removed and whitespace collapsed.
_OUTPUT_LABEL_RE = re.compile(
    r"""^(?:
        (?:(?:the|its|my|repl|python|execution|expected|example|sample|console
            |program|code|cell|actual)\s+)*
        (?:output|outputs|result|results|stdout|stderr|response
            |out(?:\s*\[\s*\d*\s*\])?)
      | (?:this|which|that|it)\s+(?:prints|outputs|returns|gives|yields|shows|produces|displays)
      | (?:prints|returns|gives|yields|produces|displays)
    )\s*:?$""",
    re.IGNORECASE | re.VERBOSE,
)


def _looks_like_output_gap(gap: str) -> bool:
    """True if ``gap`` (text between two fences) is empty or an output label."""
    stripped = gap.strip()
    if not stripped:
        return True
    if "\n" in stripped or "\r" in stripped or len(stripped) > 60:
        return False
    label = " ".join(re.sub(r"[*_`#>]", " ", stripped).split())
    return bool(_OUTPUT_LABEL_RE.match(label))


def _code_regions(text: str, regions: list[_Region]) -> list[_Region]:
    """Select the regions that are code, applying the fake-output heuristic.

    Heuristic: a *bare* fence that immediately follows a code fence, with
    only whitespace or a short output label ("Output:", "Result:", "REPL
    output:", "Out[3]:", "This prints:"...; case-insensitive, markdown
    emphasis allowed) between them, is the model pretending to show what its
    code printed, not code.  Real code the model wants run in two pieces comes
    with a language tag or with explanatory prose in between, so the cost of
    this rule is small; the cost of executing invented output is a confusing
    error, or worse, a run that "succeeds" on made-up data.
    """
    code: list[_Region] = []
    prev: _Region | None = None
    prev_is_code = False
    for region in regions:
        is_code = region.accepted
        if (
            is_code
            and region.lang == ""
            and prev is not None
            and prev_is_code
            and _looks_like_output_gap(text[prev.end : region.start])
        ):
            is_code = False
        if is_code:
            code.append(region)
        prev, prev_is_code = region, is_code
    return code


# --------------------------------------------------------------------------
# FINAL directives
# --------------------------------------------------------------------------

#: A directive at the start of a prose line.  Allowed before the token:
#: indentation, blockquote markers (``> ``), a list bullet, and markdown
#: emphasis or code-span openers (``**``, ``_``, `````).  Anything else --
#: in particular any word -- means the token is mid-sentence and ignored.
#: (Strikethrough ``~~FINAL(x)~~`` is deliberately not accepted: it reads as
#: a retracted answer.)
_DIRECTIVE_RE = re.compile(
    r"^[ \t]*(?:>[ \t]*)*(?:[-+*][ \t]+)?(?:[*_`]{1,4}[ \t]*){0,2}(?P<kind>FINAL_VAR|FINAL)\(",
    re.MULTILINE,
)

#: Total characters the argument scanner may examine per reply (see
#: :func:`_find_directive`); keeps adversarial replies linear-ish.
_SCAN_BUDGET = 2_000_000

_STRING_PREFIXES = frozenset({"r", "u", "b", "f", "br", "rb", "fr", "rf"})


def _is_ident_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _opens_string(text: str, k: int, arg_start: int) -> bool:
    """Could the quote at ``text[k]`` start a Python string literal?

    Only if it is not glued to a preceding word, unless that word is a string
    prefix (``r``, ``b``, ``f``, ``rb``...).  This is what keeps the
    apostrophe in prose answers like ``FINAL(It's 42)`` from being read as
    the start of a string that swallows the closing parenthesis.
    """
    j = k
    while j > arg_start and _is_ident_char(text[j - 1]):
        j -= 1
    word = text[j:k]
    return not word or word.lower() in _STRING_PREFIXES


def _string_end(text: str, k: int, limit: int) -> int | None:
    """Offset just past the string literal starting at ``k``, or None.

    Single-quoted strings cannot span lines in Python, so hitting a line end
    means this quote was not a string opener after all (the caller then
    treats it as a plain character).
    """
    q = text[k]
    triple = text.startswith(q * 3, k)
    p = k + (3 if triple else 1)
    while p < limit:
        c = text[p]
        if c == "\\":
            p += 2
            continue
        if triple:
            if text.startswith(q * 3, p) and p + 3 <= limit:
                return p + 3
        elif c == q:
            return p + 1
        elif c in "\r\n":
            return None
        p += 1
    return None


def _match_paren(text: str, open_idx: int, limit: int) -> int | None:
    """Index of the parenthesis closing ``text[open_idx]``, or None.

    First pass is Python-aware (parentheses inside string literals do not
    count, so ``FINAL("a ) b")`` works).  If that finds no match -- prose full
    of stray quotes can fool any string detection -- a second pass counts
    parentheses only, which is what a human reader would do.
    """
    depth = 0
    k = open_idx
    while k < limit:
        c = text[k]
        if c in "'\"" and _opens_string(text, k, open_idx + 1):
            end = _string_end(text, k, limit)
            if end is not None:
                k = end
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return k
        k += 1
    depth = 0
    for k in range(open_idx, limit):
        c = text[k]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return k
    return None


def _final_value(raw: str) -> str | None:
    """Decode a FINAL argument; None if it is empty (not a directive).

    A single Python string literal (any quoting, escapes, implicit
    concatenation) yields its value; anything else -- prose, a number, an
    f-string -- yields the raw text, stripped.
    """
    stripped = raw.strip()
    if not stripped:
        return None
    try:
        value = ast.literal_eval("(\n" + stripped + "\n)")
    except Exception:  # SyntaxError, ValueError, and pathological inputs alike
        return stripped
    return value if isinstance(value, str) else stripped


def _final_var_value(raw: str) -> str | None:
    """Decode a FINAL_VAR argument: a bare or quoted identifier, else None."""
    name = raw.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"`":
        name = name[1:-1].strip()
    if name.isidentifier() and not keyword.iskeyword(name):
        return name
    return None


class _Directive(NamedTuple):
    kind: str
    value: str
    start: int
    close: int  # index of the closing parenthesis


def _find_directive(text: str, segments: list[tuple[int, int]]) -> _Directive | None:
    """First valid directive in the prose segments, in reply order.

    Candidates that turn out invalid (no matching parenthesis, empty
    argument, FINAL_VAR of a non-identifier) are skipped and the search goes
    on.  The argument may span lines but never runs into a fenced block.

    Each failed candidate costs a scan to the end of its prose segment, so a
    reply with thousands of unmatched ``FINAL(`` lines would be quadratic;
    a total scanning budget (:data:`_SCAN_BUDGET` characters) bounds that.
    No sensible reply comes near it.
    """
    # A lone "\r" ends a line too; map it to "\n" (same length, so offsets
    # are unchanged) so that "^" in the pattern sees those line starts.
    search_text = re.sub(r"\r(?!\n)", "\n", text)
    budget = _SCAN_BUDGET
    for seg_start, seg_end in segments:
        for m in _DIRECTIVE_RE.finditer(search_text, seg_start, seg_end):
            if budget <= 0:
                return None
            open_idx = m.end() - 1
            limit = min(seg_end, open_idx + budget // 2)
            close = _match_paren(text, open_idx, limit)
            if close is None:
                budget -= 2 * (limit - open_idx)  # both passes ran to the limit
                continue
            budget -= close - open_idx
            raw = text[open_idx + 1 : close].replace("\r\n", "\n").replace("\r", "\n")
            kind = m.group("kind")
            value = _final_value(raw) if kind == "FINAL" else _final_var_value(raw)
            if value is None:
                continue
            return _Directive(kind, value, m.start("kind"), close)
    return None


def _prose_segments(text: str, regions: list[_Region]) -> list[tuple[int, int]]:
    segments: list[tuple[int, int]] = []
    pos = 0
    for region in regions:
        if region.start > pos:
            segments.append((pos, region.start))
        pos = max(pos, region.end)
    if pos < len(text):
        segments.append((pos, len(text)))
    return segments


def _analyse(text: str) -> tuple[tuple[CodeBlock, ...], _Directive | None]:
    lines = _split_lines(text)
    regions = _scan_regions(text, lines)
    blocks: list[CodeBlock] = []
    for region in _code_regions(text, regions):
        code = _block_code(region)
        if code.strip():
            blocks.append(CodeBlock(code, region.lang, region.start, region.end))
    return tuple(blocks), _find_directive(text, _prose_segments(text, regions))


def _line_bounds_start(text: str, pos: int) -> int:
    return max(text.rfind("\n", 0, pos), text.rfind("\r", 0, pos)) + 1


def _line_bounds_end(text: str, pos: int) -> int:
    ends = [i for i in (text.find("\n", pos), text.find("\r", pos)) if i != -1]
    return min(ends) if ends else len(text)


def _directive_lines(text: str, start: int) -> tuple[int, int]:
    """Span of the whole line(s) holding the directive whose token is at ``start``.

    Re-parses to find the closing parenthesis exactly as :func:`parse_reply`
    did; if the Parsed was built by hand and disagrees, falls back to the
    directive's single line.
    """
    directive = _analyse(text)[1]
    close = directive.close if directive is not None and directive.start == start else start
    return _line_bounds_start(text, start), _line_bounds_end(text, close)


def parse_reply(text: str | None) -> Parsed:
    """Parse a model reply into code blocks and the first FINAL directive.

    ``None`` or ``''`` gives ``Parsed('', (), None)``.  Never raises on any
    string input.
    """
    if not text:
        return Parsed("", (), None)
    blocks, directive = _analyse(text)
    final: Final | None = None
    if directive is not None:
        after_code = any(block.end <= directive.start for block in blocks)
        final = Final(directive.kind, directive.value, directive.start, after_code)
    return Parsed(text, blocks, final)
