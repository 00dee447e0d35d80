"""Moving values across the process boundary, child side.

Inbound (notebook -> child) values arrive as files the parent wrote (or, from
a notebook that shares no files with this kernel, as message buffers): Arrow
IPC for frames, raw text/bytes, or pickle (the parent trusts itself).  Outbound
values (SUBMIT) never use pickle: the parent must not unpickle anything that
model-written code produced, so they go as JSON, Arrow IPC or ``.npy`` without
pickled objects, else as a repr with a note.
"""

from __future__ import annotations

import base64
import io
import json
import mmap
import os
import pickle
import uuid
from typing import Any

_JSON_SCALARS = (str, int, float, bool, type(None))


def load_binding(spec: dict[str, Any]) -> Any:
    kind = spec["t"]
    if "wire" in spec:  # the bytes came as comm buffers (a kernel that shares no files with the notebook)
        from . import wire

        return _load_sent(kind, spec, wire.take(spec["wire"]))
    path = spec.get("path")
    if kind == "arrow":
        return series_or_frame(load_frame(path), spec)
    if kind == "arrow_table":
        return load_table(path, spec)
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


def _load_sent(kind: str, spec: dict[str, Any], buffers: list[Any]) -> Any:
    """A bound value from message buffers; each is copied once, into memory the REPL may change."""
    if kind == "arrow":
        return series_or_frame(frame_from_buffer(writable_copy(buffers[0])), spec)
    if kind == "arrow_table":
        return read_table(writable_copy(buffers[0]), spec)
    if kind == "text":
        return str(buffers[0], "utf-8")
    if kind == "bytes":
        return bytes(buffers[0])
    if kind == "pickle":
        return pickle.loads(buffers[0], buffers=[writable_copy(b) for b in buffers[1:]])
    raise ValueError(f"unknown binding kind {kind!r}")


def writable_copy(buf: Any) -> Any:
    """Anonymous private memory holding ``buf`` (received frames are read-only)."""
    view = memoryview(buf).cast("B")
    if not view.nbytes:
        return bytearray()
    mapping = mmap.mmap(-1, view.nbytes)
    mapping[:] = view
    return mapping


def write_table(value: Any, path: Any) -> dict[str, Any] | None:
    """Write a pyarrow Table or RecordBatch as an Arrow IPC file (a name or a stream); None for other values."""
    import sys

    pa = sys.modules.get("pyarrow")
    if pa is None or not isinstance(value, (pa.Table, pa.RecordBatch)):
        return None
    _write_ipc(pa, value, path)
    return {"t": "arrow_table", "batch": isinstance(value, pa.RecordBatch)}


def load_table(path: str, spec: dict[str, Any]) -> Any:
    """The Table (or RecordBatch) in an Arrow IPC file, over a mapping of it (pyarrow does not copy)."""
    import pyarrow as pa

    return table_or_batch(pa.ipc.open_file(pa.memory_map(path)).read_all(), spec)


def read_table(buf: Any, spec: dict[str, Any]) -> Any:
    """The Table (or RecordBatch) in an Arrow IPC file held in memory, sharing that memory."""
    import pyarrow as pa

    return table_or_batch(pa.ipc.open_file(pa.BufferReader(pa.py_buffer(buf))).read_all(), spec)


def table_or_batch(table: Any, spec: dict[str, Any]) -> Any:
    if not spec.get("batch"):
        return table
    batches = table.combine_chunks().to_batches()  # one batch was written: nothing to combine
    if batches:
        return batches[0]
    import pyarrow as pa

    return pa.RecordBatch.from_pylist([], schema=table.schema)


def series_or_frame(frame: Any, spec: dict[str, Any]) -> Any:
    if spec.get("kind") == "series":
        return frame.iloc[:, 0].rename(spec.get("series_name"))
    return frame


def _private_map(path: str) -> Any:
    """A writable copy-on-write mapping of a file (an empty buffer for an empty file)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return bytearray()
        return mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def load_frame(path: str) -> Any:
    """A DataFrame over a memory-mapped Arrow IPC file, without a private copy of its data."""
    return frame_from_buffer(_private_map(path))


def frame_from_buffer(mapping: Any) -> Any:
    """A DataFrame over writable memory holding an Arrow IPC file, sharing that memory.

    The file is mapped copy-on-write (MAP_PRIVATE): numeric and datetime columns
    are numpy arrays straight over the mapping, strings stay Arrow-backed, so
    the child holds almost no private memory for the frame, yet model code may
    still change it in place; only the pages it writes become private.  pandas
    versions without ``pandas.api.internals`` get an ordinary (copied) frame.
    """
    import pyarrow as pa

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


def encode_value(value: Any, out_dir: str | None, sink: list[Any] | None = None) -> dict[str, Any]:
    """A JSON-able description of ``value``; big or typed payloads go elsewhere.

    With ``sink`` (a list), they become in-memory buffers appended to it and
    the description names their index (sent as binary message frames); else
    they are files in ``out_dir``, named relative to it.
    """
    mod = type(value).__module__ or ""
    if _json_safe(value):
        enc: dict[str, Any] = {"t": "json", "v": value}
        if isinstance(value, tuple):
            enc["tuple"] = True
        return enc
    if isinstance(value, (bytes, bytearray, memoryview)):
        if sink is not None:
            return {"t": "bytes", "buf": _sink(sink, bytes(value))}
        return {"t": "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if mod.startswith("pandas"):
        import pandas as pd

        if isinstance(value, (pd.DataFrame, pd.Series)):
            return _encode_pandas(value, out_dir, sink)
    if mod.startswith("pyarrow"):
        enc = _to_arrow(write_table, value, out_dir, sink)
        if enc is not None:
            return enc
    if mod == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray) and value.dtype != object:
            if sink is not None:
                out = io.BytesIO()
                np.save(out, value, allow_pickle=False)
                return {"t": "npy", "buf": _sink(sink, out.getbuffer())}
            name = f"out-{uuid.uuid4().hex}.npy"
            np.save(os.path.join(str(out_dir), name), value, allow_pickle=False)
            return {"t": "npy", "path": name}
        if isinstance(value, np.generic):
            return encode_value(value.item(), out_dir, sink)
    if isinstance(value, (set, frozenset)) and _json_safe(list(value)):
        return {"t": "json", "v": sorted(value, key=repr), "set": True}
    return {"t": "repr", "v": _safe_repr(value), "type": f"{mod}.{type(value).__qualname__}"}


def _sink(sink: list[Any], buf: Any) -> int:
    sink.append(buf)
    return len(sink) - 1


def write_frame(value: Any, path: Any) -> dict[str, Any] | None:
    """Write a DataFrame or Series as an Arrow IPC file; None when Arrow cannot type its columns.

    ``path`` is a file name or a pyarrow output stream.  Shared by both
    directions (the notebook binding values, the child submitting them), so
    both read back the same way with :func:`frame_from_buffer`.  (:func:`in_memory` writes into memory.)
    """
    import pandas as pd
    import pyarrow as pa

    is_series = isinstance(value, pd.Series)
    frame = value.to_frame(name="__value__" if value.name is None else value.name) if is_series else value
    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)  # a RangeIndex stays metadata, not a column
    except (pa.ArrowException, TypeError, ValueError):  # mixed object columns
        return None
    _write_ipc(pa, table, path)
    return {"t": "arrow", "path": path if isinstance(path, str) else None,
            "kind": "series" if is_series else "dataframe", "series_name": value.name if is_series else None}


def _write_ipc(pa: Any, data: Any, path: Any) -> None:
    """An Arrow IPC file holding ``data`` (a Table or RecordBatch), at a file name or into a stream."""
    if isinstance(path, str):
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, data.schema) as writer:
            writer.write(data)
    else:
        with pa.ipc.new_file(path, data.schema) as writer:
            writer.write(data)


def in_memory(writer: Any, value: Any) -> tuple[dict[str, Any], Any] | None:
    """``writer`` (:func:`write_frame` or :func:`write_table`) into memory: (description, buffer), or None."""
    import pyarrow as pa

    stream = pa.BufferOutputStream()
    spec = writer(value, stream)
    if spec is None:
        return None
    spec.pop("path", None)
    return spec, stream.getvalue()


def _to_arrow(writer: Any, value: Any, out_dir: str | None, sink: list[Any] | None) -> dict[str, Any] | None:
    """A result as Arrow IPC: a buffer in ``sink``, else a file in ``out_dir``; None when Arrow cannot hold it."""
    if sink is not None:
        sent = in_memory(writer, value)
        return None if sent is None else {**sent[0], "buf": _sink(sink, sent[1])}
    name = f"out-{uuid.uuid4().hex}.arrow"
    spec = writer(value, os.path.join(str(out_dir), name))
    return None if spec is None else {**spec, "path": name}  # the notebook resolves it inside its run folder


def _encode_pandas(value: Any, out_dir: str | None, sink: list[Any] | None) -> dict[str, Any]:
    import pandas as pd

    enc = _to_arrow(write_frame, value, out_dir, sink)
    if enc is not None:
        return enc
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
