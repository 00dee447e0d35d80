"""Tests for rlm_magic.describe: bounded, fast, deterministic METADATA text."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rlm_magic.describe import describe, describe_all, human_bytes, short_type

DESCRIBE_PY = Path(__file__).resolve().parents[1] / "rlm_magic" / "describe.py"


def make_frame(n: int) -> pd.DataFrame:
    """Same columns and same head values for any n, so only the sizes differ."""
    idx = np.arange(n)
    return pd.DataFrame(
        {
            "user_id": idx,
            "score": idx * 0.5,
            "city": np.array(["Paris", "Berlin", "Tokyo"], dtype=object)[idx % 3],
            "flag": idx % 2 == 0,
        }
    )


# --------------------------------------------------------------------------- helpers


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(999) == "999 B"
    assert human_bytes(1500) == "1.5 kB"
    assert human_bytes(1_500_000) == "1.5 MB"
    assert human_bytes(2_000_000_000) == "2.0 GB"
    assert human_bytes(999_999) == "1.0 MB"  # no "1000.0 kB"
    assert human_bytes(-1500) == "-1.5 kB"


# --------------------------------------------------------------------------- str / bytes


def test_str_small_is_shown_complete() -> None:
    d = describe("s", "hello\nworld")
    lines = d.splitlines()
    assert lines[0] == "s: str"
    assert "11 chars" in d and "2 lines" in d and "11 B" in d
    assert "content (complete" in d
    assert "'hello\\nworld'" in d  # repr-escaped: the newline cannot break the layout


def test_str_50mb_is_bounded_and_hides_the_middle() -> None:
    half = 25_000_000
    s = "Once upon a time.\n" + "a" * half + "UNIQUE_MIDDLE_MARKER" + "b" * half + "\nThe end."
    start = time.perf_counter()
    d = describe("doc", s)
    assert time.perf_counter() - start < 1.0
    assert d.splitlines()[0] == "doc: str"
    assert len(d) < 2000
    assert f"{len(s):,}" in d
    assert "UNIQUE_MIDDLE_MARKER" not in d
    assert "TRUNCATED" in d
    hidden = len(s) - 400 - 100
    assert f"{hidden:,} chars in between hidden" in d
    assert "Once upon a time." in d and "The end." in d  # head and tail
    assert "3 lines" in d


def test_str_non_ascii_size() -> None:
    d = describe("u", "é" * 10)
    assert "20 B as UTF-8" in d
    big = "é" * 5_000_000
    d = describe("u", big)
    assert "~10.0 MB as UTF-8 (estimated" in d


def test_str_preview_chars_is_respected() -> None:
    s = "x" * 10_000
    short = describe("s", s, preview_chars=40)
    long = describe("s", s, preview_chars=800)
    assert len(short) < len(long)
    assert "first 40 and last 10 chars shown" in short


def test_describing_str_does_not_import_heavy_libraries() -> None:
    # Load the module file directly so the package __init__ (not under test
    # here) cannot pull anything in.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('rlm_describe_probe', {str(DESCRIBE_PY)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "mod.describe('s', 'x' * 100_000)\n"
        "mod.describe('d', {'a': [1, 2], 'b': 'text'})\n"
        "mod.short_type('x')\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_bytes() -> None:
    data = b"\x89PNG\r\n" + bytes(range(256)) * 4000
    d = describe("blob", data)
    assert d.splitlines()[0] == "blob: bytes"
    assert f"{len(data):,} bytes" in d and "1.0 MB" in d
    assert "b'\\x89PNG\\r\\n" in d
    assert "TRUNCATED" in d
    assert len(d) < 800
    assert describe("ba", bytearray(b"abc")).splitlines()[0] == "ba: bytearray"
    assert "content (complete): b'abc'" in describe("ba", bytearray(b"abc"))


# --------------------------------------------------------------------------- pandas


def test_dataframe_content() -> None:
    d = describe("df", make_frame(10))
    lines = d.splitlines()
    assert lines[0] == "df: pandas.DataFrame"
    assert "shape: 10 rows × 4 columns" in d
    assert "memory:" in d and "RangeIndex(start=0, stop=10, step=1)" in d
    assert "'user_id': int64  e.g. 0, 1, 2" in d
    assert "'city':" in d and "'Paris', 'Berlin', 'Tokyo'" in d
    assert "'flag': bool" in d
    assert "head(3):" in d
    # head table is rendered with pandas
    assert any("user_id" in line and "score" in line and "city" in line for line in lines)


def test_dataframe_description_does_not_grow_with_rows() -> None:
    big = make_frame(1_000_000)
    small = make_frame(100)
    start = time.perf_counter()
    d_big = describe("df", big)
    assert time.perf_counter() - start < 1.0
    d_small = describe("df", small)
    assert "1,000,000" in d_big
    assert abs(len(d_big) - len(d_small)) < 60
    assert short_type(big) == "pandas.DataFrame (1,000,000 × 4)"


def test_dataframe_with_200_columns_is_capped() -> None:
    wide = pd.DataFrame(np.arange(600).reshape(3, 200), columns=[f"col_{i}" for i in range(200)])
    d = describe("wide", wide)
    assert "200 columns" in d
    assert "'col_39'" in d
    assert "'col_40'" not in d and "col_100" not in d
    assert "160 more columns not listed" in d
    assert "'col_199'" in d  # the last name is mentioned
    assert "first 12 of 200 columns" in d
    assert len(d) < 4000
    very_wide = pd.DataFrame(np.zeros((3, 2000)), columns=[f"col_{i}" for i in range(2000)])
    assert abs(len(describe("wide", very_wide)) - len(d)) < 200


def test_dataframe_long_cells_and_odd_columns_are_truncated() -> None:
    df = pd.DataFrame({"text": ["word " * 1000, "a\nb"], ("multi", 1): [1, 2]})
    d = describe("df", df)
    assert len(d) < 2000
    assert "word word" in d
    assert max(len(line) for line in d.splitlines()) <= 240


def test_series() -> None:
    s = pd.Series(np.arange(1_000_000) * 2, name="doubled")
    d = describe("s", s)
    assert d.splitlines()[0] == "s: pandas.Series"
    assert "1,000,000 values" in d and "dtype: int64" in d and "name: 'doubled'" in d
    assert "head(5):" in d and "8" in d
    assert short_type(s) == "pandas.Series (1,000,000 values, int64)"


def test_index_and_datetime_index() -> None:
    idx = pd.date_range("2024-01-01", periods=1000, freq="D", name="day")
    d = describe("idx", idx)
    assert d.splitlines()[0] == "idx: pandas.DatetimeIndex"
    assert "first 2024-01-01" in d and "name='day'" in d


# --------------------------------------------------------------------------- containers


def test_list_of_strings() -> None:
    docs = ["x" * 500, "short", "medium length"] + ["doc"] * 999_997
    d = describe("docs", docs)
    lines = d.splitlines()
    assert lines[0] == "docs: list"
    assert "length: 1,000,000 items" in d
    assert "elements: str (100 sampled of 1,000,000)" in d
    assert "str lengths in sample: min 3, median 3, max 500 chars" in d
    assert "[0] 'xxx" in d and "(500 chars)" in d
    assert "[2] 'medium length'" in d
    assert "[3]" not in d
    assert all(len(line) < 200 for line in lines)


def test_list_mixed_and_records() -> None:
    d = describe("rows", [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}, 3, "s"])
    assert "elements: dict 2, int 1, str 1 (4 sampled, all)" in d
    assert "keys of first dict element: 'id', 'text'" in d


def test_tuple_and_set() -> None:
    assert describe("t", (1, 2)).splitlines()[0] == "t: tuple"
    d = describe("st", {"b", "a", "c"})
    assert d.splitlines()[0] == "st: set"
    assert "(sorted)" in d
    assert d.index("- 'a'") < d.index("- 'b'") < d.index("- 'c'")
    assert short_type({"a", "b"}) == "set (2 items)"


def test_dict() -> None:
    big = {f"key_{i}": i for i in range(100_000)}
    big["nested"] = {"deep": "v" * 10_000}
    d = describe("cfg", big)
    assert d.splitlines()[0] == "cfg: dict"
    assert "length: 100,001 keys" in d
    assert "keys (first 20 of 100,001): 'key_0', 'key_1'" in d
    assert "'key_20'" not in d
    assert "value types: int (100 sampled of 100,001)" in d
    assert "'key_0': 0" in d
    assert len(d) < 1500
    assert short_type(big) == "dict (100,001 keys)"


def test_nested_huge_element_is_truncated() -> None:
    d = describe("l", ["z" * 10_000_000, {"k": list(range(1_000_000))}])
    assert len(d) < 1500
    assert "(10,000,000 chars)" in d


def test_self_referential_list() -> None:
    x: list[object] = [1]
    x.append(x)
    d = describe("x", x)
    assert "[...]" in d


# --------------------------------------------------------------------------- numpy / pyarrow


def test_ndarray() -> None:
    arr = np.arange(3_000_000, dtype=np.float64).reshape(1_000_000, 3)
    d = describe("arr", arr)
    assert d.splitlines()[0] == "arr: numpy.ndarray"
    assert "shape: (1,000,000, 3)" in d and "dtype: float64" in d and "24.0 MB" in d
    assert "[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]" in d
    assert len(d) < 500
    assert short_type(arr) == "numpy.ndarray (1,000,000 × 3, float64)"
    assert "value: 5" in describe("z", np.array(5))
    assert "value: 7" in describe("i", np.int64(7))


def test_pyarrow_table_and_array() -> None:
    table = pa.table({"a": list(range(1000)), "b": ["x"] * 1000})
    d = describe("t", table)
    assert d.splitlines()[0] == "t: pyarrow.Table"
    assert "shape: 1,000 rows × 2 columns" in d
    assert "'a': int64" in d and "'b': string" in d
    assert "{'a': 0, 'b': 'x'}" in d
    assert short_type(table) == "pyarrow.Table (1,000 × 2)"
    wide = pa.table({f"f{i}": [i] for i in range(100)})
    assert "60 more fields not listed" in describe("w", wide)
    batch = pa.RecordBatch.from_pydict({"a": [1, 2]})
    assert describe("b", batch).splitlines()[0] == "b: pyarrow.RecordBatch"
    d = describe("arr", pa.chunked_array([[1, None], [3]]))
    assert "length: 3 values" in d and "nulls: 1" in d and "[1, None, 3]" in d


# --------------------------------------------------------------------------- scalars


@pytest.mark.parametrize(
    ("value", "type_name", "shown"),
    [(42, "int", "42"), (3.5, "float", "3.5"), (True, "bool", "True"), (None, "NoneType", "None")],
)
def test_scalars(value: object, type_name: str, shown: str) -> None:
    assert describe("v", value) == f"v: {type_name}\nvalue: {shown}"
    assert short_type(value) == type_name


def test_huge_int_is_summarised() -> None:
    d = describe("n", 10**50_000)
    assert "about 50,001 digits" in d
    assert len(d) < 100


# --------------------------------------------------------------------------- other objects


class _RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class _HugeRepr:
    def __init__(self) -> None:
        self.payload = "p" * 5_000_000
        self.count = 3

    def __repr__(self) -> str:
        return f"_HugeRepr({self.payload})"


def test_object_whose_repr_raises() -> None:
    d = describe("bad", _RaisingRepr())
    assert d.splitlines()[0].startswith("bad: ")
    assert "repr() raised RuntimeError" in d
    d = describe("bads", [_RaisingRepr()])
    assert "repr() raised RuntimeError" in d
    assert "(" in short_type([_RaisingRepr()])


def test_object_with_huge_repr_is_capped() -> None:
    d = describe("h", _HugeRepr())
    assert len(d) < 800
    assert "attributes: payload: str, count: int" in d
    assert "TRUNCATED: first 400 of 5,000,011 chars" in d


def test_object_with_broken_len_falls_back() -> None:
    class BrokenList(list):  # type: ignore[type-arg]
        def __len__(self) -> int:
            raise ValueError("nope")

    d = describe("b", BrokenList([1, 2]))
    assert d.splitlines()[0].startswith("b: ")
    assert "generic description follows" in d


def test_default_repr_has_no_address_and_is_deterministic() -> None:
    values: dict[str, object] = {
        "df": make_frame(50),
        "obj": object(),
        "fn": test_human_bytes,
        "nested": {"x": [object(), {"y", "z"}]},
        "s": "hello " * 1000,
        "st": {f"k{i}" for i in range(50)},
    }
    first = describe_all(values)
    second = describe_all(values)
    assert first == second
    assert "0x" not in first


# --------------------------------------------------------------------------- describe_all / short_type


def test_describe_all_keeps_order_and_separates_blocks() -> None:
    text = describe_all({"b": 1, "a": "x", "c": [1]})
    blocks = text.split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == ["b: int", "a: str", "c: list"]


def test_short_type() -> None:
    assert short_type("x" * 12_345) == "str (12,345 chars)"
    assert short_type(list(range(10))) == "list (10 items)"
    assert short_type({"a": 1, "b": 2, "c": 3}) == "dict (3 keys)"
    assert short_type(1) == "int"
    assert short_type(b"ab") == "bytes (2 bytes)"
    assert short_type(np.zeros(5)) == "numpy.ndarray (5 values, float64)"
    assert "\n" not in short_type(_RaisingRepr())
