"""Fixtures of the browser tests: one scripted model server and one JupyterLab per session, chromium per test.

The scripted server starts first so that its URL can reach the notebook
kernels through the environment (``RLM_TEST_API_BASE``): kernels inherit the
JupyterLab server's environment.  Each test scripts the server's models itself
and gets a fresh browser page.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from rlm_magic.scripted import ScriptedServer

from . import harness


@pytest.fixture(scope="session")
def model_server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def lab(model_server: ScriptedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Lab]:
    harness.require_stack()
    base = tmp_path_factory.mktemp("lab")
    root, state = base / "root", base / "state"
    root.mkdir()
    env = {
        "RLM_TEST_API_BASE": model_server.url,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "RLM_OFFLINE": "1",
    }
    # No real key should travel to a kernel that only talks to 127.0.0.1.
    env.update({k: "" for k in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY") if k in os.environ})
    try:
        server = harness.start_lab(root, state, env)
    except RuntimeError as exc:
        harness.unavailable(f"JupyterLab did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(lab: harness.Lab) -> Iterator[Any]:
    """Chromium for one test.

    Not session-scoped on purpose: while playwright's sync API is started, the
    thread counts as running an event loop, and asyncio.run() in later,
    unrelated tests would fail.
    """
    from playwright.sync_api import sync_playwright

    try:
        driver = sync_playwright().start()
    except Exception as exc:
        harness.unavailable(f"playwright's driver did not start: {exc}")
    try:
        chromium = harness.launch_chromium(driver)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        driver.stop()


@pytest.fixture
def page(browser: Any, lab: harness.Lab, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; on failure a screenshot and the browser console go to tests/artifacts/browser/."""
    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    console: list[str] = []
    pg.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
    pg.on("pageerror", lambda exc: console.append(f"[pageerror] {exc}"))
    pg.console_log = console  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            harness.ARTIFACTS.mkdir(parents=True, exist_ok=True)
            stem = request.node.name
            try:
                pg.screenshot(path=str(harness.ARTIFACTS / f"{stem}-failure.png"), full_page=True)
            except Exception:
                pass
            (harness.ARTIFACTS / f"{stem}-console.txt").write_text("\n".join(console))
            (harness.ARTIFACTS / f"{stem}-jupyterlab.log").write_text(lab.log_tail(200_000))
        context.close()
        lab.shutdown_kernels()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep

