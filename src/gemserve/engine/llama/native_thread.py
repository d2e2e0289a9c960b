"""The one OS thread that runs every llama.cpp computation of the process.

llama.cpp's CPU backend (built with OpenMP, as llama-cpp-python builds it) keeps one OpenMP
thread pool per thread that calls it, and ggml ends every operation of a graph with an OpenMP
barrier. Once two threads have decoded (two models, each with its own engine thread, or a
projector warmed up on a loader thread), libgomp manages more threads than there are cores
and stops spinning at barriers: every barrier becomes a futex sleep and wake. Measured on
2 cores with two models: the first model decoded at 172 tok/s until the second had answered
one request, then at 72-128 tok/s, for good. One thread means one pool, so every scheduler
(one per model) is stepped here in turn, and model loads run here too.

Models take turns by decode step. On CPU they would share the same cores anyway.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from gemserve.engine.llama.cores import ThreadGovernor, name_this_thread

log = logging.getLogger("gemserve.engine")

T = TypeVar("T")


class Steppable(Protocol):
    """A scheduler as the native thread drives it (its methods are called under ``cond``,
    except ``step``)."""

    def wants_step(self) -> bool: ...

    def step(self) -> bool:
        """One iteration; False once the scheduler has stopped for good."""
        ...


class NativeThread:
    """Runs attached schedulers' steps and submitted calls, on one daemon thread."""

    def __init__(
        self, name: str = "gemserve-native", governor: ThreadGovernor | None = None
    ) -> None:
        # Shared with the schedulers: a request submitted to any of them wakes this thread.
        self.cond = threading.Condition()
        self._name = name
        self._schedulers: list[Steppable] = []
        self._calls: deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = deque()
        self._thread: threading.Thread | None = None
        self._closing = False
        # Decides each step's thread count from the other work on the cores (cores.py).
        self.governor = governor

    def decode_threads(self, configured: int) -> int:
        """Threads for the next decode step: the governor's count, never above ``configured``."""
        if self.governor is None:
            return configured
        return min(configured, self.governor.threads())

    def attach(self, scheduler: Steppable) -> None:
        with self.cond:
            self._schedulers.append(scheduler)
            self._start_locked()
            self.cond.notify()

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the native thread, between scheduler steps."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self.cond:
            if self._closing:
                raise RuntimeError("the native thread is closed")
            self._calls.append((fn, future))
            self._start_locked()
            self.cond.notify()
        return future

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.submit(fn))

    def close(self) -> None:
        """End the thread once the pending calls have run and no scheduler has work left
        (schedulers should be stopped first)."""
        with self.cond:
            self._closing = True
            if self._schedulers:
                log.warning(
                    "native thread closed with %d schedulers attached", len(self._schedulers)
                )
            self.cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # OpenMP's workers, created by this thread, inherit the name: the governor finds them.
        name_this_thread()
        while True:
            with self.cond:
                while not (
                    self._calls or self._closing or any(s.wants_step() for s in self._schedulers)
                ):
                    if self.governor is not None:
                        self.governor.idle()
                    self.cond.wait()
                calls = list(self._calls)
                self._calls.clear()
                ready = [s for s in self._schedulers if s.wants_step()]
                if self._closing and not calls and not ready:
                    return
            for fn, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # handed to the caller, who raises it
                        future.set_exception(exc)
            for scheduler in ready:
                if not scheduler.step():
                    with self.cond:
                        self._schedulers.remove(scheduler)
