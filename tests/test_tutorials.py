"""The tutorials in example_notebooks/: their record/replay mechanism, their cassettes, the offline main job.

The notebooks' stored outputs themselves are compared by ``pytest --nbval``
(scripts/test.sh).  These tests check what nbval cannot: that a notebook
recorded against a scripted loopback model replays identically once the model
is gone, that the bundled cassettes are well formed and hold no secrets, and
that the README's main job runs the quickstart offline.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

from rlm_magic.cassette import Cassette
from rlm_magic.scripted import Reply, ScriptedServer, code_reply

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "example_notebooks"
CASSETTES = NOTEBOOKS / "cassettes"
TUTORIALS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))

#: The documented fields of a cassette line (rlm_magic/cassette.py).
FIELDS = {"key", "role", "model", "messages", "response", "usage", "cost", "error"}


def _build_module() -> ModuleType:
    """example_notebooks/build_cassettes.py, whose execute/kernel_env/comparable the tutorials are built with."""
    spec = importlib.util.spec_from_file_location("build_cassettes", NOTEBOOKS / "build_cassettes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- (a) record against a scripted server, replay with it stopped ------------------------------------
def _throwaway_notebook(folder: Path) -> Path:
    """A small notebook in the tutorials' shape: set-up cell with `%rlm replay`, a run with sub-calls."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext rlm_magic"),
        nbformat.v4.new_code_cell(
            '%config RLMMagics.model = "openai/root"\n'
            '%config RLMMagics.sub_model = "openai/sub"\n'
            "%rlm replay cassette.jsonl"
        ),
        nbformat.v4.new_code_cell(
            "import pandas as pd\n"
            "df = pd.DataFrame({'x': range(1, 101), 'g': ['a', 'b'] * 50})\n"
            "docs = [f'document {i}: ' + 'word ' * i for i in range(6)]"
        ),
        nbformat.v4.new_code_cell('%%rlm context=df docs=docs question="What is the total of x, per group?"'),
        nbformat.v4.new_code_cell(
            "print(_rlm.status, len(_rlm.turns), len(_rlm.calls))\n"
            "print(sorted(_rlm.usage))\n"
            "per_group"
        ),
    ]
    path = folder / "throwaway.ipynb"
    nbformat.write(nb, path)
    (folder / "cassette.jsonl").write_text("", encoding="utf-8")  # lets `%rlm replay` pass while recording
    return path


def _stand_in() -> ScriptedServer:
    return ScriptedServer({
        "root": [
            code_reply("import os\nprint('working in', os.getcwd())\nprint(context.shape)", "Where am I?"),
            code_reply("notes = llm_query_batched(docs)\nprint(notes)", "Reading the documents."),
            code_reply("per_group = context.groupby('g').x.sum().to_frame('total')\nprint(per_group)"),
            code_reply("SUBMIT(f'The total is {context.x.sum()}.', per_group=per_group)"),
        ],
        "sub": lambda req: Reply(content=f"{len(req.prompt.split())} words"),
    }).start()


def test_recorded_notebook_replays_identically_with_the_server_stopped(tmp_path: Path) -> None:
    build = _build_module()
    path = _throwaway_notebook(tmp_path)
    server = _stand_in()
    try:
        recorded, _ = build.execute(path, build.kernel_env(
            RLM_CASSETTE=str(tmp_path / "cassette.jsonl"), RLM_CASSETTE_MODE="record", RLM_API_BASE=server.url))
        asked = len(server.requests)
    finally:
        server.stop()
    assert asked == 4 + 6  # four root turns, six sub-calls: all went to the live (scripted) server
    lines = (tmp_path / "cassette.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == asked

    replayed, _ = build.execute(path, build.kernel_env(RLM_OFFLINE="1"))
    assert len(server.requests) == asked  # nothing reached the (stopped) server

    for nb in (recorded, replayed):
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
        assert not errors, errors
    log = "".join(o.get("text", "") for o in recorded.cells[3].outputs)
    assert "── finished after 4 turn(s), 10 model call(s) (6 sub-calls) ──" in log
    assert re.search(r"working in /\S+/rlm-\w+/work", log), log  # the volatile scratch path was really printed
    # Identical, cell by cell and output by output, once the run's scratch folder is masked (sanitize.cfg).
    # The recording ran with RLM_CASSETTE overriding the notebook's own %rlm replay line, which the magic
    # rightly warns about; that warning is the only difference the redirect itself causes.
    for cell in recorded.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = "".join(ln for ln in out["text"].splitlines(True) if not ln.startswith("rlm: warning:"))
    assert build.comparable(replayed) == build.comparable(recorded)


# -- (b) the bundled cassettes -------------------------------------------------------------------------
def _setup_cell(nb: nbformat.NotebookNode) -> str:
    """The tutorial's set-up cell: live model and `%rlm record`, or the offline models and `%rlm replay`."""
    return next(c.source for c in nb.cells if c.cell_type == "code" and "%rlm replay cassettes/" in c.source)


def test_every_tutorial_has_its_cassette_and_says_it_was_written_not_recorded() -> None:
    assert set(TUTORIALS) >= {"quickstart", "long_documents", "subcalls_and_budgets", "results_as_variables",
                              "recording_and_replay"}
    assert sorted(p.stem for p in CASSETTES.glob("*.jsonl")) == TUTORIALS
    for name in TUTORIALS:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        top = nb.cells[0].source
        assert nb.cells[0].cell_type == "markdown"
        assert "not recorded from a live model" in top, name
        assert f"cassettes/{name}.jsonl" in top, name
        setup = _setup_cell(nb)
        assert f"%rlm replay cassettes/{name}.jsonl" in setup
        assert f"%rlm record my_{name}.jsonl" in setup


@pytest.mark.parametrize("name", TUTORIALS)
def test_bundled_cassette_is_well_formed_and_holds_no_secrets(name: str) -> None:
    path = CASSETTES / f"{name}.jsonl"
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"\bsk-[A-Za-z0-9]", text)
    assert "authorization" not in text.lower()
    assert "api_key" not in text.lower()
    assert "bearer " not in text.lower()

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    setup = _setup_cell(nb)
    configured = set(re.findall(r'%config RLMMagics\.(?:sub_)?model = "([^"]+)"', setup))
    assert len(configured) == 2, setup

    cassette = Cassette(path, mode="replay")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, f"{path} is empty"
    roles = set()
    for number, line in enumerate(lines, 1):
        entry = json.loads(line)
        where = f"{path.name}:{number}"
        assert set(entry) == FIELDS, where
        assert entry["role"] in ("root", "sub", "final"), where
        roles.add(entry["role"])
        assert entry["model"] in configured, f"{where}: model {entry['model']} is not what the notebook configures"
        assert entry["messages"] and all(set(m) == {"role", "content"} for m in entry["messages"]), where
        assert all(m["role"] in ("system", "user", "assistant") and isinstance(m["content"], str)
                   for m in entry["messages"]), where
        assert set(entry["response"]) == {"content", "reasoning"}, where
        assert isinstance(entry["response"]["content"], str) and entry["response"]["content"], where
        usage = entry["usage"]
        assert isinstance(usage["prompt_tokens"], int) and isinstance(usage["completion_tokens"], int), where
        assert usage.get("estimated") is False, where  # the stand-in reported its (word) counts
        assert entry["cost"] is None or isinstance(entry["cost"], float), where
        assert entry["error"] is None, where
        assert entry["key"] == cassette.key(entry["model"], entry["messages"]), f"{where}: key does not match"
    assert "root" in roles


def test_priced_tutorial_records_real_litellm_costs() -> None:
    """subcalls_and_budgets was recorded with model names litellm prices, so every call has a cost."""
    entries = [json.loads(x) for x in (CASSETTES / "subcalls_and_budgets.jsonl").read_text().splitlines() if x]
    assert {e["model"] for e in entries} == {"openai/gpt-4o", "openai/gpt-4o-mini"}
    assert all(isinstance(e["cost"], float) and e["cost"] > 0 for e in entries)
    assert {e["role"] for e in entries} == {"root", "sub", "final"}


# -- (c) the main job, offline -------------------------------------------------------------------------
def test_main_job_runner_replays_the_quickstart_offline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RLM_") and not k.endswith("_API_KEY") and k not in ("JPY_SESSION_NAME", "VSCODE_PID")}
    # No network: every HTTP client that honours the proxy variables is sent to a closed local port.
    dead = "http://127.0.0.1:9"
    env.update(RLM_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True", HTTP_PROXY=dead, HTTPS_PROXY=dead,
               ALL_PROXY=dead, http_proxy=dead, https_proxy=dead, all_proxy=dead, NO_PROXY="", no_proxy="")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "scripts/run_notebook.py", "example_notebooks/quickstart.ipynb", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    executed, html = out / "quickstart.ipynb", out / "quickstart.html"
    assert executed.is_file() and html.is_file()
    nb = nbformat.read(executed, as_version=4)
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "rlm: replaying model calls from cassettes/quickstart.jsonl" in text
    assert "West has the highest total revenue (54,386,980)" in text
    assert "Basic sold the most units in 2024" in text
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert "West has the highest total revenue" in html.read_text(encoding="utf-8")
