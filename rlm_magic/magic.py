"""``%%rlm`` and ``%rlm``: a thin parser over :class:`rlm_magic.RLM`.

The magic resolves the cell's bindings in the user's namespace, layers the
settings (``%config`` traits, then ``RLM_*`` environment variables, then the
cell's own options), runs the engine with a view subscribed, and lands the
results as notebook variables.  Every argument problem is reported as one
``UsageError`` line before any kernel starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Enum

from .api import RLM, ConfigError
from .describe import short_type
from .parsing import Arg, ArgumentError, close_matches, split_args, split_subcommand
from .prompts import MODES
from .result import RLMResult
from .runlog import RunLog, default_dir, list_runs, load_run
from .settings import ENV_VARS, NO_MODEL, Settings, env_value
from .views import VIEWS, choose_view
from .views.text import STATUS_TEXT, TextView

#: Per-cell options and how their text is read.
_INT_OPTIONS = ("max_iterations", "max_llm_calls", "max_output_chars", "sub_concurrency", "sub_context_window")
_FLOAT_OPTIONS = ("timeout", "max_cost")
_STR_OPTIONS = ("question", "model", "sub_model", "api_base", "kernel", "out", "mode", "view",
                "cassette", "record", "replay", "session", "sandbox")
_BOOL_OPTIONS = ("verbose",)
OPTIONS = _INT_OPTIONS + _FLOAT_OPTIONS + _STR_OPTIONS + _BOOL_OPTIONS

#: Notebook names results never overwrite.
_PROTECTED = frozenset({"In", "Out", "get_ipython", "exit", "quit", "_rlm"})

HELP = """\
%%rlm — ask a Recursive Language Model about notebook values

  %%rlm context=df question="Which region has the highest total revenue, and why?"
  %%rlm docs=papers recent=df[df.year == 2024] model=openai/gpt-4o-mini
  Compare the two: which topics grew?          <- the cell body is the question (or extra instructions)

  %rlm context=df question="..."               the same as a line magic

Every name=expr that is not an option binds the value of expr (evaluated in the
notebook) as a REPL variable of that name. Only bound values reach the REPL.
$var and {expr} on the magic line expand as usual in IPython.

Options (per cell; defaults from %config RLMMagics.<name> or RLM_MODEL / RLM_SUB_MODEL / RLM_API_BASE):
  question=TEXT        the question (or write it in the cell body)
  model=P/M            root model, a litellm "provider/model" string
  sub_model=P/M        model for llm_query()/llm_query_batched() (default: model)
  api_base=URL         OpenAI-compatible server (vLLM, Ollama, LM Studio, a proxy)
  out=NAME             also bind the answer to NAME
  max_iterations=N     most root turns (default 20)
  max_llm_calls=N      most model calls, root + sub (default 50)
  max_cost=USD         stop when litellm's cost estimate reaches this
  timeout=SECONDS      per code block in the REPL (default 180)
  mode=M               standard | conservative | no_subcalls
  kernel=NAME          Jupyter kernelspec for the REPL (default: this interpreter)
  sandbox=S            default | strict (bubblewrap: read-only files, hidden home, no network)
  session=NAME         keep the REPL and its variables for follow-up cells
  max_output_chars=N   REPL output shown to the model per block (default 10000)
  sub_concurrency=N    concurrent sub-calls in llm_query_batched (default 64)
  sub_context_window=N sub-model window in tokens, when litellm does not know it
  verbose=BOOL         print the per-turn text log (where no widget view is shown)
  view=V               auto | widget | text | none (auto: widgets in JupyterLab/VS Code, else text)

Results: the answer is the cell's output; SUBMIT(name=value) fields become
notebook variables; the full result (trajectory, usage, cost) is in _rlm.

Record and replay (every model call, to a JSON-lines cassette):
  record=PATH / replay=PATH / cassette=PATH      per cell (cassette= replays hits, records misses)
  %rlm record PATH · %rlm replay PATH · %rlm cassette PATH [mode] · %rlm cassette off   for the notebook

Sessions (the REPL and its variables survive across cells):
  session=NAME on the cell · %rlm sessions · %rlm end NAME

Run logs (every run is written to a JSON-lines log as it goes; nothing is lost if the kernel dies):
  %rlm runs · %rlm runs load N · rlm_magic.load_run(path)

Line commands: %rlm help · %rlm config · %rlm sessions · %rlm end NAME · %rlm runs
"""


def _line_call(args: str) -> str:
    return f"get_ipython().run_line_magic('rlm', {args!r})\n"


def _bodyless_cell_magic(lines: list[str]) -> list[str]:
    """Run a body-less ``%%rlm ...`` cell, and ``%rlm name=...`` lines, as the line magic.

    IPython 9 refuses a cell magic whose body is empty, but the one-line form
    ``%%rlm context=df question="..."`` is the syntax users are shown.  The
    call is written out in full (not as ``%rlm ...``) because IPython would
    otherwise read an unquoted question ending in ``?`` as a help request.
    """
    if not lines:
        return lines
    if re.match(r"%%rlm(\s|$)", lines[0]):
        if any(line.strip() for line in lines[1:]):
            return lines
        return [_line_call(lines[0].rstrip("\r\n")[5:].strip())]
    out = []
    for line in lines:
        m = re.match(r"%rlm\s+(\S.*=.*)$", line.rstrip("\r\n"))
        out.append(_line_call(m.group(1).strip()) if m else line)
    return out


def _bool(text: str, name: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}= takes true or false, not {text!r}")


def _number(kind: type, text: str, name: str) -> Any:
    try:
        value = kind(text.replace("_", ""))
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise UsageError(f"{name}= takes {what}, not {text!r} (use $var or {{expr}} to pass a notebook value)") from None
    if value <= 0 and name != "max_cost":
        raise UsageError(f"{name}= must be positive, not {text}")
    if value < 0:
        raise UsageError(f"{name}= must not be negative")
    return value


@magics_class
class RLMMagics(Settings, Magics):
    """The ``%%rlm`` cell magic and ``%rlm`` line magic.  Configure with ``%config RLMMagics.<option>``."""

    view = Enum(VIEWS, "auto", help="auto (widgets where the frontend shows them, else text) | widget | text | none").tag(
        config=True
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)

    # ------------------------------------------------------------------
    @line_cell_magic
    def rlm(self, line: str, cell: str | None = None) -> Any:
        """Run a Recursive Language Model over bound notebook values. ``%rlm help`` explains."""
        if cell is None:
            try:
                sub = split_subcommand(line)
            except ArgumentError as exc:
                raise UsageError(str(exc)) from None
            if sub is not None or not line.strip():
                return self._subcommand(*(sub or ("help", [])))
        options, bindings = self._parse(line)
        question = self._question(options, cell)
        rlm = self._runner(options)
        try:
            rlm.check(question, bindings)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        view = self._attach_view(rlm, options)
        if rlm.run_log:
            log = RunLog(rlm.run_log_dir)
            rlm.subscribe(log)
            if view is not None:
                view.log_path = str(log.path)
        try:
            result = rlm.run(question, **bindings)
        except KeyboardInterrupt:
            partial = rlm.last_result
            if partial is not None:
                self.shell.user_ns["_rlm"] = partial
                print(f"rlm: interrupted after {len(partial.turns)} turn(s); the partial trajectory is in _rlm")
            raise
        answer = self._land(result, options.get("out"))
        if view is not None:
            landed = {k: short_type(v) for k, v in result.fields.items() if k in self.shell.user_ns}
            if options.get("out"):
                landed[options["out"]] = short_type(result.answer)
            view.landed({**landed, "_rlm": "RLMResult"})
        return answer

    def _attach_view(self, rlm: RLM, options: dict[str, Any]) -> Any:
        """Subscribe the view this frontend can show; returns the widget view, if any."""
        verbose = options.get("verbose", self.verbose)
        choice = choose_view(options.get("view", self.view if self.view != "auto" else None), verbose=verbose)
        if choice == "text":
            rlm.subscribe(TextView())
        elif choice == "widget":
            from IPython.display import display

            from .views.widget import WidgetView

            widget_view = WidgetView()
            rlm.subscribe(widget_view)
            display(widget_view.widget)
            return widget_view
        return None

    # ------------------------------------------------------------------
    def _parse(self, line: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            args = split_args(line)
        except ArgumentError as exc:
            raise UsageError(str(exc)) from None
        options: dict[str, Any] = {}
        bindings: dict[str, Any] = {}
        for arg in args:
            if arg.name in OPTIONS:
                options[arg.name] = self._option(arg)
                continue
            near = [m for m in close_matches(arg.name, OPTIONS, n=1) if _similar(arg.name, m)]
            if near:
                raise UsageError(f"unknown option {arg.name}= (did you mean {near[0]}=?)")
            bindings[arg.name] = self._evaluate(arg)
        return options, bindings

    def _option(self, arg: Arg) -> Any:
        name, text = arg.name, arg.value
        if name in _INT_OPTIONS:
            return _number(int, text, name)
        if name in _FLOAT_OPTIONS:
            return _number(float, text, name)
        if name in _BOOL_OPTIONS:
            return _bool(text, name)
        if name == "mode" and text not in MODES:
            raise UsageError(f"mode= must be one of {', '.join(MODES)}, not {text!r}")
        if name == "sandbox" and text not in ("default", "strict"):
            raise UsageError(f"sandbox= must be default or strict, not {text!r}")
        if name == "view" and text not in VIEWS:
            raise UsageError(f"view= must be one of {', '.join(VIEWS)}, not {text!r}")
        if name == "out" and not (text.isidentifier() and not text.startswith("_")):
            raise UsageError(f"out= takes a variable name, not {text!r}")
        if name != "question" and not text.strip():
            raise UsageError(f"{name}= is empty")
        return text

    def _evaluate(self, arg: Arg) -> Any:
        if not arg.text.strip():
            raise UsageError(f"{arg.name}= has no value; write {arg.name}=<notebook expression>")
        ns = self.shell.user_ns
        try:
            code = compile(arg.text, f"<{arg.name}=>", "eval")
        except SyntaxError as exc:
            raise UsageError(f"cannot read the expression for {arg.name}=: {arg.text!r} ({exc.msg})") from None
        try:
            return eval(code, ns)  # noqa: S307 - the user's own expression, in the user's own namespace
        except NameError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            hints = close_matches(missing, [k for k in ns if not k.startswith("_")])
            hint = f"; did you mean {', '.join(hints)}?" if hints else ""
            raise UsageError(f"{arg.name}={arg.text}: name {missing!r} is not defined in the notebook{hint}") from None
        except Exception as exc:
            raise UsageError(f"{arg.name}={arg.text} failed: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _question(options: dict[str, Any], cell: str | None) -> str:
        question = (options.get("question") or "").strip()
        body = (cell or "").strip()
        if body:
            question = f"{question}\n\n{body}" if question else body
        if not question:
            raise UsageError('the question is empty: add question="..." or write the question in the cell body')
        return question

    def _effective(self, name: str, options: dict[str, Any]) -> tuple[Any, str]:
        """A setting's value and where it came from: the cell, the environment, %config, or the default."""
        if name in options:
            return options[name], "cell"
        env = env_value(name)
        if env is not None:
            return env, f"env {ENV_VARS[name]}"
        value = getattr(self, name)
        return value, "default" if value == type(self).class_traits()[name].default() else "%config"

    def _runner(self, options: dict[str, Any]) -> RLM:
        options = dict(options)
        for mode in ("record", "replay"):  # record=PATH / replay=PATH are cassette=PATH with a mode
            if mode in options:
                if "cassette" in options:
                    raise UsageError(f"give either cassette= or {mode}=, not both")
                options["cassette"], options["cassette_mode"] = options.pop(mode), mode
        settings: dict[str, Any] = {}
        for name in Settings.class_trait_names(config=True):
            settings[name] = self._effective(name, options)[0]
        if not settings.get("model"):
            raise UsageError(NO_MODEL)
        if not settings.get("sub_model"):
            settings["sub_model"] = settings["model"]
        return RLM(**{**settings, "verbose": False})

    # ------------------------------------------------------------------
    def _land(self, result: RLMResult, out: str | None) -> Any:
        ns = self.shell.user_ns
        ns["_rlm"] = result
        for name, value in result.fields.items():
            if name in _PROTECTED or name.startswith("_"):
                print(f"rlm: field {name!r} was not landed (reserved notebook name); it is in _rlm.fields")
                continue
            if name in ns and ns[name] is not value:
                print(f"rlm: overwrote notebook variable {name!r} (was {short_type(ns[name])})")
            ns[name] = value
        for note in result.notes:
            print(f"rlm: note: {note}")
        if result.status == "error":
            raise UsageError(f"the run failed: {result.error}. The partial trajectory is in _rlm.")
        if out:
            if out in ns:
                print(f"rlm: overwrote notebook variable {out!r} (was {short_type(ns[out])})")
            ns[out] = result.answer
        return Answer(result)

    # ------------------------------------------------------------------
    def _runs_command(self, args: list[str]) -> Any:
        """List recent run logs, or restore one: ``%rlm runs`` / ``%rlm runs load N|PATH``."""
        runs = list_runs(self.run_log_dir)
        if args[:1] == ["load"]:
            if len(args) != 2:
                raise UsageError("usage: %rlm runs load N   (N from %rlm runs) or %rlm runs load PATH")
            target = args[1]
            path = runs[int(target) - 1][0] if target.isdigit() and 0 < int(target) <= len(runs) else Path(target)
            if not path.exists():
                raise UsageError(f"no run log {target!r}; %rlm runs lists them")
            self.shell.user_ns["_rlm"] = result = load_run(path)
            print(f"rlm: restored {result.status} run ({len(result.turns)} turns) from {path} into _rlm")
            return None
        if not runs:
            print(f"rlm: no run logs in {self.run_log_dir or default_dir()}")
            return None
        print("rlm runs (newest first; %rlm runs load N restores one into _rlm):")
        for i, (path, summary) in enumerate(runs, 1):
            print(f"  {i:>2}. {summary}  {path.name}")
        return None

    def _sessions_command(self) -> None:
        from .runner import run_sync
        from .workspace import SESSIONS

        async def rows() -> list[str]:
            out = []
            for name, session in sorted(SESSIONS.items()):
                alive = "alive" if await session.workspace.alive() else "dead"
                bound = ", ".join(session.bound) or "-"
                out.append(f"  {name:<16} {len(session.history)} run(s), REPL {alive}, bound: {bound}")
            return out

        lines = run_sync(rows(), timeout=30)
        print("rlm sessions:\n" + "\n".join(lines) if lines else "rlm: no sessions (start one with session=NAME)")

    def _end_command(self, args: list[str]) -> None:
        from .runner import run_sync
        from .workspace import SESSIONS, end_session

        if not args:
            raise UsageError("usage: %rlm end NAME   (or %rlm end --all)")
        names = list(SESSIONS) if args == ["--all"] else args
        for name in names:
            if not run_sync(end_session(name), timeout=60):
                hint = close_matches(name, list(SESSIONS))
                raise UsageError(f"no session named {name!r}" + (f" (did you mean {hint[0]}?)" if hint else ""))
            print(f"rlm: ended session {name!r}")

    def _cassette_command(self, name: str, args: list[str]) -> None:
        """Set the notebook's cassette: every later run records to it or replays from it."""
        if name == "cassette" and args[:1] == ["off"]:
            self.cassette, self.cassette_mode = None, None
            print("rlm: cassette off; model calls go live")
            return
        if not args or len(args) > (2 if name == "cassette" else 1):
            raise UsageError(_cassette_usage())
        mode = name if name != "cassette" else (args[1] if len(args) > 1 else "auto")
        if mode not in ("record", "replay", "auto"):
            raise UsageError(_cassette_usage())
        path = os.path.expanduser(args[0])
        if mode == "replay" and not os.path.exists(path):
            raise UsageError(f"cassette {path} does not exist; record it first with %rlm record {args[0]}")
        self.cassette, self.cassette_mode = path, mode
        what = {"record": "recording every model call to", "replay": "replaying model calls from",
                "auto": "replaying matching calls from (and recording new ones to)"}[mode]
        print(f"rlm: {what} {args[0]}")
        shadowing = [var for name, var in ENV_VARS.items() if name.startswith("cassette") and env_value(name)]
        if shadowing:
            print(f"rlm: warning: {', '.join(shadowing)} is set in the environment and takes precedence over this")

    def _subcommand(self, name: str, args: list[str]) -> Any:
        if name == "help":
            print(HELP)
            return None
        if name == "config":
            rows = []
            for opt in sorted([*Settings.class_trait_names(config=True), "view"]):
                value, source = self._effective(opt, {})
                if opt == "sub_model" and not value:
                    value, source = self._effective("model", {})[0], "= model"
                if opt == "api_key" and value:
                    value = "***"
                rows.append(f"  {opt:<20} {value!r:<40} ({source})")
            print("rlm settings (cell options override these):\n" + "\n".join(rows))
            return None
        if name in ("record", "replay", "cassette"):
            return self._cassette_command(name, args)
        if name == "sessions":
            return self._sessions_command()
        if name == "runs":
            return self._runs_command(args)
        if name == "end":
            return self._end_command(args)
        known = ["help", "config", "record", "replay", "cassette", "sessions", "end", "runs"]
        hint = close_matches(name, known)
        raise UsageError(f"unknown %rlm command {name!r}" + (f" (did you mean {hint[0]}?)" if hint else "")
                         + f"; commands: {', '.join(known)}; or give name=value arguments to run")


def _cassette_usage() -> str:
    return ("usage: %rlm record PATH | %rlm replay PATH | %rlm cassette PATH [record|replay|auto] | "
            "%rlm cassette off")


def _similar(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.85


class Answer:
    """What the cell displays: the answer (Markdown), with how the run ended when it did not finish."""

    def __init__(self, result: RLMResult) -> None:
        self.result = result

    def _status_line(self) -> str:
        res = self.result
        if res.status == "finished":
            return ""
        return f"({STATUS_TEXT.get(res.status, res.status)}; best answer from what was gathered)"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        answer = self.result.answer
        status = self._status_line()
        bundle: dict[str, str] = {}
        if isinstance(answer, str) or answer is None:
            text = answer if answer is not None else "(no answer)"
            bundle["text/markdown"] = text + (f"\n\n*{status}*" if status else "")
            bundle["text/plain"] = text + (f"\n{status}" if status else "")
            return bundle
        plain = repr(answer)
        bundle["text/plain"] = plain + (f"\n{status}" if status else "")
        html = getattr(answer, "_repr_html_", None)
        if callable(html):
            rendered = html()
            if rendered:
                bundle["text/html"] = rendered
        bundle["text/markdown"] = "```\n" + plain + "\n```" + (f"\n\n*{status}*" if status else "")
        return bundle

    def __repr__(self) -> str:
        return self._repr_mimebundle_()["text/plain"]


def load_ipython_extension(ipython: Any) -> None:
    magics = RLMMagics(shell=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    if _bodyless_cell_magic not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(_bodyless_cell_magic)


def unload_ipython_extension(ipython: Any) -> None:
    if _bodyless_cell_magic in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(_bodyless_cell_magic)
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, RLMMagics)]
