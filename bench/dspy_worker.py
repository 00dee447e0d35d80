"""The DSPy side of the comparison; runs in bench/.venv-dspy (never the project venv).

    bench/.venv-dspy/bin/python bench/dspy_worker.py SPEC.json OUT.json

SPEC.json: ``{"sizes": [bytes, ...], "repeats": {"<bytes>": n}}``; once a size fails, larger ones are
recorded as not attempted.
It runs ``dspy.RLM("context, query -> answer")`` on the CSV text of each size
against rlm_magic's own ScriptedServer (loaded by file path: it needs only the
standard library), with the same three steps as bench/harness.py's
``workload`` (the same code, in DSPy's reply format), and writes per-step times
to OUT.json.  Deno comes from bench/node_modules through bench/deno/bin/deno,
which adds the import map that replaces https://deno.land/std@0.186.0/io/mod.ts.
A size DSPy cannot take is recorded with the error it raised; it never stops the
other sizes.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import data  # noqa: E402  (bench/data.py: standard library only at import)

STEPS = (
    "print(len(context))\nprint(context[:200])",
    "sample = str(context[:2000])\nsummary = llm_query('Summarize this sample of the data:\\n' + sample)\nprint(summary)",
    "SUBMIT(answer=summary)",
)


def log(*args: Any) -> None:
    print("[dspy]", *args, file=sys.stderr, flush=True)


def load_scripted() -> Any:
    """rlm_magic/scripted.py, loaded by path (it imports only the standard library)."""
    spec = importlib.util.spec_from_file_location("rlm_bench_scripted", REPO / "rlm_magic" / "scripted.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def dspy_reply(code: str, reasoning: str = "Next step of the benchmark workload.") -> str:
    """A reply in DSPy's ChatAdapter format for RLM's action signature (reasoning, code)."""
    return (f"[[ ## reasoning ## ]]\n{reasoning}\n\n[[ ## code ## ]]\n```python\n{code}\n```\n\n"
            "[[ ## completed ## ]]")


class RootScript:
    def __init__(self, reply_cls: Any) -> None:
        self.Reply = reply_cls
        self.lock = threading.Lock()
        self.replies: list[str] = []
        self.arrivals: list[float] = []
        self.first_prompt_chars: int | None = None

    def load(self, replies: list[str]) -> None:
        with self.lock:
            self.replies, self.arrivals, self.first_prompt_chars = list(replies), [], None

    def __call__(self, request: Any) -> Any:
        now = time.perf_counter()
        with self.lock:
            self.arrivals.append(now)
            if self.first_prompt_chars is None:
                self.first_prompt_chars = sum(len(m.get("content") or "") for m in request.messages
                                              if isinstance(m.get("content"), str))
            if not self.replies:
                return self.Reply(status=500, error_message="benchmark script ran out of replies")
            return self.replies.pop(0)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out_path = Path(sys.argv[2])
    results: dict[str, Any] = {"versions": {}, "sizes": {}, "error": None}

    def save() -> None:
        out_path.write_text(json.dumps(results, indent=1))

    try:
        import dspy
        from dspy.primitives.python_interpreter import PythonInterpreter
    except Exception as exc:  # noqa: BLE001
        results["error"] = f"cannot import dspy: {type(exc).__name__}: {exc}"
        save()
        return 1

    import importlib.metadata as md
    import subprocess

    for pkg in ("dspy", "litellm"):
        try:
            results["versions"][pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        deno = subprocess.run(["deno", "--version"], capture_output=True, text=True, timeout=30)
        results["versions"]["deno"] = deno.stdout.split("\n")[0].replace("deno ", "").split(" ")[0]
    except OSError as exc:
        results["error"] = f"deno not found on PATH: {exc}"
        save()
        return 1
    runner = Path(PythonInterpreter.__module__ and sys.modules[PythonInterpreter.__module__].__file__).parent / "runner.js"
    pyodide = next((ln.split("npm:pyodide@")[1].split("/")[0] for ln in runner.read_text().splitlines()
                    if "npm:pyodide@" in ln), "?")
    results["versions"]["pyodide"] = pyodide

    scripted = load_scripted()
    root = RootScript(scripted.Reply)

    def sub(request: Any) -> Any:
        return scripted.Reply(content=f"summary of {len(request.prompt)} characters")

    scripted._Server.request_queue_size = 1024  # as bench/harness.py does (socketserver's default is 5)
    server = scripted.ScriptedServer({"dspy-root": root, "sub": sub}).start()
    finals: list[float] = []

    class TimedInterpreter(PythonInterpreter):
        """PythonInterpreter that stamps when an execute returns the SUBMITted answer."""

        def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
            result = super().execute(code, variables)
            if type(result).__name__ == "FinalOutput":
                finals.append(time.perf_counter())
            return result

    try:
        common = dict(api_base=server.url, api_key="sk-bench", cache=False, num_retries=0)
        lm = dspy.LM("openai/dspy-root", **common)
        sub_lm = dspy.LM("openai/sub", **common)
        dspy.configure(lm=lm)
        rlm = dspy.RLM("context, query -> answer", max_iters=6, max_llm_calls=20, sub_lm=sub_lm,
                       interpreter_factory=TimedInterpreter)

        def one(text: str) -> dict[str, Any]:
            finals.clear()
            root.load([dspy_reply(code) for code in STEPS])
            called = time.perf_counter()
            pred = rlm(context=text, query="Summarize the data.")
            returned = time.perf_counter()
            arrivals = list(root.arrivals)
            if len(arrivals) != len(STEPS) or not finals:
                raise RuntimeError(f"unexpected run shape: {len(arrivals)} root calls, "
                                   f"{len(finals)} final outputs, answer {str(pred.answer)[:200]!r}")
            steps = [b - a for a, b in zip(arrivals, arrivals[1:])] + [finals[-1] - arrivals[-1]]
            return {"start": arrivals[0] - called, "steps": steps, "total": returned - called,
                    "to_answer": finals[-1] - called, "answer_ok": str(pred.answer).startswith("summary of"),
                    "root_prompt_chars": root.first_prompt_chars}

        log("warm-up run (tiny context)")
        try:
            results["warmup"] = one(data.make_text(1000))
        except Exception as exc:  # noqa: BLE001
            results["error"] = f"warm-up run failed: {type(exc).__name__}: {str(exc)[:2000]}"
            log(results["error"])
            save()
            return 1
        save()
        failed: tuple[int, str] | None = None
        for size in sorted(spec["sizes"]):
            key = str(size)
            entry: dict[str, Any] = {"runs": [], "error": None}
            results["sizes"][key] = entry
            if failed is not None:  # a smaller value already failed; a larger one cannot do better
                entry["error"] = (f"not attempted: {data.size_label(failed[0])} already failed "
                                  f"({failed[1][:200]})")
                entry["skipped"] = True
                save()
                continue
            text = data.make_text(size)
            for i in range(int(spec.get("repeats", {}).get(key, 1))):
                log(f"{data.size_label(size)} run {i + 1}")
                try:
                    entry["runs"].append(one(text))
                except BaseException as exc:  # noqa: BLE001 - MemoryError too: record, go on
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    entry["error"] = f"{type(exc).__name__}: {_short(str(exc))}"
                    entry["trace"] = traceback.format_exc()[-3000:]
                    log(f"{data.size_label(size)} failed: {entry['error']}")
                    failed = (size, entry["error"])
                    break
                finally:
                    save()
            del text
            gc.collect()
    finally:
        server.stop()
        save()
    return 0


def _short(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    sys.exit(main())
