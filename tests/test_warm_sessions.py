"""Warm spare kernels, named sessions, and cleanup when the notebook process exits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from rlm_magic.runner import run_sync
from rlm_magic.scripted import code_reply
from rlm_magic.workspace import POOL, SESSIONS, shutdown_all

from .conftest import kernel_children


@pytest.fixture(autouse=True)
def _fresh_pool():
    run_sync(shutdown_all(), timeout=60)
    yield
    run_sync(shutdown_all(), timeout=60)


def child_pid(result) -> int:  # noqa: ANN001
    return int(result.turns[0].code[0].output.strip())


def test_second_run_takes_the_warm_spare(make_rlm, server) -> None:
    for _ in range(3):
        server.add("root", code_reply("import os\nprint(os.getpid())"), code_reply("SUBMIT(x)"))
    rlm = make_rlm(warm_kernels=True)
    first = rlm.run("q", x=1)
    assert first.answer == 1
    spare = run_sync(POOL._spare, timeout=60)  # started after the first run ended
    spare_pid = run_sync(_kernel_pid(spare), timeout=30)
    second = rlm.run("q", x=2)
    assert second.answer == 2
    assert child_pid(second) == spare_pid != child_pid(first)
    # the spare's variables never leak into the run that takes it: a fresh namespace with only x
    third = rlm.run("q", x=3)
    assert third.answer == 3 and child_pid(third) not in (child_pid(first), child_pid(second))


async def _kernel_pid(workspace) -> int:  # noqa: ANN001
    res = await workspace.kernel.execute("import os; print(os.getpid())", timeout=30, max_output_chars=100)
    return int(res.output.strip())


def test_session_keeps_variables_and_tells_the_model(shell, server, capsys) -> None:
    server.add(
        "root",
        code_reply("by_region = context.groupby('k').v.sum()\nSUBMIT(f'top is {by_region.idxmax()}')"),
        code_reply("print(type(by_region).__name__, by_region.to_dict())\nSUBMIT(by_region.idxmin())"),
    )
    shell.user_ns["df"] = pd.DataFrame({"k": ["a", "b", "b"], "v": [5, 1, 1]})
    assert shell.run_cell('%%rlm context=df session=sales question="Which k has most v?"').error_in_exec is None
    assert shell.user_ns["_rlm"].answer == "top is a"
    assert shell.run_cell('%%rlm session=sales question="And which has least?"').error_in_exec is None
    second = shell.user_ns["_rlm"]
    assert second.answer == "b"
    assert second.turns[0].code[0].output.startswith("Series {'a': 5, 'b': 2}")
    first_user = server.requests_for("root")[1].messages[1]["content"]
    assert "Variables left from earlier questions in this session" in first_user
    assert "- by_region: Series" in first_user and "- context: DataFrame" in first_user
    assert "Q: Which k has most v?" in first_user and "A: top is a" in first_user
    capsys.readouterr()
    shell.run_cell("%rlm sessions")
    listing = capsys.readouterr().out
    assert "sales" in listing and "2 run(s)" in listing and "alive" in listing
    shell.run_cell("%rlm end sales")
    assert "sales" not in SESSIONS
    res = shell.run_cell("%rlm end sales")
    assert "no session named 'sales'" in str(res.error_in_exec)


def test_exit_stops_spares_and_sessions_and_removes_folders(tmp_path: Path, server) -> None:
    """A notebook process that exits leaves no kernel and no scratch folder behind."""
    server.add("root", code_reply("import os\nprint(os.getcwd())\nSUBMIT(1)"))
    script = tmp_path / "nb.py"
    script.write_text(textwrap.dedent(f"""
        import os
        from rlm_magic import RLM
        res = RLM(model="openai/root", api_base={server.url!r}, num_retries=0, verbose=False,
                  session="keep").run("q", x=1)
        print(res.turns[0].code[0].output.strip().splitlines()[0])
        from rlm_magic.runner import run_sync
        from rlm_magic.workspace import POOL
        run_sync(POOL._spare, timeout=60)  # make sure the spare is really running before exit
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert out.returncode == 0, out.stderr
    work_dir = Path(out.stdout.strip().splitlines()[0])
    assert work_dir.name == "work"
    assert not work_dir.parent.exists()
    assert not kernel_children()
    leftovers = subprocess.run(["pgrep", "-f", str(work_dir.parent)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def test_cold_kernel_starts_alongside_the_first_model_call(make_rlm, server, tmp_path, monkeypatch) -> None:
    """With no spare, the first model call does not wait for the kernel; a kernel that cannot start
    still ends the run with the reason, and a run that never needs the kernel leaves nothing behind."""
    import glob

    before = set(glob.glob("/dev/shm/rlm-*"))
    server.add("root", "FINAL(no code needed)")
    res = make_rlm(warm_kernels=False).run("q", x=1)
    assert res.status == "finished" and res.answer == "no code needed"
    assert kernel_children() == [] and set(glob.glob("/dev/shm/rlm-*")) <= before

    (tmp_path / "sitecustomize.py").write_text("import os\nos._exit(3)\n")  # every new interpreter dies at once
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    server.add("root", code_reply("print(1)"))
    res = make_rlm(warm_kernels=False).run("q", x=1)
    assert res.status == "error" and "did not start" in res.error, res.error
    # the root model had already been asked (the start ran alongside it); the failure surfaced before any code
    assert [c.role for c in res.calls] == ["root"] and res.turns[0].code == []
    assert kernel_children() == [] and set(glob.glob("/dev/shm/rlm-*")) <= before
