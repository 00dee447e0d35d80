"""Moving values between the notebook and the child kernel, notebook side.

Bindings are written once per run into a private folder (``/dev/shm`` when the
machine has it, so nothing touches disk): Arrow IPC for pandas objects, raw
files for text and bytes, pickle for everything else.  Results come back from
the child without pickle (see ``rlm_kernel.codec``), so nothing model-written
code produced is ever unpickled here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rlm_kernel.codec import (
    frame_from_buffer,
    in_memory,
    load_frame,
    load_table,
    read_table,
    series_or_frame,
    writable_copy,
    write_frame,
    write_table,
)


def make_run_dir() -> Path:
    """A private (0700) scratch folder for one workspace: bindings, results, sockets, the kernel log.

    It records its owner's pid, so folders left by a crashed notebook can be
    recognised and swept later.
    """
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="rlm-", dir=base))
    (path / "owner.pid").write_text(str(os.getpid()))
    return path


def remove_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def _kind(value: Any) -> str:
    """How a bound value travels: ``frame``/``table`` as Arrow IPC, ``text``, ``bytes``, else ``pickle``."""
    mod = type(value).__module__ or ""
    if mod.startswith("pandas"):
        import pandas as pd

        if isinstance(value, (pd.DataFrame, pd.Series)):
            return "frame"
    if mod.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(value, (pa.Table, pa.RecordBatch)):
            return "table"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    return "pickle"


#: Arrow IPC writers (to a file name or a stream); a frame Arrow cannot type returns None and is pickled.
_ARROW_WRITERS = {"frame": write_frame, "table": write_table}


def _pickled(name: str, value: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Protocol 5: large buffers (numpy arrays and the like) come out of band, to be mapped, not copied."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        raise TypeError(f"cannot send {name!r} ({type(value).__name__}) to the REPL: it cannot be pickled ({exc})") from None
    return data, buffers


def write_binding(name: str, value: Any, folder: Path) -> dict[str, Any]:
    """Write one value for the child and return the spec it loads it from."""
    kind = _kind(value)
    stem = folder / f"in-{name}"
    if kind in _ARROW_WRITERS:
        arrow_file = str(stem.with_suffix(".arrow"))
        spec = _ARROW_WRITERS[kind](value, arrow_file)
        if spec is not None:
            return {"name": name, **spec, "path": arrow_file}
    if kind == "text":
        path = stem.with_suffix(".txt")
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(value)
        return {"name": name, "t": "text", "path": str(path)}
    if kind == "bytes":
        path = stem.with_suffix(".bin")
        path.write_bytes(value)
        return {"name": name, "t": "bytes", "path": str(path)}
    data, buffers = _pickled(name, value)
    path = stem.with_suffix(".pkl")
    path.write_bytes(data)
    extra = []
    for i, buf in enumerate(buffers):  # written raw; the child maps them
        part = stem.with_suffix(f".buf{i}")
        with open(part, "wb") as fh:
            fh.write(buf.raw())
        extra.append(str(part))
    return {"name": name, "t": "pickle", "path": str(path), "buffers": extra}


def send_binding(name: str, value: Any) -> tuple[dict[str, Any], list[Any]]:
    """One value as message buffers, for a kernel that shares no files with us: (spec, buffers).

    The same encodings as :func:`write_binding`, held in memory instead of
    written; the spec names the comm the buffers travel in (``wire``).
    """
    kind = _kind(value)
    spec: dict[str, Any] = {"name": name, "wire": f"in-{name}"}
    if kind in _ARROW_WRITERS:
        sent = in_memory(_ARROW_WRITERS[kind], value)
        if sent is not None:
            return {**spec, **sent[0]}, [sent[1]]
    if kind == "text":
        return {**spec, "t": "text"}, [value.encode("utf-8")]
    if kind == "bytes":
        return {**spec, "t": "bytes"}, [bytes(value)]
    data, buffers = _pickled(name, value)
    return {**spec, "t": "pickle"}, [data, *(buf.raw() for buf in buffers)]


def read_value(enc: dict[str, Any], folder: Path | None, buffers: list[Any] | None = None) -> tuple[Any, str | None]:
    """Turn an encoded value from the child into a Python value, with a note when it is only a repr.

    Big values come as files in ``folder`` or, where the child sends them over
    the protocol, as ``buffers`` the encoding indexes.
    """
    kind = enc.get("t")
    if "buf" in enc:
        return _read_buffer(kind, enc, _buffer(buffers, enc["buf"])), None
    if kind == "json":
        value = enc.get("v")
        if enc.get("tuple"):
            value = tuple(value)
        elif enc.get("set"):
            value = set(value)
        return value, None
    if kind == "bytes":
        return base64.b64decode(enc["v"]), None
    if kind in ("arrow", "arrow_table", "npy"):
        if folder is None:
            raise ValueError("the child named a result file, but this run shares no folder with it")
        path = _inside(folder, enc["path"])
        try:
            if kind == "npy":
                import numpy as np

                return np.load(path, allow_pickle=False), None
            if kind == "arrow_table":
                return load_table(str(path), enc), None  # mapped, not copied
            return series_or_frame(load_frame(str(path)), enc), None  # mapped, not copied
        finally:
            path.unlink(missing_ok=True)  # read into notebook memory; the file has done its job
    if kind == "pandas_json":
        import pandas as pd

        frame = pd.read_json(io.StringIO(enc["v"]), orient="table")
        return series_or_frame(frame, enc), "object columns were sent as JSON; some types may have changed"
    if kind == "repr":
        return enc.get("v"), f"a {enc.get('type', 'value')} cannot be sent back, so its repr came instead"
    raise ValueError(f"unknown value encoding {kind!r}")


def _buffer(buffers: list[Any] | None, index: Any) -> Any:
    if not isinstance(index, int) or not buffers or not 0 <= index < len(buffers):
        raise ValueError(f"the submitted value refers to a missing buffer ({index!r})")
    return buffers[index]


def _read_buffer(kind: Any, enc: dict[str, Any], buf: Any) -> Any:
    if kind == "bytes":
        return bytes(buf)
    if kind == "npy":
        import numpy as np

        return np.load(io.BytesIO(buf), allow_pickle=False)
    if kind == "arrow":
        return series_or_frame(frame_from_buffer(writable_copy(buf)), enc)
    if kind == "arrow_table":
        return read_table(bytes(buf), enc)
    raise ValueError(f"unknown value encoding {kind!r} for a buffer")


def _inside(folder: Path, name: str) -> Path:
    """Resolve a file name the child gave us, refusing anything outside the run folder or behind a link."""
    path = (folder / name).resolve()
    if path.parent != folder.resolve() or (folder / name).is_symlink():
        raise ValueError(f"refusing result file outside the run folder: {name!r}")
    return path


def dumps(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, ensure_ascii=False) + "\n").encode("utf-8")
