"""Shared fixtures: a scripted loopback model server, RLM factories, a real IPython shell.

Every model call in the suite goes through litellm's real code path to a
ScriptedServer on 127.0.0.1; nothing reaches a real API.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
# Run logs of the suite (and of notebooks it starts) go to a throwaway folder, not ~/.cache.
import tempfile  # noqa: E402

os.environ.setdefault("RLM_RUN_LOG_DIR", tempfile.mkdtemp(prefix="rlm-test-runs-"))

from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import pytest  # noqa: E402

from rlm_magic import RLM  # noqa: E402
from rlm_magic.scripted import ScriptedServer  # noqa: E402

ROOT = "openai/root"
SUB = "openai/sub"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """sandbox=strict tests need bubblewrap: in CI they fail without it; elsewhere they skip, saying why."""
    import shutil

    if shutil.which("bwrap") or os.environ.get("CI") == "true":
        return
    skip = pytest.mark.skip(reason="bubblewrap is not installed (apt-get install bubblewrap, "
                                   "or RLM_APT=1 bash scripts/setup.sh as root)")
    for item in items:
        if "strict" in item.nodeid:
            item.add_marker(skip)


def kernel_children() -> list[tuple[int, str]]:
    """Processes descended from this test process that run an ipykernel."""
    from rlm_magic.sandbox import descendants

    out = []
    for pid in descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ipykernel" in cmd:
            out.append((pid, cmd))
    return out


@pytest.fixture(scope="session", autouse=True)
def no_kernel_left_behind() -> Iterator[None]:
    """After the whole session, no child kernel may still be running."""
    yield
    import time

    from rlm_magic.runner import run_sync
    from rlm_magic.workspace import shutdown_all

    run_sync(shutdown_all(), timeout=60)  # what interpreter exit does for spares and sessions
    deadline = time.monotonic() + 10
    left = kernel_children()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = kernel_children()
    assert not left, f"kernel processes left behind: {left}"


@pytest.fixture(autouse=True)
def _no_spare_kernels_between_tests() -> Iterator[None]:
    """A spare or session kernel one test left running must not show up in another's process checks."""
    yield
    from rlm_magic.runner import run_sync
    from rlm_magic.workspace import POOL, SESSIONS, shutdown_all

    if POOL._spare is not None or SESSIONS:
        run_sync(shutdown_all(), timeout=60)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RLM_MODEL", "RLM_SUB_MODEL", "RLM_API_BASE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def make_rlm(server: ScriptedServer) -> Callable[..., RLM]:
    """RLM wired to the scripted server: root model 'root', sub-model 'sub', no retries, quiet."""

    def make(**settings: Any) -> RLM:
        base: dict[str, Any] = dict(model=ROOT, sub_model=SUB, api_base=server.url, num_retries=0,
                                    verbose=False, timeout=30.0, warm_kernels=False)
        base.update(settings)
        return RLM(**base)

    return make


@pytest.fixture
def shell(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real InteractiveShell with the extension loaded and the scripted server configured."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.user_ns.clear()
    ip.init_user_ns()
    ip.extension_manager.load_extension("rlm_magic")
    magics = next(c for c in ip.configurables if type(c).__name__ == "RLMMagics")
    saved = {n: getattr(magics, n) for n in ("model", "sub_model", "api_base", "num_retries", "timeout",
                                                 "warm_kernels")}
    magics.model, magics.sub_model, magics.api_base = ROOT, SUB, server.url
    magics.num_retries, magics.timeout, magics.warm_kernels = 0, 30.0, False
    try:
        yield ip
    finally:
        for k, v in saved.items():
            setattr(magics, k, v)
        ip.extension_manager.unload_extension("rlm_magic")
