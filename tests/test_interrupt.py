"""An interrupt on the calling thread stops the child, cleans up and keeps the partial run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlm_magic.events import CodeStarted
from rlm_magic.scripted import code_reply

from .conftest import kernel_children


def test_keyboard_interrupt_stops_child_and_keeps_partial_result(make_rlm, server) -> None:
    server.add("root", code_reply("import os\nprint(os.getcwd())\nprint(os.getpid())"),
               code_reply("import time\ntime.sleep(60)"))
    seen: list[str] = []

    def interrupt_on_second_block(event) -> None:
        if isinstance(event, CodeStarted):
            seen.append(event.code)
            if len(seen) == 2:
                raise KeyboardInterrupt  # what the kernel's interrupt does to the cell thread

    rlm = make_rlm(on_event=interrupt_on_second_block)
    with pytest.raises(KeyboardInterrupt):
        rlm.run("q", x=1)
    partial = rlm.last_result
    assert partial is not None and partial.status == "interrupted"
    assert len(partial.turns) == 2
    cwd, pid = partial.turns[0].code[0].output.split()
    work_dir = Path(cwd)
    assert work_dir.name == "work"
    assert not work_dir.parent.exists(), "the run's scratch folder was not removed"
    assert int(pid) not in {p for p, _ in kernel_children()}, "the run's kernel is still running"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
