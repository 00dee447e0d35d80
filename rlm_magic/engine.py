"""The RLM loop: prompt, model call, code extraction, execution, finish detection, budgets.

The engine knows nothing of widgets, IPython or printing.  It reports through
``emit(event)`` and returns an :class:`RLMResult`.  Sub-calls made by code in
the child kernel arrive over a Unix socket served on the engine's loop; the
engine makes them with litellm, counts them against the budget, and answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import prompts, transport
from .cassette import CassetteMiss
from .describe import describe_all, short_type
from .events import (
    BatchFinished,
    BatchStarted,
    CodeFinished,
    CodeStarted,
    Event,
    ModelCalled,
    Notice,
    ReplyDelta,
    ReplyParsed,
    RunFinished,
    RunStarted,
    TurnStarted,
)
from .extract import parse_reply
from .models import ModelClient, ModelOptions, check_fits, context_window
from .result import CodeRun, LLMCall, RLMResult, Turn
from .sandbox import Limits
from .session import OWN_KERNEL, ExecResult, KernelSession
from .workspace import POOL, SESSIONS, Session, Workspace, end_session, make_spec

Emit = Callable[[Event], None]


@dataclass
class RunConfig:
    """Everything one run needs; built by :class:`rlm_magic.RLM` from its settings."""

    model: str
    sub_model: str
    mode: str = "standard"
    max_iterations: int = 20
    max_llm_calls: int = 50
    max_cost: float | None = None
    timeout: float | None = 180.0
    max_output_chars: int = 10_000
    sub_concurrency: int = 64
    sub_context_window: int | None = None
    sub_system_prompt: str | None = None
    kernel: str | None = None
    env_allow: tuple[str, ...] = ()
    max_restarts: int = 3
    preview_chars: int = 400
    sandbox: str = "default"  # "default" | "strict" (bubblewrap)
    limits: Limits = field(default_factory=Limits)
    session: str | None = None  # keep the REPL (and its variables) under this name across runs
    warm_kernels: bool = True  # keep a spare kernel started for the next run
    models: ModelOptions = field(default_factory=ModelOptions)


class Budget:
    """Counts model calls and cost; reservations happen before a call so concurrent sub-calls cannot overshoot."""

    def __init__(self, config: RunConfig) -> None:
        self.max_calls = config.max_llm_calls
        self.max_cost = config.max_cost
        self.calls = 0
        self.cost = 0.0

    def exhausted(self) -> str | None:
        if self.calls >= self.max_calls:
            return "max_llm_calls"
        if self.max_cost is not None and self.cost >= self.max_cost:
            return "max_cost"
        return None

    def reserve(self) -> str | None:
        reason = self.exhausted()
        if reason is None:
            self.calls += 1
        return reason

    def spend(self, call: LLMCall) -> None:
        self.cost += call.cost or 0.0

    @property
    def calls_left(self) -> int:
        return max(0, self.max_calls - self.calls)


class Engine:
    """One run of the RLM loop."""

    def __init__(self, config: RunConfig, emit: Emit) -> None:
        self.config = config
        self.emit = emit
        self.client = ModelClient(config.models)
        self.budget = Budget(config)
        self.result = RLMResult(question="", model=config.model, sub_model=config.sub_model, mode=config.mode,
                                max_iterations=config.max_iterations, max_llm_calls=config.max_llm_calls,
                                max_cost=config.max_cost)
        self.turn: Turn | None = None
        self.run_dir: Path | None = None
        self.workspace: Workspace | None = None
        self.session: Session | None = None
        self.kernel: KernelSession | None = None
        self._run_files: list[Path] = []
        self._bind_files: list[Path] = []
        self.server: asyncio.base_events.Server | None = None
        self.bind_specs: list[dict[str, Any]] = []
        self._sent: dict[str, list[Any]] = {}  # binding buffers for a kernel that shares no files (kept to rebind)
        self.submission: dict[str, Any] | None = None
        self._sem = asyncio.Semaphore(max(1, config.sub_concurrency))
        self._cache: dict[tuple[str, str], asyncio.Future[LLMCall]] = {}
        self._batches = 0
        self._fatal: BaseException | None = None  # raised by the loop once the current block ends
        self._starting: asyncio.Future[None] | None = None  # a cold kernel starting during the first model call

    # ------------------------------------------------------------------
    async def run(self, question: str, bindings: dict[str, Any]) -> RLMResult:
        cfg = self.config
        res = self.result
        res.question = question
        res.bindings = {name: short_type(value) for name, value in bindings.items()}
        started = time.monotonic()
        self.emit(RunStarted(question, cfg.model, cfg.sub_model, cfg.mode, dict(res.bindings),
                             cfg.max_iterations, cfg.max_llm_calls, cfg.max_cost))
        try:
            earlier = await self._start(bindings)
            messages = [
                {"role": "system", "content": prompts.system_prompt(
                    mode=cfg.mode, max_iterations=cfg.max_iterations, max_llm_calls=cfg.max_llm_calls,
                    max_output_chars=cfg.max_output_chars, timeout=cfg.timeout)},
                {"role": "user", "content": prompts.first_user_message(
                    question, describe_all(bindings, preview_chars=cfg.preview_chars), earlier=earlier)},
            ]
            await self._loop(messages)
        except asyncio.CancelledError:
            res.status = "interrupted"
            if self.session is not None and self.kernel is not None:  # the session's REPL lives on: stop its code
                try:
                    await self.kernel.km.interrupt_kernel()
                except Exception:  # noqa: BLE001
                    pass
        except Exception as exc:  # the run failed; report it instead of losing the trajectory
            res.status = "error"
            res.error = f"{type(exc).__name__}: {exc}"
            self.emit(Notice(res.error, level="error"))
        finally:
            await self._stop()
            res.elapsed = time.monotonic() - started
            self.emit(RunFinished(res))
        return res

    async def _start(self, bindings: dict[str, Any]) -> str | None:
        """Get a workspace (warm spare, session, or fresh), bind values, connect the channel.

        Returns what the prompt should say about earlier runs of a session.
        """
        cfg = self.config
        spec = make_spec(cfg.kernel, cfg.env_allow, cfg.sandbox, cfg.limits)
        earlier = None
        if cfg.session:
            self.session = await self._session_workspace(cfg.session, spec)
            self.workspace = self.session.workspace
        else:
            # Our own interpreter is known to share this machine's files, so values can be written before
            # its kernel is up, and a cold start runs alongside the first model call. A foreign spec is
            # started (and probed) first.
            wait = spec.kernel != OWN_KERNEL
            if cfg.warm_kernels:
                self.workspace = (await POOL.acquire(spec, wait=wait))[0]
            else:
                self.workspace = Workspace(spec)
                if wait:
                    await self.workspace.start()
        ws = self.workspace
        ws.runs += 1
        self.run_dir = ws.run_dir
        self.kernel = ws.kernel
        if ws.shared:
            await self._bind_by_files(ws, bindings)
        else:
            await self._bind_by_wire(ws, bindings)
        if self.session is not None and self.session.history:
            variables = {k: v for k, v in (await ws.variables()).items() if k not in bindings}
            listed = "\n".join(f"- {k}: {v}" for k, v in sorted(variables.items())) or "- (none)"
            earlier = (f"{listed}\n\nEarlier questions in this session and their answers:\n"
                       f"{self.session.describe_history()}")
        if ws.started_at is None:
            self._starting = asyncio.ensure_future(self._start_kernel())
        else:
            await self._bootstrap()
        # The binding files stay until the run ends: a replaced kernel loads them again. (Mapped pages are
        # shared with the child, so keeping them costs no extra memory.)
        return earlier

    async def _bind_by_files(self, ws: Workspace, bindings: dict[str, Any]) -> None:
        """Values as files in the run folder, mapped by the child; requests over a Unix socket."""
        for name, value in bindings.items():
            spec = await asyncio.to_thread(transport.write_binding, f"{ws.runs}-{name}", value, ws.run_dir)
            spec["name"] = name
            self.bind_specs.append(spec)
            self._bind_files += [Path(spec["path"]), *(Path(b) for b in spec.get("buffers", []))]
        sock = ws.run_dir / f"ch-{ws.runs}.sock"
        self._run_files.append(sock)
        self.server = await asyncio.start_unix_server(self._serve, path=str(sock))
        self._channel = str(sock)
        ws.hand_over([sock, *self._bind_files])

    async def _bind_by_wire(self, ws: Workspace, bindings: dict[str, Any]) -> None:
        """The kernel cannot see our files: values as binary frames, requests over the Jupyter protocol."""
        self.emit(Notice("the REPL kernel does not share this machine's files; values travel as binary "
                         "frames over the Jupyter protocol", level="info"))
        for name, value in bindings.items():
            spec, buffers = await asyncio.to_thread(transport.send_binding, f"{ws.runs}-{name}", value)
            spec["name"] = name
            self.bind_specs.append(spec)
            self._sent[spec["wire"]] = buffers
        self._channel = "wire"
        ws.kernel.wire.on_request = self._handle

    async def _start_kernel(self) -> None:
        assert self.workspace is not None
        await self.workspace.start()
        await self._bootstrap()

    async def _kernel_ready(self) -> None:
        """Wait for a kernel started alongside the first model call; its failure surfaces here."""
        if self._starting is not None:
            starting, self._starting = self._starting, None
            await starting

    async def _session_workspace(self, name: str, spec: Any) -> Session:
        session = SESSIONS.get(name)
        if session is not None and not (session.workspace.spec.matches(spec) and await session.workspace.alive()):
            self.emit(Notice(f"session {name!r}: its REPL was lost or its settings changed; starting it anew",
                             level="warning"))
            await end_session(name)
            session = None
        if session is None:
            workspace = (await POOL.acquire(spec))[0] if self.config.warm_kernels else await Workspace(spec).start()
            session = SESSIONS[name] = Session(name, workspace)
        return session

    async def _bootstrap(self) -> None:
        assert self.workspace is not None
        bound = sum(p.stat().st_size for p in self._bind_files if p.exists())
        bound += sum(memoryview(b).nbytes for buffers in self._sent.values() for b in buffers)
        self._bound_bytes = max(getattr(self, "_bound_bytes", 0), bound)
        await self.workspace.install(channel=self._channel, mode=self.config.mode, bindings=self.bind_specs,
                                     bound_bytes=self._bound_bytes, sent=self._sent)

    async def _stop(self) -> None:
        if self._starting is not None:  # the run ended before it needed the kernel
            self._starting.cancel()
            try:
                await self._starting
            except BaseException:  # noqa: BLE001 - cancelled or failed; the workspace is closed below
                pass
        if self.server is not None:
            self.server.close()
        for fut in self._cache.values():
            fut.cancel()
        for path in self._run_files + self._bind_files:
            path.unlink(missing_ok=True)
        self._sent.clear()
        if self.kernel is not None:
            self.kernel.wire.on_request = None
            self.kernel.wire.forget()
        ws = self.workspace
        if ws is not None and self.session is None:
            await ws.close()
        if self.session is not None:
            self.session.history.append((self.result.question, _short_answer(self.result)))
            self.session.bound.update(self.result.bindings)
        if self.config.warm_kernels and ws is not None:
            POOL.refill(ws.spec)  # after the run, so the spare does not compete with it for CPU

    # ------------------------------------------------------------------
    async def _loop(self, messages: list[dict[str, Any]]) -> None:
        cfg = self.config
        res = self.result
        for index in range(1, cfg.max_iterations + 1):
            reason = self.budget.exhausted()
            if reason:
                await self._finish_on_budget(messages, reason)
                return
            turn = Turn(index=index)
            self.turn = turn
            res.turns.append(turn)
            self.emit(TurnStarted(index))
            self.budget.reserve()
            call = await self.client.complete(cfg.model, messages, role="root", prompt=messages[-1]["content"],
                                              on_text=lambda text, i=index: self.emit(ReplyDelta(i, text)))
            self._record(call)
            turn.root_call = call
            if call.error:
                res.status = "error"
                res.error = f"root model call failed: {call.error}"
                self.emit(Notice(res.error, level="error", turn=index))
                return
            parsed = parse_reply(call.response)
            turn.reply = call.response
            turn.reasoning = call.reasoning
            self.emit(ReplyParsed(index, parsed.text, call.reasoning, tuple(b.code for b in parsed.blocks)))
            messages.append({"role": "assistant", "content": parsed.history_text() or "(empty reply)"})

            notes: list[str] = []
            outputs: list[tuple[str, str]] = []
            for bi, block in enumerate(parsed.blocks):
                run, lost = await self._execute(turn, bi, block.code)
                if self._fatal is not None:
                    raise self._fatal
                outputs.append(("timed out" if run.timed_out else "", run.output))
                if lost:
                    notes.append(prompts.kernel_lost(lost))
                if run.submitted or lost or self.submission is not None:
                    break
            if self.submission is None and parsed.final is not None:
                final = parsed.final
                if final.kind == "FINAL_VAR":
                    await self._final_var(final.value)
                    if self.submission is None:
                        notes.append(prompts.final_var_missing(final.value))
                    else:
                        self.submission["via"] = "FINAL_VAR"
                elif parsed.blocks:
                    notes.append(prompts.FINAL_BEFORE_OUTPUT)
                else:
                    self.submission = {"answer": final.value, "fields": {}, "via": "FINAL"}
            if self.submission is not None:
                turn.final = self.submission.get("via", "SUBMIT")
                res.answer = self.submission.get("answer")
                res.fields = self.submission.get("fields", {})
                res.notes.extend(self.submission.get("notes", []))
                res.status = "finished"
                return
            if not parsed.blocks and parsed.final is None:
                notes.append(prompts.EMPTY_REPLY if not parsed.text.strip() else prompts.NO_CODE)
            turn.note = "\n".join(notes) or None
            messages.append({"role": "user", "content": prompts.output_message(
                outputs, turns_left=cfg.max_iterations - index, calls_left=self.budget.calls_left, notes=notes)})
        await self._finish_on_budget(messages, "max_iterations")

    async def _finish_on_budget(self, messages: list[dict[str, Any]], reason: str) -> None:
        """Out of turns, calls or money: one last call asks for the best answer from what was seen."""
        res = self.result
        res.status = reason
        label = {"max_iterations": f"all {self.config.max_iterations} turns used",
                 "max_llm_calls": f"all {self.config.max_llm_calls} model calls used",
                 "max_cost": f"the cost limit of ${self.config.max_cost} reached"}[reason]
        self.emit(Notice(f"budget exhausted: {label}; asking for a final answer", level="warning"))
        final_messages = messages + [{"role": "user", "content": prompts.budget_exhausted(label)}]
        call = await self.client.complete(self.config.model, final_messages, role="final",
                                          prompt=final_messages[-1]["content"])
        self._record(call)
        if call.error or not call.response:
            return
        parsed = parse_reply(call.response)
        res.answer = parsed.final.value if parsed.final and parsed.final.kind == "FINAL" else call.response.strip()

    # ------------------------------------------------------------------
    async def _execute(self, turn: Turn, block: int, code: str) -> tuple[CodeRun, str | None]:
        """Run one block and record it in ``turn``; returns the record and, when the kernel was replaced, why."""
        assert self.kernel is not None
        await self._kernel_ready()
        self.emit(CodeStarted(turn.index, block, code))
        before = self.submission
        ex: ExecResult = await self.kernel.execute(code, timeout=self.config.timeout,
                                                   max_output_chars=self.config.max_output_chars)
        run = CodeRun(code=code, output=ex.output, output_chars=ex.total_chars, error=ex.error,
                      duration=ex.duration, timed_out=ex.timed_out,
                      submitted=self.submission is not None and self.submission is not before)
        lost = None
        if ex.died:
            lost = "the code did not stop when interrupted" if ex.timed_out else "the kernel process died"
            run.error = run.error or "KernelDied: the REPL process ended"
        elif ex.timed_out:
            run.output = (run.output.rstrip() + "\n" if run.output.strip() else "") + (
                f"[stopped: the block ran longer than {self.config.timeout:g} s and was interrupted; "
                "variables are kept]")
        turn.code.append(run)  # recorded before a restart that may end the run
        self.emit(CodeFinished(turn.index, block, run))
        if lost:
            await self._after_restart(lost)
        return run, lost

    async def _after_restart(self, why: str) -> None:
        assert self.kernel is not None
        if self.kernel.restarts > self.config.max_restarts:
            raise RuntimeError(f"the REPL kernel was lost {self.kernel.restarts} times; giving up")
        self.emit(Notice(f"REPL restarted ({why}); bound values reloaded, other variables lost", level="warning"))
        await self._bootstrap()

    async def _final_var(self, name: str) -> None:
        assert self.kernel is not None
        await self._kernel_ready()
        await self.kernel.execute(f"__rlm__.final_var({name!r})", timeout=30, max_output_chars=2_000)

    # ------------------------------------------------------------------
    def _record(self, call: LLMCall) -> None:
        self.result.calls.append(call)
        self.budget.spend(call)
        self.emit(ModelCalled(self.turn.index if self.turn else 0, call))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request from the child per connection (the Unix-socket channel)."""
        try:
            raw = await reader.read()
            try:
                req = json.loads(raw)
            except ValueError:
                req = None
            reply = await self._handle(req)
            writer.write(transport.dumps(reply))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the child gave up (interrupted); nothing to answer
        finally:
            writer.close()

    async def _handle(self, req: Any) -> dict[str, Any]:
        """Answer one request from the child: a query batch or a submission."""
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            return {"ok": False, "error": "malformed request"}
        op = req["op"]
        try:
            if op == "query":
                return await self._queries(req)
            if op == "submit":
                return await self._submit(req)
        except CassetteMiss as exc:  # replay cannot go on; the loop ends the run after this block
            self._fatal = exc
            return {"ok": False, "error": "replay stopped: cassette miss"}
        return {"ok": False, "error": f"unknown op {op!r}"}

    async def _submit(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.workspace is not None and self.kernel is not None
        folder = self.run_dir if self.workspace.shared else None
        notes: list[str] = []
        try:
            buffers = await self.kernel.wire.received(str(req["data"])) if req.get("data") else None
            answer = None
            if "answer" in req:
                answer, note = transport.read_value(req["answer"], folder, buffers)
                if note:
                    notes.append(f"answer: {note}")
            fields = {}
            for name, enc in (req.get("fields") or {}).items():
                if not str(name).isidentifier():
                    return {"ok": False, "error": f"field name {name!r} is not a valid Python name"}
                fields[name], note = transport.read_value(enc, folder, buffers)
                if note:
                    notes.append(f"{name}: {note}")
        except Exception as exc:  # noqa: BLE001 - told to the model, which can retry
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if "answer" not in req:
            answer = fields.get("answer", dict(fields))
        self.submission = {"answer": answer, "fields": fields, "notes": notes, "via": "SUBMIT"}
        return {"ok": True}

    async def _queries(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.config.mode == "no_subcalls":
            return {"ok": False, "error": "sub-calls are disabled in no_subcalls mode"}
        prompts_ = req.get("prompts")
        if not isinstance(prompts_, list) or not all(isinstance(p, str) for p in prompts_):
            return {"ok": False, "error": "prompts must be a list of strings"}
        model = req.get("model") or self.config.sub_model
        turn = self.turn.index if self.turn else 0
        batch = None
        if req.get("batched"):
            self._batches += 1
            batch = self._batches
            self.emit(BatchStarted(turn, batch, len(prompts_)))
        started = time.monotonic()
        results = await asyncio.gather(*(self._one_query(model, p, batch) for p in prompts_))
        if batch is not None:
            errors = sum(1 for r in results if r.get("error"))
            self.emit(BatchFinished(turn, batch, len(prompts_), errors, time.monotonic() - started))
        return {"ok": True, "results": results}

    async def _one_query(self, model: str, prompt: str, batch: int | None) -> dict[str, Any]:
        window = self.config.sub_context_window if model == self.config.sub_model and self.config.sub_context_window \
            else context_window(model)
        too_long = check_fits(model, prompt, window)
        if too_long:
            return {"error": too_long}
        key = (model, prompt)
        shared = self._cache.get(key)
        if shared is not None:  # identical prompt in this run: answer once
            call = await asyncio.shield(shared)
            return _query_reply(call)
        reason = self.budget.reserve()
        if reason:
            return {"error": f"{'model-call' if reason == 'max_llm_calls' else 'cost'} budget exhausted "
                             f"({self.budget.calls} of {self.budget.max_calls} calls used); no more sub-calls"}
        fut: asyncio.Future[LLMCall] = asyncio.get_running_loop().create_future()
        self._cache[key] = fut
        messages = [{"role": "user", "content": prompt}]
        if self.config.sub_system_prompt:
            messages.insert(0, {"role": "system", "content": self.config.sub_system_prompt})
        try:
            async with self._sem:
                call = await self.client.complete(model, messages, role="sub", prompt=prompt)
        except BaseException:
            self._cache.pop(key, None)
            fut.cancel()
            raise
        call.batch = batch
        if self.turn is not None:
            self.turn.sub_calls.append(call)
        self._record(call)
        if call.error:
            self._cache.pop(key, None)  # let a retry of a failed prompt call again
        fut.set_result(call)
        return _query_reply(call)


def _short_answer(result: RLMResult) -> str:
    answer = result.answer
    text = answer if isinstance(answer, str) else repr(answer)
    return f"{text[:300]} [{result.status}]"


def _query_reply(call: LLMCall) -> dict[str, Any]:
    if call.error:
        return {"error": call.error}
    if call.response is None:
        return {"error": "the sub-model returned no text (only hidden reasoning or an empty reply)"}
    return {"text": call.response, "error": None}
