"""Where the time goes, for the measures bench/run.py reports as slow.  Not part of the default run.

    .venv/bin/python bench/diagnose.py [--size 1GB]

Prints Markdown tables and writes them to bench/out/DIAGNOSIS.md.  It times the
pieces of each path separately (in this process, with the same functions the
harness calls) and a few alternatives, so a fix can be judged before it is
written.  Monkeypatches here live only in this process; no product file is
changed.  Medians of a few repeats; this machine is noisy, so compare within
one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import mmap
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import data  # noqa: E402
import physical  # noqa: E402

OUT: list[str] = []


def emit(text: str = "") -> None:
    print(text, flush=True)
    OUT.append(text)


def timed(fn: Callable[[], Any], repeats: int = 3, cleanup: Callable[[Any], None] | None = None) -> float:
    out = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        value = fn()
        out.append(time.perf_counter() - t0)
        if cleanup is not None:
            cleanup(value)
        del value
    return statistics.median(out)


def ms(x: float) -> str:
    return f"{x * 1e3:.1f} ms"


def table(rows: list[tuple[str, str]], header: tuple[str, str] = ("step", "median")) -> None:
    emit(f"| {header[0]} | {header[1]} |")
    emit("|---|---|")
    for a, b in rows:
        emit(f"| {a} | {b} |")
    emit()


# ----------------------------------------------------------------------
def warm_start(size: int) -> None:
    import harness as H
    from rlm_magic import workspace

    emit("## Warm start and binding: the next spare kernel starts during the run")
    emit()
    emit("`KernelPool.acquire` calls `refill()` as soon as it hands the spare out, so the next spare kernel "
         "starts (about a second of CPU) while this run binds values and makes its first calls; "
         "`Engine._stop` refills again after the run. Below: as is, then with `acquire`'s refill skipped "
         "(only `_stop`'s remains), patched in this process.")
    emit()
    rows = []
    original = workspace.KernelPool.acquire

    async def acquire_without_refill(self: Any, spec: Any) -> Any:
        self.refill = lambda spec: None  # instance attribute shadows the method during acquire
        try:
            return await original(self, spec)
        finally:
            del self.refill

    h = H.Harness()
    folder = physical.scratch_dir()
    df = data.make_frame(size)
    try:
        H.warm_start(h)
        H.warm_start(h)
        for label, patch in (("as is", False), ("refill only after the run", True), ("as is, again", False)):
            workspace.KernelPool.acquire = acquire_without_refill if patch else original
            runs = [H.warm_start(h) for _ in range(5)]
            binds, raws = [], []
            for _ in range(3):
                H.Harness.settle()
                raws.append(physical.shm_write_frame_seconds(df, folder))
                binds.append(H.bind(h, df)["run_started_to_turn"])
            rows.append((label, f"RunStarted → TurnStarted {ms(statistics.median(r['run_started_to_turn'] for r in runs))}; "
                                f"run() → first CodeFinished {ms(statistics.median(r['to_first_code'] for r in runs))}; "
                                f"{data.size_label(size)} frame: RunStarted → TurnStarted {ms(statistics.median(binds))} "
                                f"(raw write {ms(statistics.median(raws))})"))
    finally:
        workspace.KernelPool.acquire = original
        df = None
        h.close()
        shutil.rmtree(folder, ignore_errors=True)
    table(rows, ("spare refill", "median of 5 warm starts and 3 bindings"))


def round_trips() -> None:
    from rlm_magic.session import KernelSession, child_env

    emit("## Execute round trips: the product's client against raw clients, hot and after idle")
    emit()
    emit("In a turn the kernel sits idle while the model answers; the first execute after that is slower "
         "for every client (wake-up), so the per-turn target is judged against a raw round trip after the same "
         "idle time as well as against back-to-back calls.")
    emit()
    folder = physical.scratch_dir()
    rows = []

    async def product() -> None:
        ks = KernelSession(cwd=folder, env=child_env(ipython_dir=folder / "ipy"), ipc_dir=folder)
        await ks.start()
        kc = ks.kc

        async def raw_async() -> None:
            mid = kc.execute("pass", store_history=False, allow_stdin=False)
            while True:
                m = await kc.get_iopub_msg(timeout=10)
                if (m["parent_header"].get("msg_id") == mid and m["msg_type"] == "status"
                        and m["content"]["execution_state"] == "idle"):
                    break
            while True:
                r = await kc.get_shell_msg(timeout=10)
                if r["parent_header"].get("msg_id") == mid:
                    return

        try:
            for _ in range(5):
                await ks.execute("pass", timeout=30, max_output_chars=1000)
            for idle in (0.0, 0.016):
                a, b = [], []
                for _ in range(30):
                    await asyncio.sleep(idle)
                    t0 = time.perf_counter()
                    await ks.execute("pass", timeout=180, max_output_chars=10_000)
                    a.append(time.perf_counter() - t0)
                    await asyncio.sleep(idle)
                    t0 = time.perf_counter()
                    await raw_async()
                    b.append(time.perf_counter() - t0)
                rows.append((f"KernelSession.execute (product), idle {ms(idle)}", ms(statistics.median(a))))
                rows.append((f"raw async jupyter-client, idle {ms(idle)}", ms(statistics.median(b))))
        finally:
            await ks.shutdown()

    try:
        asyncio.run(product())
        for idle in (0.0, 0.016):
            rows.append((f"raw blocking jupyter-client, idle {ms(idle)}",
                         ms(statistics.median(physical.execute_round_trips(folder, 30, idle=idle)))))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    table(rows, ("client", "median round trip"))


def bind_frame(size: int) -> None:
    import pyarrow as pa

    from rlm_kernel import codec
    from rlm_magic import transport
    from rlm_magic.describe import describe_all

    emit(f"## Binding a {data.size_label(size)} DataFrame, piece by piece")
    emit()
    df = data.make_frame(size)
    folder = physical.scratch_dir()
    try:
        def write() -> dict[str, Any]:
            return transport.write_binding("x", df, folder)

        spec = write()
        load = timed(lambda: codec.load_frame(spec["path"]))
        Path(spec["path"]).unlink()
        rows = [
            ("describe_all (prompt text)", ms(timed(lambda: describe_all({"context": df})))),
            ("transport.write_binding (parent, whole)", ms(timed(write, cleanup=lambda s: Path(s["path"]).unlink()))),
            ("  of which pa.Table.from_pandas", ms(timed(lambda: pa.Table.from_pandas(df, preserve_index=None)))),
        ]
        table_ = pa.Table.from_pandas(df, preserve_index=None)

        def ipc_write() -> Path:
            path = folder / "ipc.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table_.schema) as writer:
                writer.write_table(table_)
            return path

        rows.append(("  of which the IPC file write", ms(timed(ipc_write, cleanup=lambda p: p.unlink()))))
        rows.append(("codec.load_frame (child: map + wrap)", ms(load)))
        rows.append(("raw /dev/shm write of the same bytes", ms(timed(lambda: physical.shm_write_seconds(size, folder)))))

        def no_nan_scan() -> Any:
            # float columns as they are (NaN stays NaN; to_pandas gives NaN either way): zero-copy
            return pa.table({c: (pa.array(df[c].to_numpy(), from_pandas=False) if df[c].dtype.kind == "f"
                                 else pa.Array.from_pandas(df[c].array) if df[c].dtype.kind in "iub"
                                 else df[c].array.__arrow_array__()) for c in df.columns})

        rows.append(("alternative: Arrow table without from_pandas' NaN scan of float columns",
                     ms(timed(no_nan_scan))))
        table(rows)
        table_ = None
    finally:
        df = None
        shutil.rmtree(folder, ignore_errors=True)
        gc.collect()


def bind_text(size: int) -> None:
    from rlm_kernel import codec
    from rlm_magic import transport
    from rlm_magic.describe import describe_all

    emit(f"## Binding a {data.size_label(size)} string, piece by piece")
    emit()
    emit("The parent writes the string through a text-mode file (`open(..., 'w', encoding='utf-8', newline='')`) "
         "and the child reads it back the same way; both are several times slower than the bytes underneath, and "
         "the child peaks at twice the string (bytes read, then decoded).")
    emit()
    text = data.make_text(size)
    folder = physical.scratch_dir()
    try:
        spec = transport.write_binding("x", text, folder)
        rows = [
            ("describe_all (prompt text)", ms(timed(lambda: describe_all({"context": text})))),
            ("transport.write_binding (parent, text mode)",
             ms(timed(lambda: transport.write_binding("x", text, folder), repeats=2))),
            ("codec.load_binding (child, text mode)", ms(timed(lambda: codec.load_binding(spec), repeats=2))),
        ]
        path = folder / "alt.txt"

        def write_bytes() -> None:
            with open(path, "wb") as fh:
                for i in range(0, len(text), 1 << 26):  # 64 Mi characters at a time: no second full copy
                    fh.write(text[i:i + (1 << 26)].encode("utf-8"))

        def read_mmap() -> str:
            with open(spec["path"], "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return str(mm, "utf-8")

        rows += [
            ("alternative write: encode in 64 Mi-character slices, binary file", ms(timed(write_bytes, repeats=2))),
            ("alternative read: mmap + str(mapping, 'utf-8') (one copy)", ms(timed(read_mmap, repeats=2))),
            ("raw /dev/shm write of the same bytes", ms(timed(lambda: physical.shm_write_seconds(size, folder)))),
        ]
        table(rows)
    finally:
        text = None
        shutil.rmtree(folder, ignore_errors=True)
        gc.collect()


def result_back(size: int) -> None:
    import pyarrow as pa

    from rlm_kernel import codec
    from rlm_magic import transport

    emit(f"## A {data.size_label(size)} DataFrame result, piece by piece")
    emit()
    df = data.make_frame(size)
    folder = physical.scratch_dir()
    try:
        enc = codec.encode_value(df, str(folder))
        file_size = (folder / enc["path"]).stat().st_size
        transport.read_value(enc, folder)
        rows = [
            ("codec.encode_value (child: from_pandas(preserve_index=True) + IPC write)",
             ms(timed(lambda: codec.encode_value(df, str(folder)),
                      cleanup=lambda e: (folder / e["path"]).unlink()))),
            ("  file written vs the frame's own bytes", f"{file_size / 1e9:.2f} GB vs {data.frame_bytes(df) / 1e9:.2f} GB"
                                                        " (the RangeIndex goes out as an int64 column)"),
            ("transport.read_value (parent: memory_map + read_all + to_pandas)",
             ms(timed(lambda: transport.read_value(codec.encode_value(df, str(folder)), folder)[0], repeats=2))),
        ]
        enc = codec.encode_value(df, str(folder))
        path = folder / enc["path"]

        def zero_copy() -> Any:
            with pa.memory_map(str(path)) as source:
                return pa.ipc.open_file(source).read_all().to_pandas(split_blocks=True)

        rows.append(("alternative read: to_pandas(split_blocks=True) over the mapping (no copy)", ms(timed(zero_copy))))
        rows.append(("raw /dev/shm write of the same bytes", ms(timed(lambda: physical.shm_write_seconds(size, folder)))))
        table(rows)
    finally:
        df = None
        shutil.rmtree(folder, ignore_errors=True)
        gc.collect()


def run_log(size: int) -> None:
    from rlm_magic.result import RLMResult

    emit(f"## The run log and a {data.size_label(size)} DataFrame result")
    emit()
    emit("`RunLog` (on by default) writes the finished result when the run ends, on the notebook's thread, before "
         "`run()` returns: `json.dumps({..., 'result': json.loads(result.to_json())})`, so the landed DataFrame fields "
         "are serialised to JSON, parsed back into Python objects and serialised again.")
    emit()
    df = data.make_frame(size)
    result = RLMResult(question="q", model="m", sub_model="m", mode="standard")
    result.fields = {"big": df}
    before = physical_rss()
    t0 = time.perf_counter()
    text = result.to_json()
    elapsed = time.perf_counter() - t0
    import json

    t0 = time.perf_counter()
    again = json.dumps({"event": "RunFinished", "result": json.loads(text)}, ensure_ascii=False)
    round_trip = time.perf_counter() - t0
    peak = physical_hwm()
    del again
    table([(f"RLMResult.to_json() with a {data.size_label(size)} frame field", ms(elapsed)),
           ("then json.loads + json.dumps of that text (as RunLog does)", ms(round_trip)),
           ("JSON written", f"{len(text) / 1e6:,.0f} MB for {data.frame_bytes(df) / 1e6:,.0f} MB of frame"),
           ("notebook memory peak added (VmHWM − VmRSS before)", f"{(peak - before) / 2**20:,.0f} MiB")])
    text = df = result = None
    gc.collect()


def physical_rss() -> int:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status("VmRSS")


def physical_hwm() -> int:
    return _status("VmHWM")


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def batched() -> None:
    import harness as H

    emit("## llm_query_batched: 100 prompts × 200 ms")
    emit()
    emit("Wall time and the notebook process's CPU time for the whole run (two turns). With a listen backlog of 5 "
         "(ScriptedServer's, from socketserver) concurrent connections beyond the fifth are dropped by the kernel "
         "and retried after 1 s, then 3 s.")
    emit()
    rows = []
    for backlog in (H.BACKLOG, None):
        h = H.Harness(backlog=backlog)
        try:
            H.warm_start(h)
            for conc in (16, 100):
                runs = []
                for _ in range(2):
                    c0 = resource.getrusage(resource.RUSAGE_SELF)
                    r = H.batched(h, 100, 0.2, conc)
                    c1 = resource.getrusage(resource.RUSAGE_SELF)
                    runs.append((r["batch_elapsed"], c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime,
                                 r["max_concurrent"]))
                wall = statistics.median(x[0] for x in runs)
                cpu = statistics.median(x[1] for x in runs)
                rows.append((f"backlog {h.backlog}, sub_concurrency={conc}",
                             f"{wall:.2f} s wall; notebook CPU {cpu:.2f} s (≈ {cpu / 100 * 1e3:.1f} ms per call); "
                             f"at most {max(x[2] for x in runs)} requests in flight"))
        finally:
            h.close()
    table(rows, ("server", "median"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1GB", help="value size for the binding and result breakdowns (default 1GB)")
    args = p.parse_args()
    size = data.parse_size(args.size)
    emit(f"# Where the time goes ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs)")
    emit()
    try:
        warm_start(size)
        round_trips()
        bind_frame(size)
        bind_text(size)
        result_back(size)
        run_log(50 * 10**6)
        batched()
    finally:
        out = BENCH / "out"
        out.mkdir(exist_ok=True)
        (out / "DIAGNOSIS.md").write_text("\n".join(OUT) + "\n")
        print(f"wrote {out / 'DIAGNOSIS.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
