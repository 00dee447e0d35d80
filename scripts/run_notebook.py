#!/usr/bin/env python3
"""Execute a notebook headless and save the executed copy plus an HTML rendering.

    python scripts/run_notebook.py NOTEBOOK --out DIR

Why this script exists: ``scripts/quickstart.sh`` has to prove, on a fresh
machine and without a browser, that an example notebook runs top to bottom,
and it has to leave something a person can open afterwards.  ``jupyter
nbconvert --execute`` nearly does that, but it resolves the ``python3`` kernel
through the Jupyter search path, where a user-level or system kernelspec can
silently shadow the project's virtual environment and run the notebook against
a different Python with different packages.  Here the ``python3`` kernel is
pinned to *this* interpreter (``sys.executable``), the kernel's working
directory is the notebook's own folder (so relative paths in the notebook
work), and a failing cell still leaves the partially executed notebook and its
HTML behind for inspection while the exit status reports the failure.

Outputs: ``DIR/<name>.ipynb`` (executed notebook) and ``DIR/<name>.html``
(nbconvert's HTMLExporter, nothing fetched or embedded from the network at
conversion time).  Exit status: 0 on success, 1 when a cell fails, times out
or the kernel dies, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

# Before any Jupyter import: prefer this environment's Jupyter data (kernels,
# nbconvert templates) over the user's, and make this venv's tools (python,
# pip, jupyter) the first found by the kernel and anything it spawns.
os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
_BIN_DIR = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN_DIR:
    os.environ["PATH"] = os.pathsep.join([_BIN_DIR, os.environ.get("PATH", "")]).rstrip(os.pathsep)

import nbformat  # noqa: E402
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError  # noqa: E402
from nbconvert import HTMLExporter  # noqa: E402
from traitlets import default  # noqa: E402

KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600


class _ThisPythonKernelSpecManager(KernelSpecManager):
    """Resolve ``python3`` to an ipykernel running on ``sys.executable``.

    Every other kernel name goes through the normal Jupyter lookup.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == KERNEL_NAME:
            from ipykernel.kernelspec import RESOURCES, get_kernel_dict

            spec: dict[str, Any] = get_kernel_dict()  # argv[0] is sys.executable
            return self.kernel_spec_class(resource_dir=RESOURCES, **spec)
        return super().get_kernel_spec(kernel_name)


class _ThisPythonKernelManager(AsyncKernelManager):
    """nbclient's default (async) kernel manager, with ``python3`` = this interpreter.

    Must stay async: with the blocking ``KernelManager`` nbclient's per-cell
    timeout never fires.
    """

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return _ThisPythonKernelSpecManager(data_dir=self.data_dir)


def _write_outputs(nb: nbformat.NotebookNode, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write the (possibly partially) executed notebook and its HTML copy."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ipynb_path = out_dir / f"{stem}.ipynb"
    html_path = out_dir / f"{stem}.html"
    nbformat.write(nb, str(ipynb_path))
    exporter = HTMLExporter()  # embed_images stays False: no fetching, no inlining
    body, _resources = exporter.from_notebook_node(nb)
    html_path.write_text(body, encoding="utf-8")
    return ipynb_path, html_path


def run(notebook: Path, out_dir: Path, timeout: int = CELL_TIMEOUT_S) -> int:
    """Execute ``notebook`` in its own folder; write results to ``out_dir``.

    Returns the process exit status (0 ok, 1 execution failed).
    """
    notebook = notebook.resolve()
    out_dir = out_dir.resolve()
    stem = notebook.stem
    if (out_dir / f"{stem}.ipynb") == notebook:
        print(f"run_notebook: refusing to overwrite the source notebook {notebook}; pick another --out", file=sys.stderr)
        return 2

    nb = nbformat.read(str(notebook), as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        kernel_manager_class=_ThisPythonKernelManager,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    print(f"run_notebook: executing {notebook} (kernel {KERNEL_NAME} on {sys.executable}, cwd {notebook.parent})")

    failure: str | None = None
    try:
        client.execute()
    except CellTimeoutError as exc:
        failure = f"a cell ran longer than {timeout} s:\n{exc}"
    except DeadKernelError as exc:
        failure = f"the kernel died:\n{exc}"
    except CellExecutionError as exc:
        failure = f"a cell raised an error:\n{exc}"

    ipynb_path, html_path = _write_outputs(nb, out_dir, stem)
    if failure is not None:
        print(f"run_notebook: FAILED: {notebook.name}: {failure}", file=sys.stderr)
        print(f"run_notebook: partial results written to {ipynb_path} and {html_path}", file=sys.stderr)
        return 1
    print(f"run_notebook: executed notebook: {ipynb_path}")
    print(f"run_notebook: HTML copy:         {html_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute a notebook headless; write DIR/<name>.ipynb and DIR/<name>.html.")
    parser.add_argument("notebook", type=Path, help="notebook to execute")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the executed notebook and HTML")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help=f"per-cell timeout in seconds (default {CELL_TIMEOUT_S})")
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        parser.error(f"notebook not found: {args.notebook}")
    return run(args.notebook, args.out, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
