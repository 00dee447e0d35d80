"""The functions model-written code calls: llm_query, llm_query_batched, SUBMIT.

``install`` is executed once by the parent's bootstrap code; it puts these
functions into the REPL namespace and loads the bound values.  Sub-calls are
made by the notebook process (which holds the API keys and the budgets); the
child only ever sees the reply text.
"""

from __future__ import annotations

from typing import Any

from . import codec, wire
from .channel import Channel, ChannelError

RESERVED = ("llm_query", "llm_query_batched", "SUBMIT", "FINAL", "FINAL_VAR", "__rlm__")


class SubmitSignal(BaseException):
    """Raised by SUBMIT to stop the current block once the answer is handed over.

    A BaseException, so a model's ``except Exception:`` cannot swallow it.
    """


class Runtime:
    def __init__(self, shell: Any, config: dict[str, Any]) -> None:
        self.shell = shell
        # "wire": the kernel shares no files with the notebook, so requests go over the Jupyter protocol.
        self.channel: Any = wire.WireChannel(shell.kernel) if config["channel"] == "wire" else Channel(config["channel"])
        self.out_dir = config.get("out_dir")
        # Submitted values travel as files in out_dir, or as message buffers where that folder is not
        # shared or not writable (a remote kernel; the strict sandbox).
        self.results_by_wire = config.get("results") == "wire"
        self.mode = config.get("mode", "standard")

    # -- sub-calls ------------------------------------------------------
    def llm_query(self, prompt: Any, model: str | None = None) -> str:
        """Ask the sub-model one question; returns its text, or an error string starting with '[llm_query error]'."""
        return self._query([prompt], model, batched=False)[0]

    def llm_query_batched(self, prompts: Any, model: str | None = None) -> list[str]:
        """Ask many prompts concurrently; returns replies in order. A failed item is an error string, not an exception."""
        if isinstance(prompts, (str, bytes)):
            raise TypeError("llm_query_batched takes a list of prompts; use llm_query for a single prompt")
        items = list(prompts)
        if not items:
            return []
        return self._query(items, model, batched=True)

    def _query(self, prompts: list[Any], model: str | None, batched: bool) -> list[str]:
        texts = [p if isinstance(p, str) else str(p) for p in prompts]
        try:
            reply = self.channel.request({"op": "query", "prompts": texts, "model": model, "batched": batched})
        except ChannelError as exc:
            return [f"[llm_query error] {exc}"] * len(texts)
        if not reply.get("ok"):
            return [f"[llm_query error] {reply.get('error', 'unknown error')}"] * len(texts)
        out = []
        for item in reply["results"]:
            out.append(item["text"] if item.get("error") is None else f"[llm_query error] {item['error']}")
        return out

    # -- finishing ------------------------------------------------------
    def submit(self, *args: Any, **fields: Any) -> None:
        """SUBMIT(answer) or SUBMIT(name=value, ...) or both: hand the result over and end the run."""
        if len(args) > 1:
            raise TypeError("SUBMIT takes at most one positional answer, plus any number of name=value fields")
        if not args and not fields:
            raise TypeError("SUBMIT needs an answer: SUBMIT(answer) or SUBMIT(name=value, ...)")
        payload: dict[str, Any] = {"op": "submit", "fields": {}}
        sink: list[Any] | None = [] if self.results_by_wire else None
        if args:
            payload["answer"] = codec.encode_value(args[0], self.out_dir, sink)
        for name, value in fields.items():
            payload["fields"][name] = codec.encode_value(value, self.out_dir, sink)
        reply = self.channel.request(payload, sink)
        if not reply.get("ok"):
            raise RuntimeError(f"SUBMIT was refused: {reply.get('error')}")
        print(f"SUBMIT received ({', '.join(_describe_submit(args, fields))}).")
        raise SubmitSignal()

    def final_var(self, name: Any) -> None:
        """FINAL_VAR('name'): submit the value of an existing REPL variable."""
        if not isinstance(name, str):
            return self.submit(name)
        key = name.strip().strip("'\"")
        if key not in self.shell.user_ns:
            raise NameError(f"FINAL_VAR: there is no variable named {key!r} in the REPL")
        return self.submit(self.shell.user_ns[key])

    # -- values ---------------------------------------------------------
    def bind(self, specs: list[dict[str, Any]]) -> None:
        for spec in specs:
            self.shell.user_ns[spec["name"]] = codec.load_binding(spec)

    def namespace(self) -> dict[str, Any]:
        ns: dict[str, Any] = {"SUBMIT": self.submit, "FINAL": self.submit, "FINAL_VAR": self.final_var}
        if self.mode != "no_subcalls":
            ns["llm_query"] = self.llm_query
            ns["llm_query_batched"] = self.llm_query_batched
        return ns

    def variables(self) -> dict[str, str]:
        """Names the model created in the REPL, with their short types (for follow-up prompts)."""
        hidden = set(getattr(self.shell, "user_ns_hidden", {}))
        out = {}
        for name, value in self.shell.user_ns.items():
            if name.startswith("_") or name in hidden or name in RESERVED or name in ("exit", "quit", "In", "Out"):
                continue
            if type(value).__name__ in ("module", "function", "builtin_function_or_method", "type"):
                continue
            out[name] = type(value).__name__
        return out


def _describe_submit(args: tuple, fields: dict) -> list[str]:
    parts = ["answer"] if args else []
    parts += list(fields)
    return parts


def _no_exit(*_: Any, **__: Any) -> None:
    raise SystemExit("exit() and quit() are disabled in this REPL; finish with SUBMIT(...)")


def _hide_submit_traceback(shell: Any, etype: Any, value: Any, tb: Any, tb_offset: Any = None) -> list[str]:
    return []


def apply_limits(limits: dict[str, Any]) -> None:
    """Set this process's resource limits before model code runs (soft and hard, where given).

    Writing past the file-size limit then fails with an OSError instead of
    killing the kernel; running past the CPU budget ends the kernel (SIGXCPU),
    which the notebook side notices and replaces.
    """
    try:
        import resource
        import signal
    except ImportError:  # not on POSIX
        return
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def cap(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    if limits.get("as"):
        # Relative to what the kernel already maps (thread stacks, arenas, libraries): the limit is headroom.
        cap(resource.RLIMIT_AS, _mapped_bytes() + int(limits["as"]))
    if limits.get("fsize"):
        cap(resource.RLIMIT_FSIZE, int(limits["fsize"]))
    if limits.get("nproc"):
        import os

        uid = os.getuid()
        mine = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        mine += len(os.listdir(f"/proc/{entry}/task"))  # the limit counts threads too
                except OSError:
                    pass
        cap(resource.RLIMIT_NPROC, mine + int(limits["nproc"]))  # counted per user: leave the rest room
    if limits.get("cpu"):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime) + int(limits["cpu"])
        try:  # hard too, so model code cannot lift it; a later run of a session can only lower it
            resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
        except (ValueError, OSError):
            pass
    _become_subreaper()


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _become_subreaper() -> None:
    """Orphaned descendants (double-forked, setsid'd) re-parent to this kernel, so its tree holds them all."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def install(shell: Any, config: dict[str, Any]) -> Runtime:
    """Bootstrap entry point, run in the child by the notebook process."""
    runtime = Runtime(shell, config)
    ns = runtime.namespace()
    ns["__rlm__"] = runtime
    ns["exit"] = ns["quit"] = _no_exit
    for alias, module in (("pd", "pandas"), ("np", "numpy")):
        try:
            ns[alias] = __import__(module)
        except ImportError:
            pass
    shell.user_ns.update(ns)
    shell.user_ns_hidden.update({k: v for k, v in ns.items() if k.startswith("__")})
    shell.set_custom_exc((SubmitSignal,), _hide_submit_traceback)
    runtime.bind(config.get("bindings", []))
    apply_limits(config.get("limits") or {})
    return runtime
