"""JupyterLab on 127.0.0.1, watched through Debian's chromium driven by playwright.

The pieces a browser test needs, kept free of anything rlm-specific:

* :func:`unavailable` -- skip (or, under ``CI=true``, fail) when the stack is missing;
* :func:`start_lab` / :class:`Lab` -- a throwaway JupyterLab server (temporary
  config, runtime, settings and workspace folders; random token; free port),
  stopped by PID together with every process it started;
* :func:`launch_chromium` -- ``/usr/bin/chromium``, headless, never a
  playwright-downloaded browser;
* :func:`open_notebook`, :func:`wait_kernel_ready`, :func:`run_all` -- the
  JupyterLab steps, through ``window.jupyterapp`` (``expose_app_in_browser``),
  which is more reliable than clicking menus.

See ``../shared/BROWSER_TEST_NOTES.md`` for why each step is done this way.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM = "/usr/bin/chromium"

#: Headless chromium as root in a container, with no network chatter of its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-pings",
]

#: Screenshots and failure captures (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when ``CI=true``: CI must not pass by skipping."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def require_stack() -> None:
    """Check that playwright, jupyterlab and ``/usr/bin/chromium`` are all there."""
    for module in ("playwright.sync_api", "jupyterlab"):
        try:
            __import__(module)
        except ImportError as exc:
            unavailable(f"{module} is not importable ({exc}); install the [test] extra (bash scripts/setup.sh)")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} not found; install Debian's chromium (RLM_APT=1 bash scripts/setup.sh, as root)")


def launch_chromium(playwright: Any) -> Any:
    """Start headless ``/usr/bin/chromium`` (never ``playwright install``)."""
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
    except Exception as exc:  # playwright raises its own Error types
        unavailable(f"{CHROMIUM} did not start under playwright: {exc}")


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) for every readable process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live process below ``root``."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found[pid] = table[pid][1]
            todo.extend(children.get(pid, []))
    return found


def _alive(pid: int, started: str) -> bool:
    """True while ``pid`` is the same process (not exited, not reused, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[19] == started and stat[0] != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------
# JupyterLab
# ---------------------------------------------------------------------------


@dataclass
class Lab:
    """A running JupyterLab server; :meth:`stop` ends it and everything it started."""

    proc: subprocess.Popen[bytes]
    port: int
    token: str
    root: Path
    log: Path
    _seen: dict[int, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, name: str) -> str:
        return f"{self.base}/lab/tree/{name}?reset&token={self.token}"

    def api(self, method: str, path: str, timeout: float = 10) -> Any:
        req = urllib.request.Request(
            f"{self.base}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def remember_children(self) -> None:
        """Note the server's descendants now, so that orphans can be found later."""
        self._seen.update(descendants(self.proc.pid))

    def shutdown_kernels(self) -> None:
        """Shut down every kernel through the REST API (kernels get to clean up their own children)."""
        self.remember_children()
        try:
            for kernel in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        """Shut kernels down, SIGTERM the server's process group, then SIGKILL whatever remains."""
        if self.proc.poll() is None:
            self.shutdown_kernels()
        self.remember_children()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        # Kernels run in sessions of their own, so the process group does not
        # reach them; kill what is still alive from the descendants we saw.
        deadline = time.monotonic() + 5
        while any(_alive(p, s) for p, s in self._seen.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid, started in self._seen.items():
            if _alive(pid, started):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


def start_lab(root: Path, state: Path, env: dict[str, str] | None = None, timeout: float = 60) -> Lab:
    """Start ``python -m jupyterlab`` serving ``root``; temporary Jupyter folders live under ``state``.

    ``env`` is added to this process's environment; kernels inherit it.
    """
    dirs = {
        "JUPYTER_CONFIG_DIR": state / "config",
        "JUPYTER_RUNTIME_DIR": state / "runtime",
        "JUPYTER_DATA_DIR": state / "data",
        "JUPYTERLAB_SETTINGS_DIR": state / "settings",
        "JUPYTERLAB_WORKSPACES_DIR": state / "workspaces",
        "IPYTHONDIR": state / "ipython",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    # The news pop-up appears even with news_url=None: disable its plugin.
    labconfig = dirs["JUPYTER_CONFIG_DIR"] / "labconfig"
    labconfig.mkdir(exist_ok=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )

    # Save widget state with the notebook (a JupyterLab setting, off by default), so a finished run's
    # view is kept in the saved file and can be checked there.
    widget_settings = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyter-widgets" / "jupyterlab-manager"
    widget_settings.mkdir(parents=True, exist_ok=True)
    (widget_settings / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))

    port, token = free_port(), secrets.token_hex(16)
    full_env = {**os.environ, **{k: str(v) for k, v in dirs.items()}, "JUPYTER_PREFER_ENV_PATH": "1", **(env or {})}
    full_env.pop("JUPYTER_TOKEN", None)
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
    ]
    log = state / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    lab = Lab(proc=proc, port=port, token=token, root=root, log=log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {proc.returncode}:\n{lab.log_tail()}")
        try:
            lab.api("GET", "/api/status", timeout=2)
            return lab
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            lab.stop()
            raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")
        time.sleep(0.2)


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------

#: The open notebook panel's kernel, as JupyterLab's own objects see it.
_KERNEL_STATE_JS = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell && app.shell.currentWidget;
  const ctx = panel && panel.sessionContext;
  const kernel = ctx && ctx.session && ctx.session.kernel;
  if (!kernel || !panel.content) return null;
  return {
    connection: kernel.connectionStatus,
    status: kernel.status,
    ready: !!(ctx.isReady && panel.context && panel.context.isReady),
    counts: panel.content.widgets
      .filter(c => c.model.type === 'code')
      .map(c => c.model.executionCount),
  };
}"""


def kernel_state(page: Any) -> dict[str, Any] | None:
    return page.evaluate(_KERNEL_STATE_JS)


def open_notebook(page: Any, lab: Lab, name: str, timeout: float = 60) -> None:
    page.goto(lab.notebook_url(name), wait_until="domcontentloaded", timeout=timeout * 1000)
    page.wait_for_function("() => !!window.jupyterapp", timeout=timeout * 1000)


#: One shell round trip (the request the widget manager sends when it connects).
_COMM_INFO_JS = """async () => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const reply = await kernel.requestCommInfo({target_name: 'jupyter.widget'});
  return reply.content.status;
}"""


def wait_kernel_ready(page: Any, timeout: float = 60) -> None:
    """Wait until the notebook's kernel is connected and idle and answers a shell request.

    "Idle" alone comes too early (see the notes); the comm-info round trip
    also queues behind the widget manager's own request, if it sent one.
    """
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = kernel_state(page)
        if state and state["ready"] and state["connection"] == "connected" and state["status"] == "idle":
            if page.evaluate(_COMM_INFO_JS) == "ok":
                return
        time.sleep(0.2)
    raise AssertionError(f"the notebook's kernel was not connected and idle within {timeout:.0f} s: {state}")


def run_all(page: Any, started_within: float = 10, attempts: int = 3) -> None:
    """Run every cell with the ``notebook:run-all-cells`` command and check that running began.

    A kernel that reports idle may not take the first request yet (see the
    notes), so if no cell got an execution count or made the kernel busy,
    the command is sent again.
    """
    for attempt in range(attempts):
        # Not awaited: the command's promise settles only when every cell has run.
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        deadline = time.monotonic() + started_within
        while time.monotonic() < deadline:
            state = kernel_state(page)
            if state and (state["status"] == "busy" or any(c is not None for c in state["counts"])):
                return
            time.sleep(0.1)
    raise AssertionError(f"Run All did not start the notebook after {attempts} attempts: {kernel_state(page)}")


def wait_all_executed(page: Any, timeout: float = 60) -> dict[str, Any]:
    """Wait until every code cell has an execution count and the kernel is idle."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = kernel_state(page)
        if state and state["status"] == "idle" and all(c is not None for c in state["counts"]):
            return state
        time.sleep(0.2)
    raise AssertionError(f"the notebook did not finish within {timeout:.0f} s: {state}")


def output_texts(page: Any) -> list[str]:
    """textContent of each code cell's output area, in order."""
    return page.evaluate(
        """() => window.jupyterapp.shell.currentWidget.content.widgets
             .filter(c => c.model.type === 'code')
             .map(c => c.outputArea.node.textContent)"""
    )


def output_errors(page: Any) -> list[str]:
    """Error outputs (ename: evalue) of all code cells, as the notebook model holds them."""
    return page.evaluate(
        """() => {
          const errs = [];
          for (const c of window.jupyterapp.shell.currentWidget.content.widgets) {
            if (c.model.type !== 'code') continue;
            const outs = c.model.outputs;
            for (let i = 0; i < outs.length; i++) {
              const o = outs.get(i).toJSON();
              if (o.output_type === 'error') errs.push(o.ename + ': ' + o.evalue);
            }
          }
          return errs;
        }"""
    )


def write_notebook(lab: Lab, name: str, cells: list[str], metadata: dict[str, Any] | None = None) -> Path:
    """Write a notebook of code cells into the server's root folder, with a python3 kernelspec."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata.update(metadata or {})
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    path = lab.root / name
    nbformat.write(nb, path)
    return path


def wait_for(page: Any, js: str, timeout: float = 30, what: str = "") -> Any:
    """Poll ``js`` (a JS function) with ``page.evaluate`` until it returns something truthy.

    Used instead of ``page.wait_for_selector``, which in this set-up only
    returned once the running cell had finished -- useless for watching a
    live view.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(js)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or js}")
        time.sleep(0.1)


def wait_for_selector(page: Any, selector: str, timeout: float = 30) -> None:
    wait_for(page, f"() => !!document.querySelector({json.dumps(selector)})", timeout, f"{selector!r} to appear")


def screenshot(page: Any, selector: str, name: str) -> Path:
    """Screenshot of the first element matching ``selector`` into tests/artifacts/browser/``name``.

    The element's box is measured with ``evaluate`` and passed as a clip, so
    nothing waits on playwright's actionability checks while a cell runs.
    """
    box = page.evaluate(
        """sel => { const e = document.querySelector(sel); if (!e) return null;
                    e.scrollIntoView({block: 'start'});
                    const r = e.getBoundingClientRect();
                    return {x: r.x, y: r.y, width: r.width, height: r.height}; }""",
        selector,
    )
    if not box:
        raise AssertionError(f"nothing matches {selector!r} to screenshot")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    pad = 4
    clip = {"x": max(0, box["x"] - pad), "y": max(0, box["y"] - pad),
            "width": box["width"] + 2 * pad, "height": box["height"] + 2 * pad}
    page.screenshot(path=str(path), clip=clip, full_page=True, animations="disabled")
    return path
