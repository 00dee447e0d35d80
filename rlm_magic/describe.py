"""Bounded, deterministic METADATA descriptions of bound notebook values.

The root LLM of a Recursive Language Model never sees the values a user binds
(gigabyte strings, ten-million-row frames, ...); it sees only the text this
module produces, and writes code to explore the real value from there.  Three
properties follow from that role and shape everything below:

* **Bounded size.**  The description goes into every prompt, so its length must
  not grow with the value: a 1 GB string and a 10-byte one give descriptions of
  about the same length, only the numbers differ.  Every list of things (columns,
  keys, fields, elements, attributes) is capped, and every rendered value is
  truncated, with the text saying what was left out so the model knows to look.
* **Fast on huge values.**  Describing happens before the model can do anything,
  so nothing here may scan a value element by element in Python.  Only O(1)
  metadata, small heads/samples, and a few C-speed passes (``str.count``) are used;
  in particular no ``memory_usage(deep=True)``, no ``DataFrame.describe()``, no
  ``str(df)`` of the whole frame, no full ``repr()`` of containers.
* **Deterministic.**  The same value gives the same text (no memory addresses,
  no timings), so prompts are reproducible and cacheable.

pandas, numpy and pyarrow are never imported here: a value can only be one of
their types if its library is already loaded, so they are looked up in
``sys.modules``.  Describing a ``str`` therefore costs no heavy import.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from types import ModuleType
from typing import Any

__all__ = ["describe", "describe_all", "short_type", "human_bytes"]

# Caps.  They bound the description; each is reported when it bites.
_MAX_COLUMNS_LISTED = 40  # DataFrame columns given their own line
_HEAD_TABLE_COLUMNS = 12  # columns in the rendered head() table
_HEAD_ROWS = 3  # rows in head() renders and per-column examples
_HEAD_TABLE_LINES = 10  # lines of a rendered table kept
_MAX_COLWIDTH = 40  # pandas max_colwidth for rendered tables
_EXAMPLE_CHARS = 30  # one example cell value
_NAME_CHARS = 60  # one column / key / field name
_LINE_CHARS = 240  # any single line built from value content
_MAX_DTYPES_LISTED = 10  # distinct dtypes in the dtype summary
_SAMPLE = 100  # elements / values sampled for type distributions
_PREVIEW_ITEMS = 3  # elements / items previewed
_MAX_KEYS_LISTED = 20  # dict keys listed
_KEY_CHARS = 40  # one listed dict key
_MAX_FIELDS_LISTED = 40  # pyarrow schema fields listed
_MAX_ATTRS_LISTED = 20  # instance attributes listed for unknown objects
_SORT_SETS_UP_TO = 10_000  # sets this small are sorted so their preview is stable
_SERIES_HEAD = 5  # values shown for a Series / Index / Arrow array
_ARRAY_HEAD_1D = 10  # values shown for a 1-d ndarray
_ARRAY_HEAD_ROWS = 3  # leading-axis entries shown for an n-d ndarray
_ARRAY_HEAD_LAST = 8  # last-axis entries shown for an n-d ndarray
_MAX_DEPTH = 3  # nesting depth rendered in bounded reprs
_SMALL_ARRAY = 16  # ndarrays this small are shown inline inside containers
_HUGE_INT_BITS = 10_000  # ints wider than this are summarised, not printed

_ADDRESS_RE = re.compile(r" at 0x[0-9A-Fa-f]+")
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def human_bytes(n: int) -> str:
    """Format a byte count with decimal (SI) units, e.g. ``1.5 MB``.

    Decimal rather than binary units because the figure is read by a language
    model and by people, for whom "MB" most often means 10**6; one decimal place
    is enough to compare sizes without making descriptions noisy.
    """
    n = int(n)
    sign = "-" if n < 0 else ""
    magnitude = abs(n)
    if magnitude < 1000:
        return f"{sign}{magnitude} B"
    value = float(magnitude)
    for unit in _UNITS[1:]:
        value /= 1000.0
        if round(value, 1) < 1000.0 or unit == _UNITS[-1]:
            return f"{sign}{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def describe(name: str, value: object, *, preview_chars: int = 400) -> str:
    """Describe ``value``, bound as ``name``, for the root LLM's prompt.

    The first line is always ``name: <type>``; the lines after it depend on the
    type (see the module docstring for the guarantees).  ``preview_chars`` sets
    how much of a string / repr is shown; everything else has fixed caps so that
    the result's length does not depend on the value's size.  Never raises: if a
    type-specific description fails (a broken ``__len__``, an exotic subclass),
    a generic one is given instead, so one odd value cannot break a run.
    """
    preview_chars = max(0, int(preview_chars))
    header = f"{name}: {_type_name(value)}"
    kind = _kind(value)
    try:
        body = _DESCRIBERS[kind](value, preview_chars)
    except Exception as exc:  # noqa: BLE001 - a description must never fail
        body = [f"(detailed {kind} description failed: {type(exc).__name__}; generic description follows)"]
        body += _describe_other(value, preview_chars)
    return "\n".join([header, *body])


def describe_all(bindings: Mapping[str, object], *, preview_chars: int = 400) -> str:
    """Describe every binding, in the mapping's order, separated by blank lines.

    The mapping's order is kept (rather than sorted) because it is the order in
    which the user bound the values, usually the most meaningful one.
    """
    return "\n\n".join(describe(name, value, preview_chars=preview_chars) for name, value in bindings.items())


def short_type(value: object) -> str:
    """One line naming the type and its headline size, for views and notices.

    E.g. ``pandas.DataFrame (1,000,000 × 4)``, ``str (12,345 chars)``,
    ``list (10 items)``, ``dict (3 keys)``, ``int``.  O(1) and never raises.
    """
    try:
        name = _type_name(value)
    except Exception:  # noqa: BLE001
        name = "object"
    try:
        detail = _SHORT_DETAILS[_kind(value)](value)
    except Exception:  # noqa: BLE001
        detail = None
    text = f"{name} ({detail})" if detail else name
    return _one_line(text)


# --------------------------------------------------------------------------- #
# Type naming and classification
# --------------------------------------------------------------------------- #


def _type_name(value: object) -> str:
    """Readable, stable type name: ``str``, ``pandas.DataFrame``, ``pyarrow.Table``.

    Builtins and classes from ``__main__`` (notebook cells) are shown bare.  A
    class is shown under its top-level package when that package exports it
    (``pandas.core.frame.DataFrame`` -> ``pandas.DataFrame``), because that is
    the name the model would use in code; otherwise its full module path.
    """
    t = type(value)
    try:
        module = t.__module__
        qualname = t.__qualname__
    except Exception:  # noqa: BLE001
        return str(getattr(t, "__name__", "object"))
    if not isinstance(module, str) or module in ("", "builtins", "__main__"):
        return str(qualname)
    top = module.split(".", 1)[0]
    if top != module:
        package = sys.modules.get(top)
        try:
            if package is not None and getattr(package, t.__name__, None) is t:
                return f"{top}.{t.__name__}"
        except Exception:  # noqa: BLE001 - lazy module __getattr__ may fail
            pass
    return f"{module}.{qualname}"


def _loaded_class(module_name: str, attr: str) -> type | None:
    """Return ``module_name.attr`` if that module is already imported, else None.

    This is the lazy-detection primitive: a value cannot be a DataFrame unless
    pandas is loaded, so an absent module means "not this type" without an import.
    """
    module = sys.modules.get(module_name)
    if module is None:
        return None
    try:
        cls = getattr(module, attr, None)
    except Exception:  # noqa: BLE001 - partially initialised module
        return None
    return cls if isinstance(cls, type) else None


def _isinstance_of(value: object, module_name: str, *attrs: str) -> bool:
    """``isinstance`` against classes of an already-loaded module (see above)."""
    for attr in attrs:
        cls = _loaded_class(module_name, attr)
        if cls is not None and isinstance(value, cls):
            return True
    return False


def _kind(value: object) -> str:
    """Classify ``value`` into one of the describer keys.  Never raises."""
    try:
        return _kind_unguarded(value)
    except Exception:  # noqa: BLE001 - hostile __class__ / __instancecheck__
        return "other"


def _kind_unguarded(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, (float, complex)):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if _isinstance_of(value, "pandas", "DataFrame"):
        return "dataframe"
    if _isinstance_of(value, "pandas", "Series"):
        return "series"
    if _isinstance_of(value, "pandas", "Index"):
        return "index"
    if _isinstance_of(value, "numpy", "ndarray"):
        return "ndarray"
    if _isinstance_of(value, "numpy", "generic"):
        return "npscalar"
    if _isinstance_of(value, "pyarrow", "Table", "RecordBatch"):
        return "arrow_table"
    if _isinstance_of(value, "pyarrow", "Array", "ChunkedArray"):
        return "arrow_array"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple, set, frozenset, deque)):
        return "collection"
    return "other"


# --------------------------------------------------------------------------- #
# Small formatting helpers
# --------------------------------------------------------------------------- #


def _plural(n: int, word: str, plural: str | None = None) -> str:
    """``1 line`` / ``2 lines`` with thousands separators."""
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def _one_line(text: str) -> str:
    """Collapse line breaks so a fragment cannot break the line structure."""
    return text.replace("\r", " ").replace("\n", " ")


def _truncate(text: str, limit: int) -> str:
    """Hard cap on a rendered fragment, marking the cut with ``...``."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 3)] + "..."


def _strip_addresses(text: str) -> str:
    """Drop ``at 0x7f...`` from default reprs: addresses change every run."""
    return _ADDRESS_RE.sub("", text)


def _safe_repr(obj: object) -> str:
    """``repr()`` that never raises and never contains a memory address.

    User objects may have a ``__repr__`` that raises or returns a non-str; the
    description should say so rather than fail.
    """
    try:
        text = repr(obj)
        if not isinstance(text, str):
            raise TypeError("__repr__ returned non-string")
    except Exception as exc:  # noqa: BLE001
        return f"<{_type_name(obj)} object; repr() raised {type(exc).__name__}>"
    return _strip_addresses(text)


def _safe_str(obj: object) -> str:
    """``str()`` with the same guarantees as :func:`_safe_repr`."""
    try:
        text = str(obj)
        if not isinstance(text, str):
            raise TypeError("__str__ returned non-string")
    except Exception:  # noqa: BLE001
        return _safe_repr(obj)
    return _strip_addresses(text)


def _safe_len(value: object) -> int | None:
    """``len(value)`` if the type defines it and it works, else None."""
    if not hasattr(type(value), "__len__"):
        return None
    try:
        n = len(value)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001
        return None
    return n if isinstance(n, int) else None


def _int_text(value: int, limit: int) -> str:
    """Render an int, summarising ones too wide to convert cheaply.

    ``str()`` of an int is quadratic in its digit count and refuses more than
    4,300 digits by default, so very wide ints are described by their size.
    """
    bits = value.bit_length()
    if bits > _HUGE_INT_BITS:
        digits = int(bits * math.log10(2)) + 1
        sign = "negative " if value < 0 else ""
        return f"<{sign}int with about {digits:,} digits>"
    return _truncate(_safe_repr(value), max(limit, 20))


def _brepr(obj: object, limit: int, depth: int = 0) -> str:
    """A ``repr`` bounded both in output length and in work done.

    Unlike ``repr()`` (and ``reprlib``, which sorts whole dicts and sets), only
    as many elements as can fit in ``limit`` characters are visited, nested
    containers are cut at a fixed depth, and large pandas/numpy/pyarrow objects
    are named by :func:`short_type` instead of rendered.
    """
    limit = max(limit, 8)
    return _truncate(_brepr_inner(obj, limit, depth), limit + 24)


def _brepr_inner(obj: object, limit: int, depth: int) -> str:
    kind = _kind(obj)
    if kind == "int" and type(obj) is int:
        return _int_text(obj, limit)  # type: ignore[arg-type]
    if kind == "str" and isinstance(obj, str):
        if len(obj) <= limit:
            return str.__repr__(obj[:])
        head = str.__repr__(obj[:limit])
        return f"{head[:-1]}...{head[-1]} ({len(obj):,} chars)"
    if kind == "bytes" and isinstance(obj, (bytes, bytearray)):
        head = repr(bytes(obj[: max(1, limit // 2)]))
        if len(obj) * 2 <= limit:
            return head
        return f"{head[:-1]}...{head[-1]} ({len(obj):,} bytes)"
    if kind in ("dataframe", "series", "index", "arrow_table", "arrow_array"):
        return f"<{short_type(obj)}>"
    if kind == "npscalar" or (kind == "float" and type(obj) not in (float, complex)):
        return _safe_str(obj)  # np.int64(1) -> "1": readable, and the repr adds nothing
    if kind == "ndarray":
        size = getattr(obj, "size", _SMALL_ARRAY + 1)
        if isinstance(size, int) and size <= _SMALL_ARRAY and depth < _MAX_DEPTH:
            return f"array({_brepr_inner(obj.tolist(), limit, depth + 1)})"  # type: ignore[attr-defined]
        return f"<{short_type(obj)}>"
    if isinstance(obj, dict):
        if depth >= _MAX_DEPTH:
            return "{...}" if obj else "{}"
        parts: list[str] = []
        used = 0
        for key, val in islice(obj.items(), limit // 4 + 1):
            if used >= limit:
                break
            k = _brepr(key, max(8, (limit - used) // 2), depth + 1)
            v = _brepr(val, max(8, limit - used - len(k) - 2), depth + 1)
            parts.append(f"{k}: {v}")
            used += len(parts[-1]) + 2
        if len(parts) < len(obj):
            parts.append("...")
        return "{" + ", ".join(parts) + "}"
    if isinstance(obj, (list, tuple, set, frozenset, deque)):
        return _brepr_collection(obj, limit, depth)
    return _safe_repr(obj)


def _brepr_collection(obj: list | tuple | set | frozenset | deque, limit: int, depth: int) -> str:
    """Bounded repr of a list/tuple/set/deque (helper of :func:`_brepr`)."""
    if isinstance(obj, tuple):
        opening, closing = "(", ")"
    elif isinstance(obj, frozenset):
        opening, closing = "frozenset({", "})"
    elif isinstance(obj, (set, frozenset)):
        opening, closing = "{", "}"
    elif isinstance(obj, deque):
        opening, closing = "deque([", "])"
    else:
        opening, closing = "[", "]"
    if not obj:
        return "set()" if isinstance(obj, set) and not isinstance(obj, frozenset) else opening + closing
    if depth >= _MAX_DEPTH:
        return opening + "..." + closing
    items: Iterable[Any] = obj
    if isinstance(obj, (set, frozenset)):
        items = _ordered_set(obj, 1000)
    parts: list[str] = []
    used = 0
    for item in islice(items, limit // 3 + 1):
        if used >= limit:
            break
        parts.append(_brepr(item, max(8, limit - used), depth + 1))
        used += len(parts[-1]) + 2
    if len(parts) < len(obj):
        parts.append("...")
    elif isinstance(obj, tuple) and len(obj) == 1:
        return opening + parts[0] + "," + closing
    return opening + ", ".join(parts) + closing


def _ordered_set(values: set | frozenset, sort_up_to: int) -> Iterable[Any]:
    """Sorted elements of a small set, so previews do not depend on hash seeds.

    String hashing is randomised per process, so set iteration order differs
    between runs; sorting (when the set is small and its elements comparable)
    keeps the description identical.  Large sets keep iteration order, since
    sorting them would be O(n log n) work for a preview.
    """
    if len(values) <= sort_up_to:
        try:
            return sorted(values)  # type: ignore[type-var]
        except Exception:  # noqa: BLE001 - mixed / incomparable elements
            pass
    return values


def _scalar_text(value: object, limit: int = _EXAMPLE_CHARS) -> str:
    """Short text for one cell value: strings quoted, other scalars via ``str``.

    ``str`` keeps timestamps and decimals readable (``2024-01-01 00:00:00``
    rather than ``Timestamp('...')``); strings are quoted so that whitespace and
    empty strings are visible; containers and big objects get a bounded repr.
    """
    kind = _kind(value)
    if kind == "int" and type(value) is int:
        return _int_text(value, limit)  # type: ignore[arg-type]
    if kind in _BOUNDED_REPR_KINDS:
        return _one_line(_brepr(value, limit))
    return _truncate(_one_line(_safe_str(value)), limit)


_BOUNDED_REPR_KINDS = frozenset(
    {"str", "bytes", "collection", "mapping", "dataframe", "series", "index", "ndarray", "arrow_table", "arrow_array"}
)


def _cap_line(text: str, limit: int = _LINE_CHARS) -> str:
    return _truncate(text, limit)


def _type_distribution(values: list[Any]) -> str:
    """``str`` or ``int 60, str 40``: type names of a sample, most common first."""
    counts = Counter(_type_name(v) for v in values)
    if len(counts) == 1:
        return next(iter(counts))
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{name} {count:,}" for name, count in ordered[:8])
    if len(ordered) > 8:
        shown += f", ... {len(ordered) - 8} more types"
    return shown


def _length_stats(lengths: list[int]) -> str:
    """``min 3, median 12, max 40`` (lower median, so it is an actual length)."""
    ordered = sorted(lengths)
    return f"min {ordered[0]:,}, median {ordered[(len(ordered) - 1) // 2]:,}, max {ordered[-1]:,}"


def _sample_note(sampled: int, total: int, what: str = "sampled") -> str:
    """``(100 sampled of 1,000,000)`` / ``(3 sampled, all)``."""
    if sampled >= total:
        return f"({sampled:,} {what}, all)"
    return f"({sampled:,} {what} of {total:,})"


def _table_lines(text: str) -> list[str]:
    """Indent a rendered table, capping its line count and line widths."""
    lines = text.splitlines()
    out = ["  " + _cap_line(line, _LINE_CHARS - 2) for line in lines[:_HEAD_TABLE_LINES]]
    if len(lines) > _HEAD_TABLE_LINES:
        out.append(f"  ... {len(lines) - _HEAD_TABLE_LINES} more lines")
    return out


# --------------------------------------------------------------------------- #
# Describers: each returns the lines after the ``name: type`` header.
# --------------------------------------------------------------------------- #


def _describe_none(value: object, preview_chars: int) -> list[str]:
    return ["value: None"]


def _describe_scalar(value: object, preview_chars: int) -> list[str]:
    """Numbers and bools are tiny: show them (huge ints by digit count)."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = _int_text(value, preview_chars)
    elif type(value) not in (bool, float, complex):
        # numpy.float64 and friends: str() gives "1.5", repr() "np.float64(1.5)";
        # the type is already on the header line.
        text = _truncate(_safe_str(value), max(preview_chars, 20))
    else:
        text = _truncate(_safe_repr(value), max(preview_chars, 20))
    return [f"value: {_one_line(text)}"]


def _describe_npscalar(value: Any, preview_chars: int) -> list[str]:
    lines = [f"value: {_truncate(_one_line(_safe_str(value)), max(preview_chars, 20))}"]
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        lines.append(f"dtype: {dtype}")
    return lines


def _utf8_size(text: str) -> tuple[int, bool]:
    """UTF-8 size of ``text`` and whether it is exact.

    ``str.isascii`` is O(1) in CPython (a flag on the object), and for ASCII the
    size is the length.  Otherwise encoding up to a few MB is cheap; beyond that
    encoding would copy the whole string, so the ratio is estimated from fixed,
    evenly spaced windows (fixed so the estimate is deterministic).
    """
    n = len(text)
    if text.isascii():
        return n, True
    if n <= 4_000_000:
        return len(text.encode("utf-8", "surrogatepass")), True
    windows, width = 64, 4096
    step = (n - width) // (windows - 1)
    sampled_chars = sampled_bytes = 0
    for i in range(windows):
        chunk = text[i * step : i * step + width]
        sampled_chars += len(chunk)
        sampled_bytes += len(chunk.encode("utf-8", "surrogatepass"))
    return round(n * sampled_bytes / sampled_chars), False


def _describe_str(text: str, preview_chars: int) -> list[str]:
    """Length, lines, size, then head (and tail) previews, repr-escaped.

    The preview is repr-escaped so that newlines, tabs and control characters
    are visible and cannot be mistaken for the description's own structure.
    """
    n = len(text)
    newline_count = text.count("\n")  # C-speed; well under a second per GB
    line_count = newline_count + (1 if text and not text.endswith("\n") else 0)
    size, exact = _utf8_size(text)
    size_text = f"{human_bytes(size)} as UTF-8" if exact else f"~{human_bytes(size)} as UTF-8 (estimated from a sample)"
    lines = [f"length: {_plural(n, 'char')}, {_plural(line_count, 'line')}, {size_text}"]
    if n and line_count:
        lines[0] += f", avg {n / line_count:,.0f} chars/line"
    head_n = preview_chars
    tail_n = preview_chars // 4
    if n <= head_n + tail_n:
        lines.append(f"content (complete, repr-escaped): {str.__repr__(text[:])}")
        return lines
    hidden = n - head_n - tail_n
    if head_n == 0:
        lines.append(f"preview: none (preview_chars=0); all {n:,} chars hidden")
        return lines
    shown = f"first {head_n:,}" + (f" and last {tail_n:,}" if tail_n else "")
    where = "in between" if tail_n else "after the head"
    lines.append(f"preview (TRUNCATED: {shown} chars shown, {hidden:,} chars {where} hidden; repr-escaped):")
    lines.append(f"  head: {str.__repr__(text[:head_n])}")
    if tail_n:
        lines.append(f"  tail: {str.__repr__(text[n - tail_n :])}")
    return lines


def _describe_bytes(data: bytes | bytearray, preview_chars: int) -> list[str]:
    """Length and a head preview (a quarter of ``preview_chars`` bytes).

    A quarter, because escaped bytes take up to four characters each.
    """
    n = len(data)
    lines = [f"length: {_plural(n, 'byte')} ({human_bytes(n)})"]
    head_n = preview_chars // 4
    if n <= head_n:
        lines.append(f"content (complete): {bytes(data)!r}")
    elif head_n == 0:
        lines.append(f"preview: none (preview_chars=0); all {n:,} bytes hidden")
    else:
        head = bytes(data[:head_n])
        lines.append(f"preview (TRUNCATED: first {head_n:,} of {n:,} bytes shown, {n - head_n:,} hidden): {head!r}")
    return lines


def _pandas() -> ModuleType:
    module = sys.modules.get("pandas")
    if module is None:  # pragma: no cover - only called for pandas values
        raise RuntimeError("pandas is not loaded")
    return module


def _index_text(index: Any) -> str:
    """O(1) summary of a pandas Index: type, dtype, name, first/last labels."""
    pd = _pandas()
    name = "" if index.name is None else f", name={_brepr(index.name, _NAME_CHARS)}"
    if isinstance(index, pd.RangeIndex):
        return f"RangeIndex(start={index.start:,}, stop={index.stop:,}, step={index.step:,}){name}"
    n = len(index)
    if isinstance(index, pd.MultiIndex):
        names = ", ".join(_brepr(x, _NAME_CHARS) for x in list(index.names)[:10])
        text = f"MultiIndex, {index.nlevels} levels (names: {names})"
        if n:
            text += f", first {_scalar_text(index[0], _NAME_CHARS)}"
        return text
    text = f"{type(index).__name__}, dtype {index.dtype}{name}"
    if n:
        text += f", first {_scalar_text(index[0])}, last {_scalar_text(index[n - 1])}"
    return text


def _describe_dataframe(df: Any, preview_chars: int) -> list[str]:
    """Shape, shallow memory, index, dtype summary, capped column list, head.

    Memory is ``memory_usage(deep=False)``: deep would walk every Python object
    (seconds on 10M object rows), and the shallow figure is enough to gauge
    scale.  Examples come from ``iloc[:3]`` only.
    """
    pd = _pandas()
    rows, cols = df.shape
    lines = [f"shape: {_plural(rows, 'row')} × {_plural(cols, 'column')}"]
    try:
        mem = int(df.memory_usage(deep=False, index=True).sum())
        lines.append(f"memory: {human_bytes(mem)} (shallow: contents of Python objects not counted)")
    except Exception:  # noqa: BLE001 - exotic extension dtypes
        pass
    lines.append(f"index: {_index_text(df.index)}")
    dtypes = df.dtypes
    counts = Counter(str(dt) for dt in dtypes)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if ordered:
        dtype_text = ", ".join(f"{name} {count:,}" for name, count in ordered[:_MAX_DTYPES_LISTED])
        if len(ordered) > _MAX_DTYPES_LISTED:
            dtype_text += f", ... {len(ordered) - _MAX_DTYPES_LISTED} more dtypes"
        lines.append(_cap_line(f"dtypes: {dtype_text}"))
    listed = min(cols, _MAX_COLUMNS_LISTED)
    head_rows = min(rows, _HEAD_ROWS)
    if cols:
        qualifier = f", first {listed} listed" if listed < cols else ""
        example = f"  e.g. <first {head_rows} values>" if head_rows else ""
        lines.append(f"columns ({cols:,}{qualifier}), as  name: dtype{example}:")
    head = df.iloc[:head_rows, :listed]
    for j in range(listed):
        line = f"  {_brepr(df.columns[j], _NAME_CHARS)}: {dtypes.iloc[j]}"
        if head_rows:
            values = head.iloc[:, j].tolist()
            line += "  e.g. " + ", ".join(_scalar_text(v) for v in values)
        lines.append(_cap_line(_one_line(line)))
    if cols > listed:
        lines.append(
            f"  ... {cols - listed:,} more columns not listed "
            f"(last one: {_brepr(df.columns[cols - 1], _NAME_CHARS)}; see df.columns)"
        )
    if rows and cols:
        shown = min(cols, _HEAD_TABLE_COLUMNS)
        title = f"head({head_rows})"
        if shown < cols:
            title += f", first {shown} of {cols:,} columns"
        lines.append(title + ":")
        with pd.option_context("display.max_colwidth", _MAX_COLWIDTH):
            table = df.iloc[:head_rows, :shown].to_string(max_colwidth=_MAX_COLWIDTH, line_width=None)
        lines.extend(_table_lines(table))
    return lines


def _describe_series(series: Any, preview_chars: int) -> list[str]:
    """Length, dtype, name, index, shallow memory and the first values."""
    pd = _pandas()
    n = len(series)
    name = "None" if series.name is None else _brepr(series.name, _NAME_CHARS)
    lines = [f"length: {_plural(n, 'value')}; dtype: {series.dtype}; name: {_one_line(name)}"]
    lines.append(f"index: {_index_text(series.index)}")
    try:
        lines.append(f"memory: {human_bytes(int(series.memory_usage(deep=False, index=True)))} (shallow)")
    except Exception:  # noqa: BLE001
        pass
    if n:
        shown = min(n, _SERIES_HEAD)
        lines.append(f"head({shown}):")
        with pd.option_context("display.max_colwidth", _MAX_COLWIDTH):
            lines.extend(_table_lines(series.iloc[:shown].to_string()))
    return lines


def _describe_index(index: Any, preview_chars: int) -> list[str]:
    """A bare pandas Index: its summary and first labels."""
    n = len(index)
    lines = [f"length: {_plural(n, 'value')}", f"index: {_index_text(index)}"]
    if n:
        shown = min(n, _SERIES_HEAD)
        first = ", ".join(_scalar_text(v) for v in index[:shown].tolist())
        lines.append(_cap_line(f"first {shown}: {first}"))
    return lines


def _shape_text(shape: tuple[int, ...]) -> str:
    """numpy-style shape with thousands separators: ``(1,000, 3)``, ``(5,)``."""
    if len(shape) == 1:
        return f"({shape[0]:,},)"
    return "(" + ", ".join(f"{d:,}" for d in shape) + ")"


def _describe_ndarray(arr: Any, preview_chars: int) -> list[str]:
    """Shape, dtype, nbytes and a corner of the array (never the whole)."""
    shape = tuple(int(d) for d in arr.shape)
    lines = [
        f"shape: {_shape_text(shape)}{' (0-d)' if not shape else ''}; dtype: {arr.dtype}; size: {_plural(int(arr.size), 'element')}; "
        f"nbytes: {human_bytes(int(arr.nbytes))}"
    ]
    if arr.ndim == 0:
        lines.append(f"value: {_truncate(_one_line(_safe_str(arr.item())), max(preview_chars, 20))}")
        return lines
    if arr.size == 0:
        return lines
    if arr.ndim == 1:
        corner = arr[:_ARRAY_HEAD_1D]
        label = f"a[:{_ARRAY_HEAD_1D}]" if shape[0] > _ARRAY_HEAD_1D else "all values"
    else:
        slices = tuple([slice(0, _ARRAY_HEAD_ROWS)] * (arr.ndim - 1) + [slice(0, _ARRAY_HEAD_LAST)])
        corner = arr[slices]
        label = "a[" + ", ".join([f":{_ARRAY_HEAD_ROWS}"] * (arr.ndim - 1) + [f":{_ARRAY_HEAD_LAST}"]) + "]"
        if corner.shape == arr.shape:
            label = "all values"
    lines.append(f"first values ({label}, as nested lists): {_one_line(_brepr(corner.tolist(), max(preview_chars, 40)))}")
    return lines


def _describe_arrow_table(table: Any, preview_chars: int) -> list[str]:
    """Rows, columns, buffer size, capped schema and the first rows."""
    rows, cols = int(table.num_rows), int(table.num_columns)
    lines = [f"shape: {_plural(rows, 'row')} × {_plural(cols, 'column')}"]
    try:
        lines.append(f"buffers: {human_bytes(int(table.get_total_buffer_size()))} (not accounting for slicing)")
    except Exception:  # noqa: BLE001 - older pyarrow
        pass
    schema = table.schema
    listed = min(cols, _MAX_FIELDS_LISTED)
    if cols:
        lines.append(f"schema ({_plural(cols, 'field')}{f', first {listed} listed' if listed < cols else ''}):")
    for i in range(listed):
        field = schema.field(i)
        nullable = "" if field.nullable else " not null"
        lines.append(_cap_line(_one_line(f"  {_brepr(field.name, _NAME_CHARS)}: {field.type}{nullable}")))
    if cols > listed:
        lines.append(f"  ... {cols - listed:,} more fields not listed")
    head_rows = min(rows, _HEAD_ROWS)
    if head_rows and cols:
        lines.append(f"first {head_rows} rows (as dicts):")
        for row in table.slice(0, head_rows).select(list(range(listed))).to_pylist():
            lines.append("  " + _one_line(_brepr(row, _LINE_CHARS)))
    return lines


def _describe_arrow_array(array: Any, preview_chars: int) -> list[str]:
    """Length, Arrow type, null count and the first values."""
    n = len(array)
    lines = [f"length: {_plural(n, 'value')}; type: {_one_line(str(array.type))}; nulls: {int(array.null_count):,}"]
    if n:
        shown = min(n, _SERIES_HEAD)
        values = array.slice(0, shown).to_pylist()
        lines.append(f"first {shown}: {_one_line(_brepr(values, max(preview_chars, 40)))}")
    return lines


def _describe_mapping(mapping: Mapping[Any, Any], preview_chars: int) -> list[str]:
    """Key count, first keys, key/value type distributions, first items."""
    n = len(mapping)
    lines = [f"length: {_plural(n, 'key')}"]
    if not n:
        return lines
    keys = list(islice(iter(mapping), _MAX_KEYS_LISTED))
    key_text = ", ".join(_one_line(_brepr(k, _KEY_CHARS)) for k in keys)
    lines.append(f"keys (first {len(keys):,} of {n:,}): {key_text}" if len(keys) < n else f"keys: {key_text}")
    sample = list(islice(mapping.items(), _SAMPLE))
    lines.append(f"key types: {_type_distribution([k for k, _ in sample])} {_sample_note(len(sample), n)}")
    lines.append(f"value types: {_type_distribution([v for _, v in sample])} {_sample_note(len(sample), n)}")
    item_chars = _item_chars(preview_chars)
    shown = sample[:_PREVIEW_ITEMS]
    lines.append(f"preview (first {len(shown)} of {n:,} items, each truncated to ~{item_chars} chars):")
    for key, val in shown:
        key_text = _one_line(_brepr(key, _KEY_CHARS))
        lines.append(f"  {key_text}: {_one_line(_brepr(val, max(8, item_chars - len(key_text))))}")
    return lines


def _item_chars(preview_chars: int) -> int:
    """Per-element preview width: ~150 chars at the default preview_chars=400."""
    return max(40, preview_chars * 3 // 8)


def _describe_collection(values: list | tuple | set | frozenset | deque, preview_chars: int) -> list[str]:
    """Length, type distribution and stats of a sample, first elements.

    Only the first ``_SAMPLE`` elements are looked at, so a ten-million-item
    list costs the same as a short one.  Small sets are sorted first so that the
    sample and preview do not depend on the process's hash seed.
    """
    n = len(values)
    lines = [f"length: {_plural(n, 'item')}"]
    if not n:
        return lines
    order_note = ""
    if isinstance(values, (set, frozenset)):
        ordered = _ordered_set(values, _SORT_SETS_UP_TO)
        order_note = " (sorted)" if isinstance(ordered, list) else " (iteration order)"
        sample = list(islice(ordered, _SAMPLE))
    elif isinstance(values, (list, tuple)):
        sample = list(values[:_SAMPLE])
    else:
        sample = list(islice(values, _SAMPLE))
    lines.append(f"elements: {_type_distribution(sample)} {_sample_note(len(sample), n)}")
    strings = [len(v) for v in sample if isinstance(v, str)]
    if strings:
        lines.append(f"str lengths in sample: {_length_stats(strings)} chars")
    sized = [len(v) for v in sample if isinstance(v, (list, tuple, dict, set, frozenset))]
    if sized:
        lines.append(f"container sizes in sample: {_length_stats(sized)} items")
    first_dict = next((v for v in sample if isinstance(v, dict)), None)
    if first_dict:
        keys = list(islice(iter(first_dict), _MAX_KEYS_LISTED))
        more = f", ... {len(first_dict) - len(keys):,} more" if len(keys) < len(first_dict) else ""
        key_text = ", ".join(_one_line(_brepr(k, _KEY_CHARS)) for k in keys)
        lines.append(f"keys of first dict element: {key_text}{more}")
    item_chars = _item_chars(preview_chars)
    shown = sample[:_PREVIEW_ITEMS]
    lines.append(f"preview (first {len(shown)} of {n:,}{order_note}, each truncated to ~{item_chars} chars):")
    bullet_set = isinstance(values, (set, frozenset))
    for i, item in enumerate(shown):
        label = "-" if bullet_set else f"[{i}]"
        lines.append(f"  {label} {_one_line(_brepr(item, item_chars))}")
    return lines


def _signature_text(value: object) -> str | None:
    """``inspect.signature`` of a callable, or None if it has none."""
    import inspect  # stdlib, but only needed for callables

    try:
        return str(inspect.signature(value))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - builtins, C callables
        return None


def _describe_other(value: object, preview_chars: int) -> list[str]:
    """Anything else: ``len()``, signature, attributes, and a capped ``repr()``.

    ``repr`` may raise (reported, not propagated), may contain an address
    (stripped), or may be huge (truncated to ``preview_chars``).  It cannot be
    made cheap for arbitrary objects, but it is only called once.
    """
    lines: list[str] = []
    n = _safe_len(value)
    if n is not None:
        lines.append(f"len: {n:,}")
    if callable(value) and not isinstance(value, type):
        signature = _signature_text(value)
        if signature is not None:
            lines.append(_cap_line(_one_line(f"signature: {signature}")))
    lines.extend(_attribute_lines(value))
    text = _safe_repr(value)
    if len(text) <= preview_chars:
        lines.append("repr:")
    else:
        lines.append(f"repr (TRUNCATED: first {preview_chars:,} of {len(text):,} chars shown):")
        text = text[:preview_chars] + "..."
    lines.extend("  " + line for line in text.splitlines() or [""])
    return lines


def _attribute_lines(value: object) -> list[str]:
    """Instance attribute names and types (from ``vars()``), capped.

    For user classes this is usually the fastest way for the model to learn how
    to reach the data inside.  Modules and classes are skipped: their ``vars``
    are namespaces, not data.
    """
    if isinstance(value, (type, ModuleType)):
        return []
    try:
        namespace = vars(value)
    except Exception:  # noqa: BLE001 - no __dict__ (slots, builtins)
        return []
    if not isinstance(namespace, dict) or not namespace:
        return []
    names = [k for k in islice(namespace, 1000) if isinstance(k, str) and not k.startswith("__")]
    if not names:
        return []
    listed = names[:_MAX_ATTRS_LISTED]
    text = ", ".join(f"{k}: {_type_name(namespace[k])}" for k in listed)
    if len(names) > len(listed):
        text += f", ... {len(names) - len(listed):,} more"
    return [_cap_line(_one_line(f"attributes: {text}"), 2 * _LINE_CHARS)]


_DESCRIBERS: dict[str, Callable[[Any, int], list[str]]] = {
    "none": _describe_none,
    "bool": _describe_scalar,
    "int": _describe_scalar,
    "float": _describe_scalar,
    "str": _describe_str,
    "bytes": _describe_bytes,
    "dataframe": _describe_dataframe,
    "series": _describe_series,
    "index": _describe_index,
    "ndarray": _describe_ndarray,
    "npscalar": _describe_npscalar,
    "arrow_table": _describe_arrow_table,
    "arrow_array": _describe_arrow_array,
    "mapping": _describe_mapping,
    "collection": _describe_collection,
    "other": _describe_other,
}


def _short_other(value: Any) -> str | None:
    n = _safe_len(value)
    return None if n is None else f"len {n:,}"


def _short_ndarray(arr: Any) -> str:
    shape = tuple(int(d) for d in arr.shape)
    if not shape:
        return f"scalar, {arr.dtype}"
    if len(shape) == 1:
        return f"{_plural(shape[0], 'value')}, {arr.dtype}"
    return f"{' × '.join(f'{d:,}' for d in shape)}, {arr.dtype}"


_SHORT_DETAILS: dict[str, Callable[[Any], str | None]] = {
    "none": lambda v: None,
    "bool": lambda v: None,
    "int": lambda v: None,
    "float": lambda v: None,
    "npscalar": lambda v: None,
    "str": lambda v: _plural(len(v), "char"),
    "bytes": lambda v: _plural(len(v), "byte"),
    "dataframe": lambda v: f"{v.shape[0]:,} × {v.shape[1]:,}",
    "series": lambda v: f"{_plural(len(v), 'value')}, {v.dtype}",
    "index": lambda v: f"{_plural(len(v), 'value')}, {v.dtype}",
    "ndarray": _short_ndarray,
    "arrow_table": lambda v: f"{int(v.num_rows):,} × {int(v.num_columns):,}",
    "arrow_array": lambda v: f"{_plural(len(v), 'value')}, {v.type}",
    "mapping": lambda v: _plural(len(v), "key"),
    "collection": lambda v: _plural(len(v), "item"),
    "other": _short_other,
}
