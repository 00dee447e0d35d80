"""Containment of the child kernel: resource limits, strict bubblewrap sandbox, stray processes.

Two levels:

* ``default``: a separate process with an allowlisted environment, a fresh
  working folder, resource limits (memory, CPU per run, file size, processes)
  set inside the child before model code runs, and every process below the
  kernel (it is a child subreaper, so orphans stay below it) or carrying its
  marker killed when the workspace closes.  It still runs as the notebook's user, so
  it can read what that user can read, write where that user can write, use
  the network, and signal the notebook process.
* ``strict``: the same, under bubblewrap: the filesystem is read-only (the
  run's own folder included), the working folder, ``$HOME``, ``/home``,
  ``/root``, ``/tmp``, ``/run`` and ``/dev/shm`` are empty, size-limited
  scratch, there is no network (a fresh network namespace; the Jupyter
  connection uses Unix sockets in the sandbox's own ``/tmp``, which the
  notebook reaches through ``/proc/<pid>/root``), processes live in their own
  PID namespace (the notebook's processes are invisible), all capabilities are
  dropped so limits cannot be raised again, and a notebook running as root
  starts the sandbox as ``nobody``, so the process limit holds.  If bubblewrap
  is missing, ``strict`` fails; it never falls back to less isolation.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

SANDBOXES = ("default", "strict")

#: Environment variable every workspace process carries, so stray processes can be found and stopped.
MARKER = "RLM_WORKSPACE"


class SandboxUnavailable(RuntimeError):
    """``sandbox=strict`` was asked for but cannot be provided here."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for the child, in bytes / seconds / processes (None: no limit)."""

    memory: int | None = None  # address space
    cpu_per_run: float | None = None
    file_size: int | None = None
    processes: int | None = None
    work_dir_size: int | None = None  # strict only: size of the tmpfs working folder

    def for_child(self, extra_memory: int = 0) -> dict[str, int | None]:
        return {
            "as": None if self.memory is None else self.memory + extra_memory,
            "cpu": None if self.cpu_per_run is None else int(self.cpu_per_run) + 1,
            "fsize": self.file_size,
            "nproc": self.processes,
        }


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def bwrap_path() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(
            "sandbox=strict needs bubblewrap (the 'bwrap' command), which is not installed. "
            "Install it (Debian/Ubuntu: apt-get install bubblewrap) or use sandbox=default; "
            "rlm_magic will not run the code with less isolation than you asked for."
        )
    return path


def check_strict() -> None:
    """Fail early, with the reason, when bubblewrap cannot create the namespaces strict needs."""
    import subprocess

    proc = subprocess.run(
        [bwrap_path(), "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent", "--", "true"],
        capture_output=True, text=True, timeout=30,
    )
    if proc.returncode != 0:
        raise SandboxUnavailable(f"sandbox=strict: bubblewrap cannot create a sandbox here: {proc.stderr.strip()}")


def _needed_paths(argv0: str, hidden: list[str]) -> list[str]:
    """Folders the interpreter and its installed packages live in, to re-expose read-only under hidden homes.

    Only interpreter prefixes, site-packages folders and the rlm_kernel folder qualify, and never a hidden
    folder itself or anything that contains $HOME: a sys.path entry such as ~ or /tmp must not undo the
    hiding.
    """
    import site

    import rlm_kernel

    real = os.path.realpath(argv0)
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(real))}
    paths.update(site.getsitepackages() + [site.getusersitepackages()])
    paths.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    paths.add(os.path.dirname(os.path.dirname(os.path.abspath(rlm_kernel.__file__))))
    home = os.path.realpath(os.path.expanduser("~"))
    out = set()
    for p in paths:
        if not p or not os.path.isdir(p):
            continue
        p = os.path.realpath(p)
        if p in hidden or p == "/" or home == p or home.startswith(p.rstrip("/") + "/"):
            continue
        out.add(p)
    return sorted(out)


#: Folders strict replaces with empty, size-limited scratch space (plus the user's $HOME).
HIDDEN = ("/tmp", "/run", "/home", "/root", "/var/tmp", "/mnt", "/media")

#: Where a strict kernel's Jupyter sockets live, inside its own scratch ``/tmp``.  The notebook reaches
#: them through ``/proc/<pid>/root``, so the run folder can stay read-only to the sandbox.
SOCKET_DIR = "/tmp/.rlm-jupyter"

#: Run inside the sandbox as root, after bubblewrap has built it: hand the scratch folders to the sandbox
#: user, let it traverse to the interpreter's re-exposed folders, forbid any later gain of privilege (setuid binaries included), empty the capability bounding set,
#: become that user (which clears every capability), then start the kernel.
_DROP_PRIVILEGES = """
import ctypes, os, sys
uid, gid = int(sys.argv[1]), int(sys.argv[2])
for path in sys.argv[3].split(os.pathsep):
    os.chown(path, uid, gid)
for path in filter(None, sys.argv[4].split(os.pathsep)):
    os.chmod(path, 0o755)  # folders bubblewrap made (mode 0700) on the way to a re-exposed one
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.exit('rlm sandbox: cannot set no_new_privs')
cap = 0
while libc.prctl(24, cap, 0, 0, 0) == 0:  # PR_CAPBSET_DROP, until past the last capability
    cap += 1
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
os.execvp(sys.argv[5], sys.argv[5:])
"""


def sandbox_ids() -> tuple[int, int] | None:
    """The unprivileged (uid, gid) a strict REPL runs as when the notebook runs as root; None otherwise.

    The kernel does not apply the process limit to root, so a strict REPL
    started by root would let a fork bomb grow until the machine stalls.  As
    ``nobody`` the limit holds.  A non-root notebook's REPL keeps its user (the
    limit applies to it already).
    """
    if os.geteuid() != 0:
        return None
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except (ImportError, KeyError):
        return 65534, 65534


def bwrap_argv(argv: list[str], *, run_dir: Path, work_dir: Path, limits: Limits) -> list[str]:
    """Wrap a kernel command line in bubblewrap for ``sandbox=strict``."""
    hidden = list(HIDDEN)
    home = os.path.expanduser("~")
    if home not in hidden and home != "/":
        hidden.append(home)
    cmd = [
        bwrap_path(),
        "--die-with-parent", "--new-session",
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", "rlm-sandbox",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
    ]
    size = str(limits.work_dir_size or (256 << 20))
    scratch = [path for path in hidden if os.path.isdir(path)] + ["/dev/shm"]
    for path in scratch:  # empty, size-limited scratch in place of every hidden folder
        cmd += ["--size", size, "--tmpfs", path]
    for secret in ("/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/ssl/private"):
        if os.path.exists(secret):
            cmd += ["--ro-bind", "/dev/null", secret] if os.path.isfile(secret) else ["--tmpfs", secret]
    exposed = [path for path in _needed_paths(argv[0], hidden) if any(path.startswith(h + "/") for h in hidden)]
    traverse: set[str] = set()  # folders bubblewrap creates on the way to them (not inside another one)
    for path in exposed:
        cmd += ["--ro-bind", path, path]
        parent = os.path.dirname(path)
        while parent not in hidden and parent != "/":
            if not any(parent == e or parent.startswith(e + "/") for e in exposed):
                traverse.add(parent)
            parent = os.path.dirname(parent)
    # The run folder (bound values, the connection file, the sub-call socket) is read-only; what the
    # kernel writes goes to size-limited scratch: the working folder, its sockets' folder in /tmp, and
    # IPython's folder. Results come back as message buffers, not files.
    cmd += ["--ro-bind", str(run_dir), str(run_dir), "--size", size, "--tmpfs", str(work_dir), "--dir", SOCKET_DIR]
    # Inside the PID namespace the parent is invisible, so ipykernel's parent poller would quit at once;
    # --die-with-parent does that job instead.
    cmd += ["--unsetenv", "JPY_PARENT_PID", "--chdir", str(work_dir), "--setenv", "HOME", str(work_dir),
            "--setenv", "IPYTHONDIR", "/tmp/.ipython"]
    ids = sandbox_ids()
    if ids is None:  # bubblewrap runs as the notebook's (unprivileged) user; the kernel gets no capabilities
        return cmd + ["--cap-drop", "ALL", "--"] + list(argv)
    writable = os.pathsep.join([*scratch, str(work_dir), SOCKET_DIR])
    return cmd + ["--", sys.executable, "-c", _DROP_PRIVILEGES, str(ids[0]), str(ids[1]), writable,
                  os.pathsep.join(sorted(traverse))] + list(argv)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def kill_marked(marker: str) -> int:
    """Kill every process (but ourselves) whose environment carries ``RLM_WORKSPACE=marker``.

    Catches what model code started in a new session or double-forked away
    from the kernel, which a process-group kill misses.
    """
    needle = f"{MARKER}={marker}".encode()
    killed = 0
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed
