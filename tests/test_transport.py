"""Values crossing into the child: zero-copy frames that stay writable, and every other kind."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlm_magic.scripted import code_reply

ANON = "int([l for l in open('/proc/self/status') if l.startswith('RssAnon')][0].split()[1]) * 1024"


def test_dataframe_is_mapped_not_copied_and_stays_writable(make_rlm, server) -> None:
    rows = 25_000_000  # two float64 columns: 400 MB
    df = pd.DataFrame({"a": np.arange(rows, dtype="float64"), "b": np.ones(rows)})
    size = df.memory_usage(deep=True).sum()
    server.add(
        "root",
        code_reply(
            f"held = {ANON}\n"
            "twin = context.copy()\n"
            f"copied = {ANON}\n"
            "del twin\n"
            "context.iloc[0, 0] = -1.0\n"
            "context['c'] = context.a + context.b\n"
            "print(held, copied, context.iloc[0, 0], context.c.iloc[1], len(context))"
        ),
        code_reply("print(context.iloc[0, 0], 'c' in context)\nSUBMIT(float(context.a.sum()))"),
    )
    res = make_rlm().run("q", context=df)
    held, copied, first, c1, n = res.turns[0].code[0].output.split()
    # a real copy costs the frame's size in private memory; holding the bound frame costs next to nothing
    assert int(copied) - int(held) > 0.9 * size
    assert int(held) < int(copied) - 0.9 * size + 0.05 * size
    assert (float(first), float(c1), int(n)) == (-1.0, 2.0, rows)
    assert res.turns[1].code[0].output.split()[:2] == ["-1.0", "True"]  # the change persisted across turns
    assert res.answer == float(df.a.sum()) - 1.0  # the notebook's own frame is untouched: row 0 was 0.0
    assert df.iloc[0, 0] == 0.0


def test_every_kind_of_value_arrives_intact(make_rlm, server) -> None:
    frame = pd.DataFrame({"s": ["x", None, "z"], "t": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
                          "i": pd.array([1, None, 3], dtype="Int64")}, index=["r1", "r2", "r3"])
    series = pd.Series([1.5, 2.5], name="price", index=[10, 20])
    text = "héllo\n" * 1000 + "🙂"
    blob = bytes(range(256)) * 10
    other = {"nested": [1, {"a": (2, 3)}], "n": None}
    server.add("root", code_reply(
        "SUBMIT(frame=frame, series=series, text=text, blob=blob, other=other, "
        "types=[type(v).__name__ for v in (frame, series, text, blob, other)])"))
    res = make_rlm().run("q", frame=frame, series=series, text=text, blob=blob, other=other)
    assert res.fields["types"] == ["DataFrame", "Series", "str", "bytes", "dict"]
    pd.testing.assert_frame_equal(res.fields["frame"], frame)
    pd.testing.assert_series_equal(res.fields["series"], series)
    assert res.fields["text"] == text and res.fields["blob"] == blob
    assert res.fields["other"]["nested"] == [1, {"a": [2, 3]}]  # JSON has no tuples inside containers


def test_numpy_array_travels_out_of_band_and_is_writable(make_rlm, server) -> None:
    arr = np.arange(10_000_000, dtype="int64")  # 80 MB: pickled out of band, mapped in the child
    server.add("root", code_reply(
        f"held = {ANON}\n"
        "arr[0] = -5\n"
        "print(type(arr).__name__, arr.dtype, arr.shape, arr.flags.writeable, int(arr[:3].sum()))\n"
        f"print({ANON} - held < 40_000_000)\n"
        "SUBMIT(int(arr.sum()))"))
    res = make_rlm().run("q", arr=arr)
    first, second = res.turns[0].code[0].output.splitlines()[:2]
    assert first == "ndarray int64 (10000000,) True -2"
    assert second == "True"  # writing one element copied one page, not the array
    assert res.answer == int(arr.sum()) - 5 and arr[0] == 0


def test_root_prompt_size_does_not_depend_on_the_context_size(make_rlm, server) -> None:
    """The first root request for a 1 KB and a 1 GB context differ only in the metadata numbers."""
    import re

    unit = "The quick brown fox jumps over the lazy dog. " * 2 + "\n"  # 91 characters a line
    small = unit * 11  # ~1 KB
    big = unit * (1_000_000_000 // len(unit))  # ~1 GB
    server.add("root", code_reply("SUBMIT(len(context))"), code_reply("SUBMIT(len(context))"))
    rlm = make_rlm()
    assert rlm.run("How long is it?", context=small).answer == len(small)
    assert rlm.run("How long is it?", context=big).answer == len(big)
    del big
    first_small, first_big = (r.messages for r in server.requests_for("root"))
    number = r"[0-9][0-9,.]*(?: ?[kMGT]?B\b)?"  # a figure with its size unit
    digits = lambda msgs: [re.sub(number, "#", m["content"]) for m in msgs]  # noqa: E731
    assert digits(first_small) == digits(first_big)
    sizes = [sum(len(m["content"]) for m in msgs) for msgs in (first_small, first_big)]
    assert abs(sizes[0] - sizes[1]) < 100 and max(sizes) < 6_000


def test_arrow_tables_cross_mapped_both_ways(make_rlm, server) -> None:
    """pyarrow Tables and RecordBatches bind as Arrow IPC (mapped, no pickle) and come back as themselves."""
    import pyarrow as pa

    rows = 50_000_000  # one int64 column: 400 MB
    table = pa.table({"a": np.arange(rows, dtype="int64")})
    batch = pa.record_batch({"b": [1, 2, 3], "s": ["x", None, "z"]})
    server.add("root", code_reply(
        f"held = {ANON}\n"
        "print(type(table).__name__, type(batch).__name__, table.num_rows, held)\n"
        "SUBMIT(head=table.slice(0, 4), batch=batch, empty=batch.slice(0, 0))"))
    res = make_rlm().run("q", table=table, batch=batch)
    kind, bkind, n, held = res.turns[0].code[0].output.split()[:4]
    assert (kind, bkind, int(n)) == ("Table", "RecordBatch", rows)
    assert int(held) < 400e6 / 2, "the REPL holds a private copy of the table"
    assert res.fields["head"].equals(table.slice(0, 4))
    assert isinstance(res.fields["batch"], pa.RecordBatch) and res.fields["batch"].equals(batch)
    assert res.fields["empty"].num_rows == 0 and res.fields["empty"].schema == batch.schema
