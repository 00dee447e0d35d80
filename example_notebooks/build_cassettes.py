#!/usr/bin/env python3
"""Rebuild the tutorials' bundled cassettes and their stored outputs.

    python example_notebooks/build_cassettes.py                 # every tutorial
    python example_notebooks/build_cassettes.py quickstart ...  # some of them

For each notebook ``<name>.ipynb`` this

1. starts a :class:`~rlm_magic.scripted.ScriptedServer` on 127.0.0.1 that
   answers with the replies written in ``tutorial_scripts.py`` (they were NOT
   recorded from a live model);
2. executes the notebook with nbclient in RECORD mode into a fresh
   ``cassettes/<name>.jsonl``.  The environment variables ``RLM_CASSETTE``,
   ``RLM_CASSETTE_MODE=record`` and ``RLM_API_BASE`` override what the
   notebook's set-up cell configures with ``%config`` / ``%rlm replay``;
3. stops the server and executes the notebook twice more in REPLAY mode,
   exactly as a reader (or ``pytest --nbval``) would, checks that the two
   replays print the same outputs (after ``sanitize.cfg``), and stores the
   outputs of the replay in the ``.ipynb`` for nbval to compare.

Re-run it whenever the prompts, the data descriptions or a tutorial's code
change: a cassette matches calls exactly, so such a change makes the stored
cassette miss.  Nothing here reaches the network or a real model.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")

import nbformat  # noqa: E402
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from traitlets import default  # noqa: E402

sys.path.insert(0, str(HERE))
from tutorial_scripts import SCRIPTS, errors_of  # noqa: E402

from rlm_magic.scripted import ScriptedServer  # noqa: E402

#: Variables that would change what a notebook does; never passed to its kernel.
_SCRUB = ("RLM_MODEL", "RLM_SUB_MODEL", "RLM_API_BASE", "RLM_CASSETTE", "RLM_CASSETTE_MODE", "RLM_OFFLINE",
          "RLM_VIEW", "JPY_SESSION_NAME", "VSCODE_PID")


class _SpecManager(KernelSpecManager):
    """``python3`` is ipykernel on this interpreter, whatever kernelspecs the machine has."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == "python3":
            from ipykernel.kernelspec import RESOURCES, get_kernel_dict

            return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
        return super().get_kernel_spec(kernel_name)


class _KernelManager(AsyncKernelManager):
    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return _SpecManager(data_dir=self.data_dir)


def kernel_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUB and not k.endswith("_API_KEY")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env.update(extra)
    return env


def execute(path: Path, env: dict[str, str]) -> tuple[nbformat.NotebookNode, float]:
    """Execute a fresh copy of the notebook in its own folder; returns it and the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", kernel_manager_class=_KernelManager,
                            record_timing=False, resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute(env=env)
    seconds = time.monotonic() - started
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = coalesce_streams(cell.outputs)
    return nb, seconds


def coalesce_streams(outputs: list[Any]) -> list[Any]:
    """Merge consecutive prints to the same stream into one output, as Jupyter shows them."""
    merged: list[Any] = []
    for out in outputs:
        if (out.output_type == "stream" and merged and merged[-1].output_type == "stream"
                and merged[-1].name == out.name):
            merged[-1].text += out.text
        else:
            merged.append(out)
    return merged


def sanitize_patterns() -> list[tuple[str, str]]:
    text = (HERE / "sanitize.cfg").read_text(encoding="utf-8")
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE)


def comparable(nb: nbformat.NotebookNode) -> list[list[Any]]:
    """Each code cell's outputs as nbval compares them: streams merged, sanitized, metadata left out."""
    patterns = sanitize_patterns()

    def clean(text: Any) -> Any:
        if isinstance(text, str):
            for regex, replace in patterns:
                text = re.sub(regex, replace, text)
        return text

    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        streams: dict[str, str] = {}
        others = []
        for out in cell.outputs:
            if out.output_type == "stream":
                streams[out.name] = streams.get(out.name, "") + out.text
            elif out.output_type == "error":
                others.append(("error", out.ename, clean(out.evalue)))
            else:
                others.append(sorted((k, clean(v)) for k, v in out.get("data", {}).items()
                                     if k != "application/vnd.jupyter.widget-view+json"))
        cells.append([sorted((k, clean(v)) for k, v in streams.items()), others])
    return cells


def check_no_errors(nb: nbformat.NotebookNode, name: str) -> None:
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                raise SystemExit(f"{name}: cell {i} raised {out.ename}: {out.evalue}")
            if out.output_type == "stream" and out.name == "stderr":
                raise SystemExit(f"{name}: cell {i} wrote to stderr (nbval would compare it):\n{out.text}")


def build(name: str) -> float:
    path = HERE / f"{name}.ipynb"
    cassette = HERE / "cassettes" / f"{name}.jsonl"
    cassette.parent.mkdir(exist_ok=True)
    cassette.write_text("", encoding="utf-8")  # fresh; it also lets the notebook's `%rlm replay` line pass
    models = SCRIPTS[name]()
    server = ScriptedServer(models).start()
    try:
        print(f"[{name}] recording against the scripted stand-in at {server.url}")
        recorded, seconds = execute(path, kernel_env(RLM_CASSETTE=str(cassette), RLM_CASSETTE_MODE="record",
                                                     RLM_API_BASE=server.url))
    finally:
        server.stop()
    problems = errors_of(models)
    if problems:
        raise SystemExit(f"{name}: the scripted model could not answer:\n  " + "\n  ".join(problems))
    check_no_errors(recorded, f"{name} (record)")
    lines = sum(1 for line in cassette.read_text(encoding="utf-8").splitlines() if line.strip())
    print(f"[{name}] recorded {lines} model calls in {seconds:.1f} s -> {cassette.relative_to(HERE.parent)}")

    first, seconds = execute(path, kernel_env())
    check_no_errors(first, f"{name} (replay)")
    second, _ = execute(path, kernel_env(RLM_OFFLINE="1"))
    if comparable(first) != comparable(second):
        for i, (a, b) in enumerate(zip(comparable(first), comparable(second))):
            if a != b:
                print(f"[{name}] code cell {i} differs between two replays:\n{a}\n---\n{b}", file=sys.stderr)
        raise SystemExit(f"{name}: two replays printed different outputs; make them deterministic "
                         "or sanitize the difference in sanitize.cfg")
    nbformat.write(first, path)
    print(f"[{name}] replayed offline in {seconds:.1f} s; stored outputs in {path.relative_to(HERE.parent)}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"tutorials to rebuild (default: all of {', '.join(SCRIPTS)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SCRIPTS]
    if unknown:
        parser.error(f"no tutorial named {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
    timings = {name: build(name) for name in (args.names or list(SCRIPTS))}
    print("replay times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
