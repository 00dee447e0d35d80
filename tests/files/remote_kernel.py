"""A stand-in for a remote kernel (ssh, a container, a gateway): it shares none of the notebook's files.

Launched by a test kernelspec as ``remote_kernel.py CONNECTION_FILE HIDE...``.
It runs ipykernel under bubblewrap with empty ``/dev/shm`` and ``/tmp`` (where
rlm_magic's run folders live) and every ``HIDE`` folder emptied (the
notebook's copy of ``rlm_kernel``), and only the connection file copied in, as
a remote launcher would.  The network is shared, so the notebook reaches it
over loopback TCP, as it would through a tunnel.
"""

from __future__ import annotations

import os
import sys

connection, hide = sys.argv[1], sys.argv[2:]
argv = ["bwrap", "--dev-bind", "/", "/", "--die-with-parent", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp"]
for path in hide:
    argv += ["--tmpfs", path]
argv += ["--ro-bind", connection, "/tmp/connection.json", "--chdir", "/tmp", "--",
         sys.executable, "-m", "ipykernel_launcher", "-f", "/tmp/connection.json", "--HistoryManager.enabled=False"]
os.execvp(argv[0], argv)
