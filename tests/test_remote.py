"""A kernel that shares no files with the notebook: values and requests travel over the Jupyter protocol.

The kernel is a stand-in for a remote one (``tests/files/remote_kernel.py``):
bubblewrap hides the run folders and the notebook's copy of ``rlm_kernel``
from it, and it is reached over loopback TCP.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rlm_kernel
from rlm_magic import transport
from rlm_magic.events import Notice
from rlm_magic.scripted import Reply, code_reply

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None and not os.environ.get("CI"),
                                reason="the remote-kernel stand-in needs bubblewrap (apt-get install bubblewrap)")

LAUNCHER = Path(__file__).parent / "files" / "remote_kernel.py"


def make_run_dir_base() -> str:
    """A run folder like the ones rlm_magic makes (the stand-in hides the folder they live in)."""
    path = transport.make_run_dir()
    transport.remove_dir(path)
    assert not sys.executable.startswith(os.path.dirname(str(path)) + "/"), "hiding run folders would hide Python"
    return str(path)
PKG = os.path.dirname(os.path.abspath(rlm_kernel.__file__))


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Install the stand-in as a kernelspec named ``rlm-remote-test``; returns its name."""
    runs_in = os.path.dirname(make_run_dir_base())
    spec_dir = tmp_path / "jupyter" / "kernels" / "rlm-remote-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(LAUNCHER), "{connection_file}", runs_in, PKG],
        "display_name": "remote stand-in", "language": "python", "interrupt_mode": "message",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "rlm-remote-test"


def test_values_requests_and_results_travel_as_frames(make_rlm, server, remote) -> None:
    frame = pd.DataFrame({"x": np.arange(200_000, dtype="float64"), "s": ["ab", None] * 100_000})
    series = pd.Series([1.5, 2.5], name="price")
    text = "héllo\n" * 50_000 + "🙂"
    blob = bytes(range(256)) * 100
    arr = np.arange(1_000_000, dtype="int64")
    server.add(
        "root",
        code_reply(
            "import os, sys\n"
            "print(type(frame).__name__, len(frame), float(frame.x.sum()), frame.s.isna().sum())\n"
            "print(len(text), text[-1], len(blob), blob[:3], int(arr.sum()), series.name)\n"
            f"print(os.path.exists({PKG!r} + '/runtime.py'), getattr(sys.modules['rlm_kernel'], '__file__', None) is None)\n"
            "frame.loc[0, 'x'] = -5.0\n"
            "arr[0] = 7\n"
            "print(llm_query('one'), llm_query_batched(['two', 'three']))"
        ),
        code_reply("print(frame.x.iloc[0], arr[0])\n"
                   "SUBMIT(answer='done', top=frame.head(3), arr=arr[:4], raw=b'\\x00\\x01', n=np.int64(3))"),
    )
    server.set_handler("sub", lambda req: {"one": "A", "two": "B", "three": "C"}[req.prompt])
    res = make_rlm(kernel=remote).run("q", frame=frame, series=series, text=text, blob=blob, arr=arr)
    assert res.status == "finished", res.error
    first = res.turns[0].code[0].output.splitlines()
    assert first[0] == f"DataFrame 200000 {float(frame.x.sum())} 100000"
    assert first[1] == f"{len(text)} 🙂 25600 b'\\x00\\x01\\x02' {int(arr.sum())} price"
    assert first[2] == "False True"  # the kernel saw none of our files: the package came as source
    assert first[3] == "A ['B', 'C']"
    assert res.turns[1].code[0].output.split()[:2] == ["-5.0", "7"]  # bound values are writable, changes persist
    assert res.answer == "done"
    expected = frame.head(3).copy()
    expected.loc[0, "x"] = -5.0
    pd.testing.assert_frame_equal(res.fields["top"], expected)
    assert res.fields["arr"].tolist() == [7, 1, 2, 3]
    assert res.fields["raw"] == b"\x00\x01" and res.fields["n"] == 3
    assert frame.x.iloc[0] == 0.0 and arr[0] == 0  # the notebook's own values are untouched
    assert sorted(c.prompt for c in res.calls if c.role == "sub") == ["one", "three", "two"]


def test_arrow_tables_travel_as_frames(make_rlm, server, remote) -> None:
    import pyarrow as pa

    table = pa.table({"a": [1, 2, 3], "s": ["x", None, "z"]})
    server.add("root", code_reply("print(type(table).__name__, table.num_rows)\nSUBMIT(t=table.slice(1))"))
    res = make_rlm(kernel=remote).run("q", table=table)
    assert res.turns[0].code[0].output.split()[:2] == ["Table", "3"]
    assert res.fields["t"].equals(table.slice(1))


def test_no_value_is_pasted_into_code(make_rlm, server, remote) -> None:
    """Bindings ride in binary frames; the code the kernel runs stays small whatever the data's size."""
    big = "z" * 5_000_000
    server.add("root", code_reply("print(len(big))"),
               code_reply("SUBMIT(max(len(c) for c in _ih))"))
    rlm = make_rlm(kernel=remote)
    notices = []
    rlm.subscribe(lambda ev: notices.append(ev.text) if isinstance(ev, Notice) else None)
    res = rlm.run("q", big=big)
    assert any("binary frames over the Jupyter protocol" in n for n in notices), notices  # the view says so
    assert res.turns[0].code[0].output.strip() == "5000000"
    assert res.answer < 200_000  # the largest cell run: the bootstrap with the package's source


def test_a_lost_remote_kernel_is_replaced_and_values_sent_again(make_rlm, server, remote) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3]})
    server.add("root", code_reply("import os; os._exit(1)"), code_reply("SUBMIT(int(frame.a.sum()))"))
    res = make_rlm(kernel=remote).run("q", frame=frame)
    assert res.status == "finished" and res.answer == 6, res.error


def test_model_input_gets_end_of_file_not_a_hang(make_rlm, server, remote) -> None:
    server.add("root", code_reply("try:\n    input('name? ')\nexcept EOFError:\n    print('eof')"),
               code_reply("SUBMIT(llm_query('still works'))"))
    server.add("sub", "yes")
    res = make_rlm(kernel=remote, timeout=20).run("q")
    assert res.turns[0].code[0].output.strip() == "eof"
    assert res.answer == "yes"


def test_interrupted_sub_call_leaves_no_stale_reply(make_rlm, server, remote) -> None:
    """A block stopped at its deadline while waiting for a sub-call; the next call gets its own answer."""
    server.add("root", code_reply("llm_query('slow')"), code_reply("SUBMIT(llm_query('fast'))"))
    server.add("sub", Reply("late", delay=4.0), "fast answer")
    res = make_rlm(kernel=remote, timeout=1.5).run("q")
    assert res.turns[0].code[0].timed_out
    assert res.answer == "fast answer"
