"""Turn the raw numbers of one benchmark run into bench/RESULTS.md.

All derived figures (binding time, speeds, ratios, verdicts) are computed here
from the raw measurements that bench/run.py saved, so the report and
``bench/out/*.json`` always agree.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import data

KB, MB, GB = 10**3, 10**6, 10**9
PASS, FAIL, NA = "pass", "**FAIL**", "—"


def med(values: Any) -> float | None:
    values = [v for v in (values or []) if v is not None]
    return statistics.median(values) if values else None


def ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:.1f} ms"


def sec(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s"


def gbps(nbytes: int, seconds: float | None) -> str:
    return "n/a" if not seconds else f"{nbytes / seconds / 1e9:.2f} GB/s"


def times(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.2f}×" if x < 10 else f"{x:.0f}×"


def mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.1f} MiB"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def verdict(ok: bool | None) -> str:
    return NA if ok is None else (PASS if ok else FAIL)


class Derived:
    """Figures computed from the raw record."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.errors: dict[str, str] = raw.get("errors", {})
        self.sizes: list[int] = raw["plan"]["sizes"]

    def runs(self, key: str) -> list[Any]:
        value = self.raw.get(key)
        return value if isinstance(value, list) else []

    def field(self, key: str, name: str) -> float | None:
        return med([r.get(name) for r in self.runs(key) if isinstance(r, dict)])

    def shm(self, size: int) -> float | None:
        return med(self.raw.get("shm_write", {}).get(str(size)))

    def raw_for(self, kind: str, size: int) -> float | None:
        """The raw write to compare a binding with: taken next to each run for frames, else the physical phase's."""
        return med(self.raw.get(f"raw_{kind}_{size}")) or self.shm(size)

    @property
    def rtt(self) -> float | None:
        return med(self.raw.get("rtt"))

    @property
    def rtt_idle(self) -> float | None:
        return med(self.raw.get("rtt_idle"))

    @property
    def http(self) -> float | None:
        return med(self.raw.get("http_rtt"))

    def turn(self, name: str) -> float | None:
        return med([x for run in self.runs("turns") for x in run[name]])

    def bind_time(self, kind: str, size: int) -> float | None:
        """Seconds the value adds to the start of a run: RunStarted -> TurnStarted, minus a tiny value's.

        None when that is lost in the run-to-run noise (see :meth:`bind_noise`) or the runs failed.
        """
        full = self.field(f"bind_{kind}_{size}", "run_started_to_turn")
        base = self.field(f"bind_{kind}_tiny", "run_started_to_turn")
        if full is None:
            return None
        added = full - (base or 0.0)
        return added if added > self.bind_noise(kind) else None

    def bind_noise(self, kind: str) -> float:
        """Run-to-run noise of the tiny value's start time: 3 × its median absolute deviation, at least 5 ms."""
        base = [r["run_started_to_turn"] for r in self.runs(f"bind_{kind}_tiny")]
        if len(base) < 2:
            return 0.005
        centre = statistics.median(base)
        return max(0.005, 3 * statistics.median(abs(x - centre) for x in base))

    def bind_ok(self, kind: str, size: int) -> bool:
        return bool(self.runs(f"bind_{kind}_{size}")) and f"bind_{kind}_{size}" not in self.errors \
            and f"make_{kind}_{size}" not in self.errors

    def nbytes(self, kind: str, size: int) -> int:
        return int(self.raw.get(f"frame_bytes_{size}", size)) if kind == "frame" else size

    def child_private(self, kind: str, size: int) -> float | None:
        """Private memory the value costs the child (RssAnon over a tiny value's; page-level noise clipped at 0)."""
        full = med([r["child"].get("RssAnon") for r in self.runs(f"bind_{kind}_{size}")])
        base = med([r["child"].get("RssAnon") for r in self.runs(f"bind_{kind}_tiny")])
        return None if full is None or base is None else max(0.0, full - base)

    def child_peak(self, kind: str, size: int) -> float | None:
        return med([r["child"].get("VmHWM") for r in self.runs(f"bind_{kind}_{size}")])

    def parent_extra(self, kind: str, size: int) -> float | None:
        return self.field(f"bind_{kind}_{size}", "parent_extra_peak")

    def prompt_chars(self, kind: str, size: int) -> float | None:
        if kind == "text" and self.raw.get(f"prompt_text_{size}") is not None:
            return self.raw[f"prompt_text_{size}"]
        return self.field(f"bind_{kind}_{size}", "root_prompt_chars")

    def step(self, kind: str, size: int) -> float | None:
        """Median over runs of each run's median step time."""
        return med([med(r["steps"]) for r in self.runs(f"work_{kind}_{size}")])

    def dspy_entry(self, size: int) -> dict[str, Any] | None:
        return (self.raw.get("dspy", {}).get("sizes") or {}).get(str(size))

    def dspy_step(self, size: int) -> float | None:
        entry = self.dspy_entry(size)
        if not entry or not entry.get("runs"):
            return None
        return med([med(r["steps"]) for r in entry["runs"]])

    def dspy_field(self, size: int, name: str) -> float | None:
        entry = self.dspy_entry(size)
        return med([r.get(name) for r in (entry or {}).get("runs", [])])

    def error(self, *keys: str) -> str | None:
        for key in keys:
            if key in self.errors:
                return self.errors[key]
        return None


def rows(d: Derived) -> list[tuple[str, str, str, str, str, str]]:
    """(measure, target, median, physical limit, ratio, result) for the main table."""
    out: list[tuple[str, str, str, str, str, str]] = []
    add = out.append
    sizes = d.sizes

    # physical limits
    for size in sorted({int(s) for s in d.raw.get("shm_write", {})}):
        t = d.shm(size)
        add((f"Physical: raw write of {data.size_label(size)} to {d.raw['machine'].get('shm', '/dev/shm').split()[0]}",
             NA, f"{sec(t)} ({gbps(size, t)})", "—", "1×", NA))
    start, start_imp = med(d.raw.get("kernel_start")), med(d.raw.get("kernel_start_imports"))
    add(("Physical: raw kernel start → first reply (bare ipykernel)", NA, sec(start), "—", "1×", NA))
    add(("Physical: raw kernel start → first reply, running `import pandas, pyarrow, numpy`", NA, sec(start_imp),
         "—", "1×", NA))
    add(("Physical: raw `execute('pass')` round trip, running kernel, back to back", NA, ms(d.rtt), "—", "1×", NA))
    gap = d.raw.get("rtt_idle_gap")
    add((f"Physical: raw `execute('pass')` round trip after {ms(gap)} idle (as in a turn, while the model answers)",
         NA, ms(d.rtt_idle), "—", "1×", NA))
    add(("Physical: raw HTTP round trip to the scripted model (stdlib client)", NA, ms(d.http), "—", "1×", NA))

    # start-up
    cold_turn = d.field("cold", "call_to_turn")
    add(("Cold start: `run()` → first TurnStarted (warm_kernels=False; the kernel starts alongside the model call)",
         "report", ms(cold_turn), "—", "—", NA))
    cold = d.field("cold", "to_first_code")
    add(("Cold start: `run()` → first CodeFinished (warm_kernels=False), the first executed turn", "≤ 0.6 s", sec(cold),
         f"{sec(start_imp)} (kernel start + imports, stock ready check)",
         times(cold / start_imp if cold and start_imp else None), verdict(None if cold is None else cold <= 0.6)))
    warm_code = d.field("warm", "to_first_code")
    phys = (d.rtt or 0) + (d.http or 0) if d.rtt and d.http else None
    parts = f" (model call {ms(d.field('warm', 'model_latency'))}, execute {ms(d.field('warm', 'execute'))})" \
        if d.field("warm", "model_latency") is not None else ""
    add(("Warm start: `run()` → first CodeFinished (warm_kernels=True, second run)", "≤ 30 ms", ms(warm_code) + parts,
         f"{ms(phys)} (HTTP + execute round trips)", times(warm_code / phys if warm_code and phys else None),
         verdict(None if warm_code is None else warm_code <= 0.030)))
    warm_turn = d.field("warm", "run_started_to_turn")
    add(("Warm start: RunStarted → first TurnStarted", "≤ 30 ms", ms(warm_turn), f"{ms(d.rtt)} (one execute)",
         times(warm_turn / d.rtt if warm_turn and d.rtt else None),
         verdict(None if warm_turn is None else warm_turn <= 0.030)))

    # per turn
    over = d.turn("overhead")
    turns = d.raw["plan"]["turns"]
    add((f"Per-turn harness overhead ({turns} turns of `pass`; turn time − LLMCall.latency) vs the raw round trip "
         "after the same idle time", "≤ 1.5×", ms(over), ms(d.rtt_idle),
         times(over / d.rtt_idle if over and d.rtt_idle else None),
         verdict(None if not (over and d.rtt_idle) else over / d.rtt_idle <= 1.5)))
    add(("Per-turn harness overhead vs the raw back-to-back round trip", "≤ 1.5×", ms(over), ms(d.rtt),
         times(over / d.rtt if over and d.rtt else None),
         verdict(None if not (over and d.rtt) else over / d.rtt <= 1.5)))

    # binding
    for kind, what in (("frame", "DataFrame"), ("text", "string")):
        for size in sizes:
            label = data.size_label(size)
            nbytes = d.nbytes(kind, size)
            t = d.bind_time(kind, size)
            raw_t = d.raw_for(kind, size)
            err = d.error(f"make_{kind}_{size}", f"bind_{kind}_{size}")
            is_gb_frame = kind == "frame" and size == GB
            if not d.bind_ok(kind, size):
                add((f"Bind a {label} {what}", "without error" if size > GB and kind == "frame" else "report",
                     f"error: {err}", sec(raw_t), "n/a", FAIL))
                continue
            if t is None:
                add((f"Bind a {label} {what}: time (RunStarted → TurnStarted, minus a tiny value's)",
                     "≤ 0.7 s" if is_gb_frame else "report", f"< {ms(d.bind_noise(kind))} (within run-to-run noise)",
                     f"{sec(raw_t)} (raw write)", "n/a", verdict(True) if is_gb_frame else NA))
            else:
                add((f"Bind a {label} {what}: time (RunStarted → TurnStarted, minus a tiny value's)",
                     "≤ 0.7 s" if is_gb_frame else ("without error" if size > GB and kind == "frame" else "report"),
                     sec(t), f"{sec(raw_t)} (raw write)", times(t / raw_t if raw_t else None),
                     verdict(t <= 0.7) if is_gb_frame else (PASS if size > GB and kind == "frame" else NA)))
            speed = raw_t / t if raw_t and t else None
            add((f"Bind a {label} {what}: speed, share of the raw /dev/shm write speed",
                 "≥ 75%" if is_gb_frame else "report", gbps(nbytes, t) if t else "n/a (time within noise)",
                 gbps(nbytes, raw_t), pct(speed),
                 verdict(None if speed is None else speed >= 0.75) if is_gb_frame else NA))
            private = d.child_private(kind, size)
            share = private / nbytes if private is not None else None
            add((f"Bind a {label} {what}: child private memory (RssAnon − a tiny value's)",
                 "≤ 5% of the frame" if kind == "frame" else "report",
                 f"{mib(private)} ({pct(share)} of {mib(nbytes)})", "0", pct(share),
                 verdict(None if share is None else share <= 0.05) if kind == "frame" else NA))
            add((f"Bind a {label} {what}: parent peak memory added (VmHWM − VmRSS before)", "report",
                 mib(d.parent_extra(kind, size)), "0", pct((d.parent_extra(kind, size) or 0) / nbytes), NA))

    # results back
    rsize = d.raw["plan"]["result_size"]
    landed = d.field("result", "submit_to_landed")
    raw_t = d.shm(rsize)
    add((f"A {data.size_label(rsize)} DataFrame result: SUBMIT → landed in the parent (run_log off)", "report",
         sec(landed) if landed is not None else f"error: {d.error('result')}", f"{sec(raw_t)} (raw write)",
         times(landed / raw_t if landed and raw_t else None), NA if landed is not None else FAIL))

    off, on = d.runs("runlog_off"), d.runs("runlog_on")
    if off and on:
        lsize = d.raw["plan"].get("runlog_size", 50 * MB)
        t_off, t_on = off[0]["submit_to_return"], on[0]["submit_to_return"]
        add((f"A {data.size_label(lsize)} DataFrame result: SUBMIT → `run()` returns, run_log on (the default) vs off",
             "report", f"{sec(t_on)} vs {sec(t_off)}", sec(t_off), times(t_on / t_off if t_off else None),
             NA))
    elif d.error("runlog_on", "runlog_off"):
        add(("DataFrame result with run_log on", "report", f"error: {d.error('runlog_on', 'runlog_off')}", "—", "n/a",
             FAIL))

    # batched sub-calls
    default_conc = d.raw.get("batch_default_concurrency", 16)
    for key, conc in (("batch_default", default_conc), ("batch_16", 16), ("batch_100", 100)):
        t = d.field(key, "batch_elapsed")
        if t is None and key not in d.raw:
            continue
        floor = math.ceil(100 / conc) * 0.2
        name = f"default sub_concurrency={conc}" if key == "batch_default" else f"sub_concurrency={conc}"
        target = "≤ 1 s" if key == "batch_default" else "report"
        add((f"llm_query_batched, 100 prompts × 200 ms ({name}; floor {sec(floor)})", target,
             sec(t) if t is not None else f"error: {d.error(key)}", "200 ms (one reply)",
             times(t / 0.2 if t else None), verdict(None if t is None else t <= 1.0) if key == "batch_default" else NA))

    # root prompt size
    small = d.prompt_chars("text", KB)
    largest = max(sizes)
    big = d.prompt_chars("text", largest)
    add((f"Root prompt size, context string {data.size_label(KB)} → {data.size_label(largest)}",
         "constant (≤ 1.05×)", f"{_chars(small)} → {_chars(big)}", f"{_chars(small)} (1 KB)",
         times(big / small if big and small else None),
         verdict(None if not (big and small) else big / small <= 1.05)))

    # DSPy
    dspy = d.raw.get("dspy", {})
    for size in d.raw["plan"]["dspy_sizes"]:
        label = data.size_label(size)
        ours = d.step("text", size)
        theirs = d.dspy_step(size)
        entry = d.dspy_entry(size) or {}
        if theirs is None:
            why = short_error(entry["error"], 300) if entry.get("error") else (dspy.get("status") or "not run")
            add((f"vs dspy.RLM, {label} CSV string: time per step", "≥ 10× faster", f"ours {ms(ours)}; DSPy: {why}",
                 "—", "n/a", NA))
            continue
        ratio = theirs / ours if ours else None
        add((f"vs dspy.RLM, {label} CSV string: time per step (DSPy ÷ ours)", "≥ 10× faster",
             f"ours {ms(ours)}, DSPy {sec(theirs)}", "—", times(ratio),
             verdict(None if ratio is None else ratio >= 10)))
    return out


def short_error(text: str, limit: int = 160) -> str:
    """DSPy's error, keeping the sandbox's own diagnostic (the informative part) when there is one."""
    if "(last sandbox diagnostic:" in text:
        head, _, diag = text.partition("(last sandbox diagnostic:")
        text = f"{head.strip().rstrip(':')}: {diag.strip().rstrip(')')}"
    return text if len(text) <= limit else text[:limit] + "…"


def _load(value: Any) -> str:
    return "n/a" if not value else " / ".join(f"{x:.2f}" for x in value)


def _chars(n: float | None) -> str:
    return "n/a" if n is None else f"{int(n):,} chars"


def table(header: list[str], body: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def binding_table(d: Derived) -> str:
    body = []
    for kind, what in (("frame", "DataFrame"), ("text", "string")):
        for size in d.sizes:
            t = d.bind_time(kind, size)
            raw_t = d.raw_for(kind, size)
            nbytes = d.nbytes(kind, size)
            private = d.child_private(kind, size)
            shown = sec(t) if t is not None else (f"< {ms(d.bind_noise(kind))} (noise)" if d.bind_ok(kind, size)
                                                  else "error")
            body.append((
                f"{data.size_label(size)} {what}", mib(nbytes),
                sec(d.field(f"bind_{kind}_{size}", "run_started_to_turn")), shown, sec(raw_t),
                pct(raw_t / t if t and raw_t else None), mib(private),
                pct(private / nbytes if private is not None else None), mib(d.child_peak(kind, size)),
                mib(d.parent_extra(kind, size)), _chars(d.prompt_chars(kind, size)),
                len(d.runs(f"bind_{kind}_{size}")),
            ))
    base = [("tiny DataFrame (baseline)", sec(d.field("bind_frame_tiny", "run_started_to_turn")),
             mib(med([r["child"]["RssAnon"] for r in d.runs("bind_frame_tiny")]))),
            ("tiny string (baseline)", sec(d.field("bind_text_tiny", "run_started_to_turn")),
             mib(med([r["child"]["RssAnon"] for r in d.runs("bind_text_tiny")])))]
    return (table(["value", "size", "RunStarted→TurnStarted", "bind time", "raw write", "% of raw speed",
                   "child private", "% of size", "child VmHWM", "parent peak added", "root prompt", "runs"], body)
            + "\n\nBaselines subtracted: " + "; ".join(f"{n}: start {a}, child RssAnon {b}" for n, a, b in base))


def prompt_table(d: Derived) -> str:
    sizes = sorted(set(d.raw["plan"]["prompt_sizes"]) | set(d.sizes))
    body = [(data.size_label(s), _chars(d.prompt_chars("text", s)),
             _chars(d.prompt_chars("frame", s)) if s in d.sizes else "—") for s in sizes]
    return table(["context size", "root prompt (string context)", "root prompt (DataFrame context)"], body)


def dspy_table(d: Derived) -> str:
    body = []
    for size in d.raw["plan"]["dspy_sizes"]:
        entry = d.dspy_entry(size) or {}
        ours_t, ours_f, theirs = d.step("text", size), d.step("frame", size), d.dspy_step(size)
        status = short_error(entry["error"], 300) if entry.get("error") else (
            "ok" if theirs is not None else (d.raw.get("dspy", {}).get("status") or "not run"))
        body.append((
            data.size_label(size), ms(ours_t), ms(ours_f), sec(theirs),
            times(theirs / ours_t if theirs and ours_t else None),
            sec(d.field(f"work_text_{size}", "start")), sec(d.dspy_field(size, "start")),
            sec(d.field(f"work_text_{size}", "total")), sec(d.dspy_field(size, "total")),
            f"{len(d.runs(f'work_text_{size}'))} / {len((entry or {}).get('runs', []))}", status,
        ))
    return table(["size", "ours: step (CSV string)", "ours: step (DataFrame)", "DSPy: step (CSV string)",
                  "speed-up per step", "ours: start", "DSPy: start", "ours: total", "DSPy: total", "runs (ours / DSPy)",
                  "DSPy status"], body)


def readme_table(d: Derived) -> str:
    sizes = d.sizes
    body = []
    cold_turn, cold_code = d.field("cold", "call_to_turn"), d.field("cold", "to_first_code")
    body.append(("Cold start, no spare kernel (`run()` → first turn / → first code result)",
                 f"{ms(cold_turn)} / {sec(cold_code)}"))
    warm_turn, warm_code = d.field("warm", "run_started_to_turn"), d.field("warm", "to_first_code")
    body.append(("Start with a warm kernel (RunStarted → first turn / → first code result)",
                 f"{ms(warm_turn)} / {ms(warm_code)}"))
    over = d.turn("overhead")
    body.append(("Harness overhead per turn",
                 f"{ms(over)} ({times(over / d.rtt_idle if over and d.rtt_idle else None)} a raw Jupyter round trip"
                 f" after the same idle; {times(over / d.rtt if over and d.rtt else None)} back to back)"))
    for size in sizes:
        if size < GB:
            continue
        t = d.bind_time("frame", size)
        private = d.child_private("frame", size)
        nbytes = d.nbytes("frame", size)
        raw_t = d.raw_for("frame", size)
        body.append((f"Bind a {data.size_label(size)} DataFrame",
                     "failed" if t is None else f"{sec(t)} ({pct(raw_t / t if raw_t else None)} of raw "
                     f"/dev/shm write speed; child holds {pct(private / nbytes if private is not None else None)} "
                     "privately)"))
    tdef, t16 = d.field("batch_default", "batch_elapsed"), d.field("batch_16", "batch_elapsed")
    conc = d.raw.get("batch_default_concurrency", 16)
    body.append(("llm_query_batched, 100 prompts × 200 ms",
                 f"{sec(tdef)} (default sub_concurrency={conc}), {sec(t16)} (=16)"))
    largest = max(sizes)
    body.append((f"Root prompt, 1 KB → {data.size_label(largest)} context",
                 f"{_chars(d.prompt_chars('text', KB))} → {_chars(d.prompt_chars('text', largest))}"))
    for size in d.raw["plan"]["dspy_sizes"]:
        theirs, ours = d.dspy_step(size), d.step("text", size)
        entry = d.dspy_entry(size) or {}
        if theirs is not None and ours:
            body.append((f"vs dspy.RLM, {data.size_label(size)} text, per step",
                         f"{ms(ours)} vs {sec(theirs)}: **{times(theirs / ours)} faster**"))
        elif entry.get("error") and not entry.get("skipped"):
            body.append((f"vs dspy.RLM, {data.size_label(size)} text",
                         f"ours {ms(ours)} per step; dspy.RLM fails ({short_error(entry['error'])})"))
    return table(["measure (zero-latency scripted model)", "result"], body)


def render(raw: dict[str, Any], *, quick: bool, interrupted: bool) -> str:
    d = Derived(raw)
    m = raw["machine"]
    v = m.get("versions", {})
    dv = raw.get("dspy", {}).get("versions", {})
    main_rows = rows(d)
    failed = [r for r in main_rows if r[5] == FAIL]
    parts = [
        "# rlm_magic benchmark results" + (" (quick subset)" if quick else "") + (" — INTERRUPTED" if interrupted else ""),
        "",
        "Written by `bench/run.py`; do not edit by hand. Every figure is the **median** of several runs, and every "
        "ratio compares two figures measured **in this same run**. The model is a zero-latency scripted "
        "OpenAI-compatible server on 127.0.0.1 (`rlm_magic.scripted.ScriptedServer`), reached through litellm; "
        "no real LLM API was called.",
        "",
        f"* Date: {m.get('date')}; whole run {raw.get('elapsed', 0) / 60:.1f} min",
        f"* Machine: {m.get('cpu', '?')}, {m.get('cpus')} CPUs, {m.get('memory', '?')} memory, {m.get('shm')}; "
        f"{m.get('platform')}",
        f"* Python {m.get('python')}; " + ", ".join(f"{k} {x}" for k, x in v.items()),
        "* DSPy side: " + (", ".join(f"{k} {x}" for k, x in dv.items()) if dv else "n/a")
        + f" (status: {raw.get('dspy', {}).get('status')})",
        f"* Commit: {m.get('commit', '?')}",
        f"* Load average (1/5/15 min) at start {_load(raw.get('load_start'))}, at end {_load(raw.get('load_end'))} "
        "(other work on the machine during the run makes every figure noisier)",
        f"* Command: `{raw.get('command')}` (from the repository root, with `.venv/bin/python`)",
        "",
        "## For the README",
        "",
        readme_table(d),
        "",
        "## Every measure",
        "",
        f"{len(failed)} target(s) missed." if failed else "All targets with a verdict were met.",
        "",
        table(["measure", "target", "median", "physical limit (same run)", "ratio", "result"], main_rows),
        "",
        "## Binding values",
        "",
        binding_table(d),
        "",
        "## Root prompt size as the context grows",
        "",
        prompt_table(d),
        "",
        "## Side by side with dspy.RLM",
        "",
        "The same three steps on both (`print(len(context)); print(context[:200])`, then one `llm_query` on a "
        "2,000-character sample, then `SUBMIT(answer=summary)`), the same scripted server and sub-model, the "
        "context given as the same CSV text (dspy.RLM cannot take a DataFrame; our DataFrame column runs the same "
        "code on the frame). A step is the time between two root-model requests as the server sees them (the last "
        "step ends when the SUBMITted answer is back); start is the call until the first root request.",
        "",
        dspy_table(d),
        "",
        "## Method",
        "",
        "* Times are `time.perf_counter()` stamps taken by an `RLM(on_event=...)` subscriber and by the scripted "
        "server's handler; on Linux it is CLOCK_MONOTONIC, shared by all processes, so the child's stamp before "
        "SUBMIT compares with the parent's.",
        "* Warm runs wait until the spare kernel has finished starting, then 0.3 s, before they begin.",
        "* Binding time is RunStarted → first TurnStarted minus the same for a tiny value of the same kind (both on "
        "a warm kernel): it covers writing the value, the child loading it, and describing it for the prompt. "
        "For DataFrames the raw write it is compared with is taken just before each binding run, from the "
        "frame's own column buffers (the same bytes, no extra copy); for strings, from the physical phase.",
        "* Child memory is read from `/proc/self/status` of the kernel process by the first code block "
        "(RssAnon: private anonymous memory; VmHWM: peak resident, shared pages included).",
        "* Parent peak memory is VmHWM after the run (reset through /proc/self/clear_refs just before) minus VmRSS "
        "before it; the value itself was already in memory.",
        "* The raw round trip after idle sleeps for the median model-call latency of the per-turn runs before each "
        "execute: in a turn the kernel idles while the model answers, and a woken kernel answers more slowly than "
        "one kept busy.",
        "* llm_query_batched's floor is ceil(100 / sub_concurrency) waves × 200 ms. The scripted server listens "
        "with a backlog of 1024 here (socketserver's default of 5 makes Linux drop concurrent connections, which "
        "then retry after 1 s; one row shows that case).",
    ]
    if raw.get("errors"):
        parts += ["", "## Errors", ""] + [f"* `{k}`: {x}" for k, x in raw["errors"].items()]
    return "\n".join(parts) + "\n"


def summary_for_console(raw: dict[str, Any]) -> str:
    d = Derived(raw)
    return "\n" + readme_table(d) + "\n"
