"""rlm_magic benchmark (issue #5): harness overhead against physical limits, and against dspy.RLM.

    .venv/bin/python bench/run.py                  # full run (about 10-15 minutes), writes bench/RESULTS.md
    .venv/bin/python bench/run.py --quick          # a fast subset (about 2 minutes), writes bench/out/RESULTS-quick.md
    .venv/bin/python bench/run.py --sizes 10MB,100MB,1GB,4GB --skip-dspy

Every figure is the median of several runs, and every comparison is a ratio of
two figures measured in this same run (the physical limit, or DSPy), because a
small shared machine is noisy from minute to minute.  The model is a zero-latency
scripted server on 127.0.0.1 (rlm_magic.scripted); no real LLM API is called.
The DSPy side runs in its own venv (bench/.venv-dspy, made by
bench/setup_dspy.sh on first use) and its own process (bench/dspy_worker.py).

Everything started here (kernels, the scripted server, the DSPy worker and its
Deno, scratch files in /dev/shm) is stopped and removed at the end, on Ctrl-C
and on SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import data  # noqa: E402
import physical  # noqa: E402
import report  # noqa: E402

DSPY_PYTHON = BENCH / ".venv-dspy" / "bin" / "python"
KB, MB, GB = 10**3, 10**6, 10**9


@dataclass
class Plan:
    """How many times each measure runs; --quick shrinks it."""

    sizes: list[int]
    dspy_sizes: list[int]
    shm_repeats: int = 3
    kernel_starts: int = 3
    rtt_calls: int = 50
    cold: int = 5
    warm: int = 7
    turn_runs: int = 5
    turns: int = 20
    baseline: int = 5
    bind_repeats: dict[int, int] = field(default_factory=dict)
    workload_repeats: dict[int, int] = field(default_factory=dict)
    result_size: int = GB
    result_repeats: int = 3
    runlog_size: int = 50 * MB
    batch_repeats: int = 3
    prompt_sizes: list[int] = field(default_factory=lambda: [KB, MB])
    dspy_repeats: dict[int, int] = field(default_factory=dict)

    @classmethod
    def full(cls, sizes: list[int]) -> Plan:
        return cls(
            sizes=sizes, dspy_sizes=sizes,
            bind_repeats={s: 5 if s <= GB else 2 for s in sizes},
            workload_repeats={s: 3 if s <= GB else 1 for s in sizes},
            result_size=GB,
            dspy_repeats={s: 3 if s <= 10 * MB else 2 if s <= 100 * MB else 1 for s in sizes},
        )

    @classmethod
    def quick(cls, sizes: list[int]) -> Plan:
        return cls(
            sizes=sizes, dspy_sizes=[s for s in sizes if s <= 10 * MB] or sizes[:1],
            shm_repeats=2, kernel_starts=2, rtt_calls=30, cold=2, warm=3, turn_runs=1, baseline=3,
            bind_repeats={s: 2 for s in sizes}, workload_repeats={s: 2 for s in sizes},
            result_size=min(max(sizes), GB), result_repeats=2, batch_repeats=1, runlog_size=10 * MB,
            dspy_repeats={s: 1 for s in sizes},
        )


class Bench:
    """Runs the measures and keeps everything they produced (raw numbers go to results.json)."""

    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args = args
        self.plan = plan
        self.raw: dict[str, Any] = {"plan": asdict(plan), "errors": {}}
        self.started = time.perf_counter()
        self.scratch = physical.scratch_dir()
        self.harness: Any = None
        self.worker: subprocess.Popen[bytes] | None = None

    # -- plumbing --------------------------------------------------------
    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f}s] {text}", file=sys.stderr, flush=True)

    def attempt(self, key: str, fn: Callable[[], Any]) -> Any:
        """Run one measure; a failure is recorded under ``key`` and the benchmark goes on."""
        try:
            value = fn()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - MemoryError, a dead kernel: record and go on
            self.raw["errors"][key] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
            self.say(f"  {key} FAILED: {self.raw['errors'][key]}")
            traceback.print_exc(file=sys.stderr)
            return None
        return value

    def repeat(self, key: str, count: int, fn: Callable[[], Any]) -> list[Any]:
        out = []
        for _ in range(count):
            value = self.attempt(key, fn)
            if value is None:
                break
            out.append(value)
        self.raw[key] = out
        return out

    def close(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            _kill_group(self.worker)
        if self.harness is not None:
            try:
                self.harness.close()
            except Exception as exc:  # noqa: BLE001
                self.say(f"cleanup: {exc}")
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- phases ----------------------------------------------------------
    def physical_limits(self) -> None:
        import numpy as np

        plan = self.plan
        self.say("physical limits: raw /dev/shm writes")
        buffer = np.ones(max(plan.sizes + [plan.result_size]), dtype=np.uint8)
        shm: dict[str, list[float]] = {}
        for size in sorted(set(plan.sizes + [plan.result_size])):
            shm[str(size)] = [physical.shm_write_seconds(size, self.scratch, buffer) for _ in range(plan.shm_repeats)]
            self.say(f"  {data.size_label(size)}: {statistics.median(shm[str(size)]):.3f} s")
        self.raw["shm_write"] = shm
        del buffer
        gc.collect()
        self.say("physical limits: raw kernel start to first reply")
        self.repeat("kernel_start", plan.kernel_starts, lambda: physical.kernel_start_seconds(self.scratch))
        self.repeat("kernel_start_imports", plan.kernel_starts,
                    lambda: physical.kernel_start_seconds(self.scratch, "import pandas, pyarrow, numpy"))
        self.say("physical limits: raw execute round trips")
        self.raw["rtt"] = self.attempt("rtt", lambda: physical.execute_round_trips(self.scratch, plan.rtt_calls))

    def rlm(self) -> None:
        import harness as H

        plan = self.plan
        self.harness = h = H.Harness()
        self.raw["http_rtt"] = self.attempt("http_rtt", lambda: physical.http_round_trips(h.server.url, 30))
        self.say("warm-up runs (imports litellm, starts the first spare kernel); not measured")
        self.attempt("warmup", lambda: (H.cold_start(h), H.warm_start(h)))
        self.say("cold start (warm_kernels=False)")
        self.repeat("cold", plan.cold, lambda: H.cold_start(h))
        self.say("warm start (warm_kernels=True)")
        self.repeat("warm", plan.warm, lambda: H.warm_start(h))
        self.say(f"per-turn overhead ({plan.turns} turns of `pass`)")
        self.repeat("turns", plan.turn_runs, lambda: H.per_turn(h, plan.turns))
        latencies = [x for run in self.raw["turns"] for x in run["latency"]]
        idle = statistics.median(latencies) if latencies else 0.02
        self.raw["rtt_idle_gap"] = idle
        self.raw["rtt_idle"] = self.attempt(
            "rtt_idle", lambda: physical.execute_round_trips(self.scratch, max(20, plan.rtt_calls // 2), idle=idle))
        self.say("llm_query_batched: 100 prompts, 200 ms each")
        default = __import__("rlm_magic").RLM.class_traits()["sub_concurrency"].default()
        self.raw["batch_default_concurrency"] = default
        self.repeat("batch_default", plan.batch_repeats, lambda: H.batched(h, 100, 0.2, default))
        self.repeat("batch_16", plan.batch_repeats, lambda: H.batched(h, 100, 0.2, 16))
        self.repeat("batch_100", plan.batch_repeats, lambda: H.batched(h, 100, 0.2, 100))
        self.say(f"a {data.size_label(plan.result_size)} DataFrame result coming back")
        self.repeat("result", plan.result_repeats, lambda: H.result_back(h, plan.result_size))
        if "run_log" in __import__("rlm_magic").RLM.class_trait_names():
            self.say(f"run() return after a {data.size_label(plan.runlog_size)} DataFrame result, run_log on and off")
            self.repeat("runlog_off", 1, lambda: H.result_back(h, plan.runlog_size, run_log=False))
            self.repeat("runlog_on", 1, lambda: H.result_back(h, plan.runlog_size, run_log=True))
        self.say("baselines: tiny frame and tiny string")
        self.repeat("bind_frame_tiny", plan.baseline, lambda: H.bind(h, data.make_frame(KB)))
        self.repeat("bind_text_tiny", plan.baseline, lambda: H.bind(h, data.make_text(KB)))
        for size in plan.prompt_sizes:
            if size not in plan.sizes:
                self.raw[f"prompt_text_{size}"] = self.attempt(
                    f"prompt_text_{size}", lambda: H.bind(h, data.make_text(size))["root_prompt_chars"])
        for size in plan.sizes:
            label = data.size_label(size)
            self.say(f"{label}: building the DataFrame")
            frame = self.attempt(f"make_frame_{size}", lambda: data.make_frame(size))
            if frame is not None:
                self.raw[f"frame_bytes_{size}"] = data.frame_bytes(frame)
                self.say(f"{label}: binding the DataFrame (each run next to a raw write of the same bytes)")
                raw_writes: list[float] = []
                self.raw[f"raw_frame_{size}"] = raw_writes

                def bind_frame() -> dict[str, Any]:
                    H.Harness.settle()
                    raw_writes.append(physical.shm_write_frame_seconds(frame, self.scratch))
                    return H.bind(h, frame)

                self.repeat(f"bind_frame_{size}", plan.bind_repeats[size], bind_frame)
                self.say(f"{label}: comparison workload on the DataFrame")
                self.repeat(f"work_frame_{size}", plan.workload_repeats[size], lambda: H.workload(h, frame))
            frame = None
            gc.collect()
            self.say(f"{label}: building the CSV string")
            text = self.attempt(f"make_text_{size}", lambda: data.make_text(size))
            if text is not None:
                self.say(f"{label}: binding the string")
                self.repeat(f"bind_text_{size}", plan.bind_repeats[size], lambda: H.bind(h, text))
                self.say(f"{label}: comparison workload on the string")
                self.repeat(f"work_text_{size}", plan.workload_repeats[size], lambda: H.workload(h, text))
            text = None
            gc.collect()
        h.close()
        self.harness = None

    def dspy(self) -> None:
        plan = self.plan
        self.raw["dspy"] = {"status": None}
        if self.args.skip_dspy:
            self.raw["dspy"]["status"] = "skipped (--skip-dspy)"
            return
        why = self._dspy_ready()
        if why:
            self.raw["dspy"]["status"] = why
            self.say(f"DSPy side not run: {why}")
            return
        spec = {"sizes": plan.dspy_sizes, "repeats": {str(s): plan.dspy_repeats.get(s, 1) for s in plan.dspy_sizes}}
        spec_path = self.scratch / "dspy-spec.json"
        out_path = self.scratch / "dspy-out.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ, PATH=f"{BENCH / 'deno' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                   DENO_DIR=str(BENCH / ".deno-dir"), LITELLM_LOCAL_MODEL_COST_MAP="True")
        env.pop("VIRTUAL_ENV", None)
        self.say(f"DSPy side: dspy.RLM on CSV text of {', '.join(data.size_label(s) for s in plan.dspy_sizes)}")
        self.worker = subprocess.Popen([str(DSPY_PYTHON), str(BENCH / "dspy_worker.py"), str(spec_path),
                                        str(out_path)], env=env, cwd=str(REPO), start_new_session=True)
        code = self.worker.wait()
        self.worker = None
        try:
            self.raw["dspy"].update(json.loads(out_path.read_text()))
        except (OSError, ValueError) as exc:
            self.raw["dspy"]["status"] = f"the DSPy worker wrote no results (exit {code}): {exc}"
            return
        error = self.raw["dspy"].get("error")
        self.raw["dspy"]["status"] = f"failed: {error}" if error else "ok"

    def _dspy_ready(self) -> str | None:
        """None when DSPy and Deno are set up (setting them up first if needed), else why not."""
        deno = BENCH / "deno" / "bin" / "deno"
        missing = not DSPY_PYTHON.exists() or not any((BENCH / "node_modules" / "@deno").glob("*/deno"))
        if missing and not self.args.no_setup:
            self.say("DSPy side: setting up bench/.venv-dspy and Deno (bash bench/setup_dspy.sh)")
            proc = subprocess.run(["bash", str(BENCH / "setup_dspy.sh")], cwd=str(BENCH))
            if proc.returncode != 0:
                return f"bash bench/setup_dspy.sh failed with exit status {proc.returncode}"
        if not DSPY_PYTHON.exists():
            return "bench/.venv-dspy is missing (run: bash bench/setup_dspy.sh)"
        try:
            subprocess.run([str(deno), "--version"], check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"Deno does not run ({deno}): {exc} (run: bash bench/setup_dspy.sh)"
        return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started with start_new_session=True and everything in its group (Deno)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
                            "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    shm = shutil.disk_usage(physical.SHM)
    info["shm"] = f"{physical.SHM} ({shm.total / 2**30:.1f} GiB)"
    versions = {}
    for pkg in ("rlm-magic", "pandas", "pyarrow", "numpy", "litellm", "jupyter_client", "ipykernel", "pyzmq"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "not installed"
    info["versions"] = versions
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        pass
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a fast subset (10MB and 100MB, fewer repeats; ~2 minutes)")
    p.add_argument("--sizes", help="comma-separated value sizes (default 10MB,100MB,1GB,4GB; --quick: 10MB,100MB)")
    p.add_argument("--dspy-sizes", help="sizes for the DSPy comparison (default: --sizes; --quick: up to 10MB)")
    p.add_argument("--skip-dspy", action="store_true", help="leave out the DSPy comparison")
    p.add_argument("--no-setup", action="store_true", help="do not run bench/setup_dspy.sh when DSPy is missing")
    p.add_argument("--from-json", type=Path, metavar="JSON",
                   help="measure nothing: render the report again from the raw numbers a run saved (bench/out/*.json)")
    p.add_argument("--output", type=Path,
                   help="where to write the report (default: bench/RESULTS.md; --quick: bench/out/RESULTS-quick.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    default_sizes = "10MB,100MB" if args.quick else "10MB,100MB,1GB,4GB"
    sizes = sorted({data.parse_size(s) for s in (args.sizes or default_sizes).split(",") if s.strip()})
    plan = Plan.quick(sizes) if args.quick else Plan.full(sizes)
    if args.dspy_sizes:
        plan.dspy_sizes = sorted({data.parse_size(s) for s in args.dspy_sizes.split(",") if s.strip()})
        plan.dspy_repeats = {s: plan.dspy_repeats.get(s, 1) for s in plan.dspy_sizes}
    output = args.output or (BENCH / "out" / "RESULTS-quick.md" if args.quick else BENCH / "RESULTS.md")
    if args.from_json:
        raw = json.loads(args.from_json.read_text())
        quick = raw.get("command", "").find("--quick") >= 0
        output = args.output or (BENCH / "out" / "RESULTS-quick.md" if quick else BENCH / "RESULTS.md")
        output.write_text(report.render(raw, quick=quick, interrupted=False))
        print(f"wrote {output} from {args.from_json}", file=sys.stderr)
        return 0
    command = "python bench/run.py" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(
        sys.argv[1:] if argv is None else argv))

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (a background job of a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    physical.sweep_stale()
    from rlm_magic.workspace import sweep_stale_run_dirs

    sweep_stale_run_dirs()
    bench = Bench(args, plan)
    bench.raw["machine"] = machine_info()
    bench.raw["load_start"] = os.getloadavg()
    bench.raw["command"] = command
    interrupted = False
    try:
        bench.physical_limits()
        bench.rlm()
        bench.dspy()
    except KeyboardInterrupt:
        interrupted = True
        bench.say("interrupted: cleaning up")
    finally:
        bench.close()
    bench.raw["elapsed"] = time.perf_counter() - bench.started
    bench.raw["load_end"] = os.getloadavg()
    out_dir = BENCH / "out"
    out_dir.mkdir(exist_ok=True)
    if interrupted:
        output = out_dir / "RESULTS-interrupted.md"
    (out_dir / (output.stem + ".json")).write_text(json.dumps(bench.raw, indent=1, default=str))
    text = report.render(bench.raw, quick=args.quick, interrupted=interrupted)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    bench.say(f"wrote {output} (raw numbers: {out_dir / (output.stem + '.json')})")
    if interrupted:
        return 130
    print(report.summary_for_console(bench.raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
