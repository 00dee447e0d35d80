"""Run engine coroutines from synchronous code, delivering events on the caller's thread.

Inside a notebook the kernel's own event loop is already running, so
``asyncio.run`` is unavailable; and ipykernel 7 drops widget updates made from
other threads.  So the engine runs on one long-lived background loop, and the
calling thread (the cell's) waits on a queue, handing each event to the
subscribers itself.  A KeyboardInterrupt on the calling thread (the kernel's
interrupt) cancels the engine task, lets it clean up, and is re-raised.
"""

from __future__ import annotations

import asyncio
import atexit
import queue
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, TypeVar

from .events import Event

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


async def _cancel_pending() -> None:
    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


@atexit.register
def _stop_loop() -> None:
    """Let pending tasks (litellm's logging worker among them) end quietly before the interpreter does."""
    loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    try:
        asyncio.run_coroutine_threadsafe(_cancel_pending(), loop).result(2)
    except Exception:  # noqa: BLE001 - exiting anyway
        pass
    loop.call_soon_threadsafe(loop.stop)


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared engine loop, started on first use in a daemon thread."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="rlm-engine-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def run_with_events(
    make: Callable[[Callable[[Event], None]], Awaitable[T]],
    dispatch: Callable[[Event], None],
    *,
    tick: Callable[[], None] | None = None,
    tick_every: float = 0.25,
    cancel_grace: float = 30.0,
) -> T:
    """Run ``make(emit)`` on the engine loop; call ``dispatch`` for each event on this thread.

    ``tick`` is called on this thread about every ``tick_every`` seconds, so a
    view can refresh clocks and flush throttled updates while no event comes.
    """
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    finished = threading.Event()  # set when the coroutine has really ended, cleanup included

    async def guarded() -> T:
        try:
            return await make(events.put)
        finally:
            finished.set()

    future: Future[T] = asyncio.run_coroutine_threadsafe(guarded(), background_loop())

    last_tick = time.monotonic()

    def pump(deadline: float | None = None) -> None:
        nonlocal last_tick
        while True:
            try:
                event = events.get(timeout=0.05)
            except queue.Empty:
                if finished.is_set() and events.empty():
                    return
                if deadline is not None and time.monotonic() > deadline:
                    return
            else:
                _guarded(dispatch, event)
            if tick is not None and time.monotonic() - last_tick >= tick_every:
                last_tick = time.monotonic()
                _guarded(tick)

    try:
        pump()
    except KeyboardInterrupt:
        future.cancel()
        pump(deadline=time.monotonic() + cancel_grace)
        raise
    return future.result()


_warned: set[str] = set()


def _guarded(fn: Callable[..., None], *args: Any) -> None:
    """A broken subscriber must not end a run that costs money; say so once."""
    try:
        fn(*args)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001
        key = f"{type(exc).__name__}:{exc}"
        if key not in _warned:
            _warned.add(key)
            print(f"rlm: an event subscriber failed ({type(exc).__name__}: {exc}); the run goes on.", file=sys.stderr)


def run_sync(awaitable: Awaitable[Any], timeout: float | None = None) -> Any:
    """Await anything (coroutine, task, future of the engine loop) from another thread (no events)."""

    async def wait() -> Any:
        return await awaitable

    return asyncio.run_coroutine_threadsafe(wait(), background_loop()).result(timeout)
