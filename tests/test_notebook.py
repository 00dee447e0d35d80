"""Real notebooks executed end to end with nbclient, against a scripted loopback server.

The notebook kernel is a separate process: it reaches the ScriptedServer
running in this test process over 127.0.0.1, exactly as a user's notebook
would reach vLLM or Ollama through ``api_base``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from rlm_magic.scripted import ScriptedServer, code_reply

HERE = Path(__file__).parent
NOTEBOOKS = HERE.parent / "example_notebooks"


def run_notebook(nb: nbformat.NotebookNode, cwd: Path, env: dict[str, str] | None = None) -> nbformat.NotebookNode:
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    old = {}
    for k, v in (env or {}).items():
        old[k] = os.environ.get(k)
        os.environ[k] = v
    try:
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def text_of(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "".join(parts)


def test_foreign_notebook_with_card_syntax(tmp_path: Path) -> None:
    """A notebook written the way a user would, pointed at an OpenAI-compatible server by api_base."""
    server = ScriptedServer({
        "analyst": [
            code_reply("print(context.groupby('region')['revenue'].sum())", "Totals first."),
            code_reply(
                "t = context.groupby('region')['revenue'].sum()\n"
                "note = llm_query('Why might ' + t.idxmax() + ' lead?')\n"
                "SUBMIT(answer=t.idxmax() + ': ' + note, totals=t.to_frame(), best=t.idxmax())"
            ),
        ],
        "reader": lambda req: "because of its volume" if "Why might" in req.prompt else "?",
    }).start()
    try:
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell("%load_ext rlm_magic"),
            nbformat.v4.new_code_cell(
                "import pandas as pd\n"
                "df = pd.DataFrame({'region': ['N', 'S', 'S', 'E'] * 250_000, 'revenue': [1.0, 2.0, 3.0, 0.5] * 250_000})"
            ),
            nbformat.v4.new_code_cell(
                f'%%rlm context=df model=openai/analyst sub_model=openai/reader api_base={server.url} '
                'question="Which region has the highest total revenue, and why?"'
            ),
            nbformat.v4.new_code_cell("print(_rlm.status, best, type(totals).__name__, totals.loc['S', 'revenue'])"),
        ]
        env = {k: v for k, v in os.environ.items()}
        run_notebook(nb, tmp_path, env={"OPENAI_API_KEY": ""} if "OPENAI_API_KEY" in env else None)
    finally:
        server.stop()
    answer_cell = nb.cells[2]
    bundle = next(o for o in answer_cell.outputs if o.output_type == "execute_result")["data"]
    assert bundle["text/markdown"].startswith("S: because of its volume")
    assert "S: because of its volume" in bundle["text/plain"]
    assert "── turn 1 ──" in text_of(answer_cell)
    assert text_of(nb.cells[3]).strip() == "finished S DataFrame 1250000.0"
    sub = server.requests_for("reader")
    assert [r.prompt for r in sub] == ["Why might S lead?"]


def test_quickstart_notebook_runs_offline(tmp_path: Path) -> None:
    """Opened with no model configured, the quickstart replays its bundled cassette: no network, no key."""
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    saved = {k: os.environ.pop(k) for k in ("RLM_OFFLINE", "RLM_CASSETTE", "RLM_CASSETTE_MODE") if k in os.environ}
    try:
        run_notebook(nb, NOTEBOOKS)
    finally:
        os.environ.update(saved)
    outputs = "\n".join(text_of(c) for c in nb.cells if c.cell_type == "code")
    assert "rlm: replaying model calls from cassettes/quickstart.jsonl" in outputs
    assert "West has the highest total revenue" in outputs
    assert "finished after 4 turns" in outputs
    assert "Basic sold the most units in 2024" in outputs
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
