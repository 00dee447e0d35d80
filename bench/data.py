"""Deterministic benchmark data: DataFrames and CSV text of a requested size.

Used by both sides of the comparison, so it imports only the standard library
at module level (numpy, pandas and pyarrow are imported inside
:func:`make_frame`, which only the rlm_magic side calls).  ``bench/dspy_worker.py``
runs in DSPy's own venv and uses :func:`make_text`.
"""

from __future__ import annotations

import re

#: Bytes per row of :func:`make_frame`: int64 + 2 x float64 + a 13-char string (large_string: 8-byte offsets).
FRAME_ROW_BYTES = 8 + 8 + 8 + 13 + 8
LABELS = 1000

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def parse_size(text: str) -> int:
    """``"100MB"`` -> 100_000_000 (decimal units, as disk vendors and the issue use them)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?B?)\s*", text.upper())
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 10MB, 1GB, 512KB)")
    unit = m.group(2) if m.group(2).endswith("B") or not m.group(2) else m.group(2) + "B"
    return int(float(m.group(1)) * _UNITS[unit])


def size_label(n: int) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= factor:
            value = n / factor
            return f"{value:g}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{n}B"


def label(i: int) -> str:
    return f"cat-{i:05d}-xyz"  # 13 characters


def make_text(nbytes: int) -> str:
    """CSV text of exactly ``nbytes`` ASCII characters: a header, then rows ``id,x,y,label``.

    A block of 20,000 distinct rows is built once and repeated, so gigabytes take
    about a second (the content only has to look like data, not be unique).
    """
    header = "id,x,y,label\n"
    rows = []
    for i in range(20_000):
        x = ((i * 7919) % 100_003) / 100_003
        y = ((i * 104_729) % 99_991) / 99_991
        rows.append(f"{i},{x:.6f},{y:.6f},{label((i * 31) % LABELS)}\n")
    block = "".join(rows)
    if nbytes <= len(header):
        return header[:nbytes]
    body = nbytes - len(header)
    reps, rest = divmod(body, len(block))
    return header + block * reps + block[:rest]


def make_frame(nbytes: int, seed: int = 0):  # noqa: ANN201 - pandas is imported lazily
    """A DataFrame of about ``nbytes`` (``memory_usage(deep=True)``): id, x, y and a ``str`` label column.

    The label column uses pandas' default string dtype (Arrow-backed in pandas 3),
    as ``pd.read_csv`` would give.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = max(1, nbytes // FRAME_ROW_BYTES)
    rng = np.random.default_rng(seed)
    pool = pa.array([label(i) for i in range(LABELS)], type=pa.large_string())
    labels = pc.take(pool, pa.array(rng.integers(0, LABELS, rows, dtype=np.int32)))
    return pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "x": rng.random(rows),
        "y": rng.standard_normal(rows),
        "label": pd.array(labels, dtype="str"),
    })


def frame_bytes(df) -> int:  # noqa: ANN001
    return int(df.memory_usage(deep=True, index=False).sum())
