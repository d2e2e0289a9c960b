"""Writes the events of running interactions to the store while they generate.

One writer for all of them: every ``interval`` it appends whatever events the running
interactions have produced since the last write, in a single transaction. Eight streams cost
one write per interval rather than eight, which on a small machine is CPU the decode threads
get back (each write is SQLAlchemy work on the event loop). The task runs only while some
interaction has unwritten events.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from gemserve.store import EventBatch, Store

log = logging.getLogger("gemserve.interactions")

# While generating, events reach the store at most this often; the rest go with the final state.
FLUSH_SECONDS = 0.2


class Journaled(Protocol):
    """What the journal needs of a running interaction."""

    id: str
    log: list[dict[str, Any]]
    persisted: int  # events of ``log`` already in the store
    finishing: bool  # its final write has begun: the journal leaves it alone


class EventJournal:
    def __init__(self, store: Store, interval: float = FLUSH_SECONDS) -> None:
        self._store = store
        self._interval = interval
        self._dirty: dict[str, Journaled] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one write at a time
        self._writing: set[str] = set()  # runs whose events the current write holds
        self._written = asyncio.Event()

    def mark(self, run: Journaled) -> None:
        """``run`` has events the store does not have yet."""
        self._dirty[run.id] = run
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="event journal")

    async def _loop(self) -> None:
        try:
            while self._dirty:
                await asyncio.sleep(self._interval)
                await self.flush()
        finally:
            self._task = None

    async def settle(self, run: Journaled) -> None:
        """Wait until no write in progress holds events of ``run`` (set ``run.finishing``
        first: then no later write takes any), so its final write can number what is left."""
        while run.id in self._writing:
            await self._written.wait()

    async def flush(self) -> None:
        """Write every marked run's unwritten events (not those of runs that are finishing)."""
        async with self._lock:
            runs = [
                run
                for run in self._dirty.values()
                if not run.finishing and run.persisted < len(run.log)
            ]
            self._dirty.clear()
            batches = [
                EventBatch(run.id, run.persisted + 1, run.log[run.persisted :]) for run in runs
            ]
            if not batches:
                return
            self._writing = {run.id for run in runs}
            self._written.clear()
            try:
                try:
                    await self._store.append_events(batches)
                    for run, batch in zip(runs, batches, strict=True):
                        run.persisted += len(batch.events)
                except Exception:
                    # One bad run (its row deleted by another replica, say) must not hold
                    # back the others: write them one by one.
                    await self._write_one_by_one(runs, batches)
            finally:
                self._writing = set()
                self._written.set()

    async def _write_one_by_one(self, runs: list[Journaled], batches: list[EventBatch]) -> None:
        for run, batch in zip(runs, batches, strict=True):
            try:
                await self._store.append_events([batch])
            except Exception:
                # The events stay in memory; the run's final write stores them with its state.
                log.exception("interaction %s: could not store its latest events", run.id)
            else:
                run.persisted += len(batch.events)

    async def close(self) -> None:
        """Stop the writer (at shutdown, after the runs have written their final state)."""
        task, self._task = self._task, None
        self._dirty.clear()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
