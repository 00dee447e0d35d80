"""A stand-in for a remote kernel (ssh, a container, a gateway): it shares none of the notebook's files.

Launched by a test kernelspec as ``remote_kernel.py CONNECTION_FILE HIDE...``.
It runs ipykernel under bubblewrap with every ``HIDE`` folder emptied (the
folder rlm_magic's run folders live in, and the notebook's copy of
``rlm_kernel``), and only the connection file copied in, as a remote launcher
would.  The network is shared, so the notebook reaches it
over loopback TCP, as it would through a tunnel.
"""

from __future__ import annotations

import os
import sys

connection, hide = sys.argv[1], sys.argv[2:]
argv = ["bwrap", "--dev-bind", "/", "/", "--die-with-parent"]
for path in hide:
    argv += ["--tmpfs", path]
inside = os.path.join(hide[0], "connection.json")  # in the first emptied folder, so nothing is left on disk
argv += ["--ro-bind", connection, inside, "--chdir", "/", "--",
         sys.executable, "-m", "ipykernel_launcher", "-f", inside, "--HistoryManager.enabled=False"]
os.execvp(argv[0], argv)
