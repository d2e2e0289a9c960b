"""Interactions being generated in this process: a runner task, an event log, followers.

Generation runs in a server-owned task, never in a request handler, so that a background
interaction outlives its request and several clients can follow one interaction. Handlers
subscribe with :meth:`LiveInteraction.follow`; the runner appends each event to the in-memory
log and wakes the followers; the :class:`EventJournal` stores the events in batches while it
runs, and the runner writes the last ones with the final state in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from gemserve.protocol.common import iso_utc
from gemserve.protocol.interactions.events import (
    GENERATION_FAILED,
    Event,
    EventSequencer,
    next_event,
)
from gemserve.protocol.interactions.fold import InteractionFold
from gemserve.protocol.interactions.status import TERMINAL_STATUSES
from gemserve.protocol.interactions.views import interaction_view
from gemserve.service.clock import Clock
from gemserve.service.journal import EventJournal
from gemserve.store import InteractionRecord, Store
from gemserve.store.errors import is_store_unavailable

# How long a finished run retries its final write while the store is unreachable; after that
# the row stays ``in_progress`` until the next start fails it ("stopped").
FINAL_WRITE_RETRY_SECONDS = 300.0

log = logging.getLogger("gemserve.interactions")


class LiveInteraction:
    """One interaction being generated: ``events`` (its wire events, the first two opening
    it) are appended to an in-memory log that followers read, folded into the Interaction,
    and stored. ``cancel`` stops the generation behind them."""

    def __init__(
        self,
        record: InteractionRecord,
        header: dict[str, Any],
        events: AsyncIterator[Event],
        cancel: Callable[[], None],
        sequencer: EventSequencer,
        store: Store | None,
        clock: Clock,
        journal: EventJournal | None = None,
        on_done: Callable[[LiveInteraction], None] = lambda _run: None,
    ) -> None:
        self.record = record
        self._header = header
        self._on_done = on_done
        self.id = record.id
        self.tenant = record.tenant
        self.background = record.background
        self._cancel = cancel
        self._store = store
        self._journal = journal if store is not None else None
        self._clock = clock
        self._sequencer = sequencer
        self._events = events
        self.log: list[Event] = []
        self._fold = InteractionFold()
        self._changed = asyncio.Event()
        self.done = asyncio.Event()  # over and stored (or given up on): out of the registry
        # Over: streams end and waiters return. Set with ``done``, or earlier when the final
        # write waits for the store to come back.
        self.ended = asyncio.Event()
        self.persisted = 0  # events already in the store
        self.finishing = False  # the final write has begun
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Produce the opening events and store the row with them, then run in the background."""
        opening = [await anext(self._events), await anext(self._events)]
        self._append(opening)
        if self._store is not None:
            await self._store.create_interaction(self.record, list(opening))
            self.persisted = len(opening)
        self._task = asyncio.create_task(self._run(), name=f"interaction {self.id}")

    def cancel(self) -> None:
        """Stop generation within one decode step; the run then ends as ``cancelled``."""
        self._cancel()

    async def wait(self) -> None:
        await self.ended.wait()

    @property
    def status(self) -> str:
        return self._fold.status

    def result(self) -> dict[str, Any]:
        """The Interaction as its events describe it so far (the non-streaming response)."""
        return self._fold.result()

    def view(self, *, include_input: bool = False) -> dict[str, Any]:
        """The full timeline: the row's input steps, then the output so far."""
        return interaction_view(self.record, self._fold.result(), include_input=include_input)

    async def follow(
        self, after_seq: int = 0, *, idle_seconds: float | None = None
    ) -> AsyncIterator[Event | None]:
        """Every event with a sequence number above ``after_seq``, then live ones until the end.

        With ``idle_seconds``, ``None`` is yielded whenever nothing happened for that long (the
        HTTP layer turns it into a keep-alive comment).
        """
        index = after_seq
        while True:
            while index < len(self.log):
                event, index = next_event(self.log, index)
                yield event
            if self.ended.is_set():
                return
            self._changed.clear()
            if idle_seconds is None:
                await self._changed.wait()
                continue
            # asyncio.timeout, not wait_for: wait_for wraps the wait in a new task, once per
            # streamed token.
            try:
                async with asyncio.timeout(idle_seconds):
                    await self._changed.wait()
            except TimeoutError:
                yield None

    def _append(self, events: list[Event]) -> None:
        for event in events:
            self.log.append(event)
            self._fold.apply(event)
        self._changed.set()

    async def _run(self) -> None:
        journal = self._journal
        try:
            async for event in self._events:
                self._append([event])
                if journal is not None:
                    journal.mark(self)
        except Exception:
            log.exception("interaction %s: the run failed", self.id)
            self._cancel()
            failed = {**self._header, "status": "failed", "updated": iso_utc(self._clock())}
            sequencer = self._sequencer
            self._append([sequencer.error(GENERATION_FAILED), sequencer.completed(failed)])
        finally:
            await self._finish()

    async def _finish(self) -> None:
        status = self._fold.status
        if status not in TERMINAL_STATUSES:
            status = "failed"
            self._fold.interaction["status"] = status
        log.info("interaction %s %s", self.id, status)
        self.finishing = True
        try:
            if self._store is not None:
                if self._journal is not None:
                    await self._journal.settle(self)
                await self._store_final_state()
        except Exception:
            log.exception("interaction %s: could not store the final state", self.id)
        finally:
            self._on_done(self)
            self.done.set()
            self.ended.set()
            self._changed.set()

    async def _store_final_state(self) -> None:
        """The final write; while the store is unreachable (PostgreSQL restarting), retried
        for up to ``FINAL_WRITE_RETRY_SECONDS``, the run staying in the registry (GET answers
        from memory) while its streams end and its waiters return."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINAL_WRITE_RETRY_SECONDS
        delay = 0.5
        while True:
            try:
                await self._write_final_state()
                return
            except Exception as exc:
                if not is_store_unavailable(exc) or loop.time() + delay > deadline:
                    raise
                if not self.ended.is_set():
                    log.warning(
                        "interaction %s: the store is unavailable; its final state is written "
                        "once it returns (retrying for up to %g s)",
                        self.id,
                        FINAL_WRITE_RETRY_SECONDS,
                    )
                    self.ended.set()
                    self._changed.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _write_final_state(self) -> None:
        assert self._store is not None
        result = self._fold.result()
        written = await self._store.finish_interaction(
            self.id,
            first_seq=self.persisted + 1,
            events=self.log[self.persisted :],
            status=result["status"],
            steps=result["steps"],
            usage=result.get("usage"),
            error=result["errors"][0] if result.get("errors") else None,
            updated_at=self._clock(),
        )
        if not written:
            log.warning(
                "interaction %s: not stored as %s: it was already closed (or deleted), e.g. by a "
                "replica that declared this one lost",
                self.id,
                result["status"],
            )
        self.persisted = len(self.log)


class LiveRegistry:
    """The interactions running in this process, by id."""

    def __init__(self) -> None:
        self._runs: dict[str, LiveInteraction] = {}

    def add(self, run: LiveInteraction) -> None:
        self._runs[run.id] = run

    def get(self, tenant: str, interaction_id: str) -> LiveInteraction | None:
        run = self._runs.get(interaction_id)
        return run if run is not None and run.tenant == tenant else None

    def find(self, interaction_id: str) -> LiveInteraction | None:
        """Any tenant's run (for requests between replicas, which carry no tenant)."""
        return self._runs.get(interaction_id)

    def __len__(self) -> int:
        return len(self._runs)

    def discard(self, run: LiveInteraction) -> None:
        if self._runs.get(run.id) is run:
            del self._runs[run.id]

    async def shutdown(self, grace_seconds: float = 10.0, drain_seconds: float = 0.0) -> None:
        """Let the runs finish for up to ``drain_seconds``, cancel the rest and give them a
        moment to store their final state."""
        runs = list(self._runs.values())
        if runs and drain_seconds > 0:
            log.info("draining: %d interactions running, up to %g s", len(runs), drain_seconds)
            await asyncio.wait(
                [asyncio.ensure_future(run.wait()) for run in runs], timeout=drain_seconds
            )
            runs = [run for run in runs if not run.ended.is_set()]
        for run in runs:
            run.cancel()
        if runs:
            await asyncio.wait(
                [asyncio.ensure_future(run.wait()) for run in runs], timeout=grace_seconds
            )
