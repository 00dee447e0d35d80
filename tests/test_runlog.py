"""Every run is logged as it goes; a notebook process that dies mid-run loses nothing it had done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from rlm_magic import RLMResult, load_run
from rlm_magic.runlog import list_runs
from rlm_magic.scripted import code_reply



def test_finished_run_is_logged_and_restored(make_rlm, server, tmp_path: Path) -> None:
    server.add("root", code_reply("print('hello')"), code_reply("SUBMIT(answer='done', n=2)"))
    res = make_rlm(run_log_dir=str(tmp_path)).run("q", x=1)
    assert res.log and Path(res.log).parent == tmp_path
    lines = [json.loads(x) for x in Path(res.log).read_text().splitlines()]
    kinds = [x["event"] for x in lines]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished" and "CodeFinished" in kinds
    restored = load_run(res.log)
    assert isinstance(restored, RLMResult)
    assert (restored.answer, restored.fields, restored.status, len(restored.turns)) == ("done", {"answer": "done", "n": 2},
                                                                                         "finished", 2)
    assert list_runs(tmp_path)[0][0] == Path(res.log)


def test_killed_notebook_process_loses_nothing(server, tmp_path: Path) -> None:
    server.add("root", code_reply("import os\nprint('first-turn-output', os.getpid())"),
               code_reply("import time\ntime.sleep(120)"))
    logs = tmp_path / "logs"
    script = tmp_path / "nb.py"
    script.write_text(textwrap.dedent(f"""
        from rlm_magic import RLM
        RLM(model="openai/root", api_base={server.url!r}, num_retries=0, verbose=False, warm_kernels=False,
            run_log_dir={str(logs)!r}).run("long question", x=1)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    deadline = time.monotonic() + 90
    log = None
    while time.monotonic() < deadline:
        found = list(logs.glob("*.jsonl")) if logs.exists() else []
        if found and '"CodeStarted", "t"' in found[0].read_text() and found[0].read_text().count("CodeStarted") >= 2:
            log = found[0]
            break
        time.sleep(0.2)
    assert log is not None, "the run never reached its second block"
    os.kill(proc.pid, signal.SIGKILL)  # the notebook kernel dies mid-run
    proc.wait(timeout=30)
    restored = load_run(log)
    assert restored.status == "interrupted" and restored.question == "long question"
    assert "first-turn-output" in restored.turns[0].code[0].output
    assert len(restored.turns) == 2 and restored.turns[1].code == []  # the second block never finished
    child = int(restored.turns[0].code[0].output.split()[-1])
    deadline = time.monotonic() + 15  # the orphaned REPL notices its parent is gone and exits
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.2)
    assert not _alive(child), "the REPL kernel outlived the dead notebook process"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_magic_runs_command_lists_and_restores(shell, server, capsys) -> None:
    server.add("root", code_reply("SUBMIT('logged answer')"))
    shell.run_cell('%%rlm x=1 question="q"')
    capsys.readouterr()
    shell.run_cell("%rlm runs")
    listing = capsys.readouterr().out
    assert "finished" in listing and "'q'" in listing
    shell.user_ns.pop("_rlm")
    shell.run_cell("%rlm runs load 1")
    assert shell.user_ns["_rlm"].answer == "logged answer"


def test_big_frames_are_named_not_written_in_the_log(make_rlm, server, tmp_path: Path) -> None:
    server.add("root", code_reply("import numpy as np, pandas as pd\n"
                                  "SUBMIT(answer='big', frame=pd.DataFrame({'a': np.zeros(2_000_000)}), "
                                  "small=pd.DataFrame({'b': [1, 2]}))"))
    res = make_rlm(run_log_dir=str(tmp_path)).run("q", x=1)
    assert len(res.fields["frame"]) == 2_000_000  # the notebook got the frame itself
    assert Path(res.log).stat().st_size < 2_000_000  # the log did not (16 MB of float64)
    restored = load_run(res.log)
    assert "not written to the run log" in restored.fields["frame"]
    assert list(restored.fields["small"]["b"]) == [1, 2]
