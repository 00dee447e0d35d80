"""Moving values across the process boundary, child side.

Inbound (notebook -> child) values arrive as files the parent wrote: Arrow IPC
for frames, raw text/bytes, or pickle (the parent trusts itself).  Outbound
values (SUBMIT) never use pickle: the parent must not unpickle anything that
model-written code produced, so they go as JSON, Arrow IPC or ``.npy`` without
pickled objects, else as a repr with a note.
"""

from __future__ import annotations

import base64
import json
import mmap
import os
import pickle
import uuid
from typing import Any

_JSON_SCALARS = (str, int, float, bool, type(None))


def load_binding(spec: dict[str, Any]) -> Any:
    kind = spec["t"]
    path = spec.get("path")
    if kind == "arrow":
        frame = load_frame(path)
        if spec.get("kind") == "series":
            series = frame.iloc[:, 0]
            return series.rename(spec.get("series_name"))
        return frame
    if kind == "text":  # decoded straight from the mapping: the str is the only copy
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return ""
            with mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ) as mapping:
                return str(mapping, "utf-8")
    if kind == "bytes":
        with open(path, "rb") as fh:
            return fh.read()
    if kind == "pickle":
        with open(path, "rb") as fh:
            data = fh.read()
        return pickle.loads(data, buffers=[_private_map(p) for p in spec.get("buffers", [])])
    raise ValueError(f"unknown binding kind {kind!r}")


def _private_map(path: str) -> Any:
    """A writable copy-on-write mapping of a file (an empty buffer for an empty file)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return bytearray()
        return mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def load_frame(path: str) -> Any:
    """A DataFrame over a memory-mapped Arrow IPC file, without a private copy of its data.

    The file is mapped copy-on-write (MAP_PRIVATE): numeric and datetime columns
    are numpy arrays straight over the mapping, strings stay Arrow-backed, so
    the child holds almost no private memory for the frame, yet model code may
    still change it in place; only the pages it writes become private.  pandas
    versions without ``pandas.api.internals`` get an ordinary (copied) frame.
    """
    import pyarrow as pa

    mapping = _private_map(path)
    base = pa.py_buffer(mapping)
    table = pa.ipc.open_file(pa.BufferReader(base)).read_all()
    frame = table.to_pandas(split_blocks=True)
    try:
        from pandas.api.internals import create_dataframe_from_blocks
    except ImportError:
        return frame.copy()
    import numpy as np

    lo, hi = base.address, base.address + base.size
    blocks = []
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        if isinstance(column.dtype, np.dtype):
            values = column.to_numpy()
            if not values.flags.writeable:
                if values.flags.c_contiguous and lo <= values.ctypes.data < hi:
                    values = np.frombuffer(mapping, dtype=values.dtype, count=values.size,
                                           offset=values.ctypes.data - lo)
                else:
                    values = values.copy()
            blocks.append((values.reshape(1, -1), np.array([i])))
        else:
            blocks.append((column.array, np.array([i])))
    return create_dataframe_from_blocks(blocks, index=frame.index, columns=frame.columns)


def _json_safe(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if isinstance(value, _JSON_SCALARS):  # NaN/inf included: both ends use Python's json
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_safe(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_safe(v, depth + 1) for k, v in value.items())
    return False


def encode_value(value: Any, out_dir: str) -> dict[str, Any]:
    """A JSON-able description of ``value``; big or typed payloads go to files in ``out_dir``."""
    mod = type(value).__module__ or ""
    if _json_safe(value):
        enc: dict[str, Any] = {"t": "json", "v": value}
        if isinstance(value, tuple):
            enc["tuple"] = True
        return enc
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"t": "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if mod.startswith("pandas"):
        import pandas as pd

        if isinstance(value, (pd.DataFrame, pd.Series)):
            return _encode_pandas(value, out_dir)
    if mod == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray) and value.dtype != object:
            name = f"out-{uuid.uuid4().hex}.npy"
            np.save(os.path.join(out_dir, name), value, allow_pickle=False)
            return {"t": "npy", "path": name}
        if isinstance(value, np.generic):
            return encode_value(value.item(), out_dir)
    if isinstance(value, (set, frozenset)) and _json_safe(list(value)):
        return {"t": "json", "v": sorted(value, key=repr), "set": True}
    return {"t": "repr", "v": _safe_repr(value), "type": f"{mod}.{type(value).__qualname__}"}


def write_frame(value: Any, path: str) -> dict[str, Any] | None:
    """Write a DataFrame or Series as an Arrow IPC file; None when Arrow cannot type its columns.

    Shared by both directions (the notebook binding values, the child
    submitting them), so both read back the same way with :func:`load_frame`.
    """
    import pandas as pd
    import pyarrow as pa

    is_series = isinstance(value, pd.Series)
    frame = value.to_frame(name="__value__" if value.name is None else value.name) if is_series else value
    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)  # a RangeIndex stays metadata, not a column
    except (pa.ArrowException, TypeError, ValueError):  # mixed object columns
        return None
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return {"t": "arrow", "path": path, "kind": "series" if is_series else "dataframe",
            "series_name": value.name if is_series else None}


def _encode_pandas(value: Any, out_dir: str) -> dict[str, Any]:
    import pandas as pd

    name = f"out-{uuid.uuid4().hex}.arrow"
    spec = write_frame(value, os.path.join(out_dir, name))
    if spec is not None:
        return {**spec, "path": name}  # the notebook resolves it inside its own run folder
    is_series = isinstance(value, pd.Series)
    frame = value.to_frame(name="__value__" if value.name is None else value.name) if is_series else value
    return {"t": "pandas_json", "v": frame.to_json(orient="table", index=True, default_handler=str),
            "kind": "series" if is_series else "dataframe", "series_name": value.name if is_series else None}


def _safe_repr(value: Any, limit: int = 20_000) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a repr that raises must not sink the submission
        text = f"<{type(value).__name__} (repr failed: {exc})>"
    return text if len(text) <= limit else text[:limit] + "…"


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)
