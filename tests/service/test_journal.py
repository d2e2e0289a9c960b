"""The event journal: one store write for all running interactions, none lost or doubled."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemserve.config import ModelRegistry
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.service.journal import EventJournal
from gemserve.store import EventBatch, SqlStore
from tests.support.scripted import ScriptedEngine
from tests.support.service import build_service
from tests.support.wait import wait_for, wait_for_async


@dataclass(eq=False)
class Run:
    id: str
    log: list[dict[str, Any]] = field(default_factory=list)
    persisted: int = 0
    finishing: bool = False

    def add(self, n: int) -> None:
        start = len(self.log)
        self.log.extend({"event_id": f"{self.id}_{start + i + 1}"} for i in range(n))


class RecordingStore:
    """Only ``append_events``: what the journal calls. ``gate`` holds a write open."""

    def __init__(self, *, poisoned: str | None = None) -> None:
        self.calls: list[list[EventBatch]] = []
        self.poisoned = poisoned
        self.gate: asyncio.Event | None = None

    async def append_events(self, batches: Sequence[EventBatch]) -> None:
        self.calls.append(list(batches))
        if self.gate is not None:
            await self.gate.wait()
        if any(b.interaction_id == self.poisoned for b in batches):
            raise RuntimeError("foreign key violation")


async def test_one_write_carries_every_running_interaction() -> None:
    store = RecordingStore()
    journal = EventJournal(store, interval=0.01)  # type: ignore[arg-type]
    a, b = Run("a", persisted=2), Run("b", persisted=2)
    a.add(5)
    b.add(3)
    journal.mark(a)
    journal.mark(b)
    await journal.flush()
    assert len(store.calls) == 1
    assert [(x.interaction_id, x.first_seq, len(x.events)) for x in store.calls[0]] == [
        ("a", 3, 3),
        ("b", 3, 1),
    ]
    assert (a.persisted, b.persisted) == (5, 3)
    await journal.flush()  # nothing new: no write
    assert len(store.calls) == 1
    await journal.close()


async def test_the_writer_runs_only_while_there_is_something_to_write() -> None:
    store = RecordingStore()
    journal = EventJournal(store, interval=0.01)  # type: ignore[arg-type]
    run = Run("a")
    run.add(2)
    journal.mark(run)
    await wait_for(
        lambda: run.persisted == 2 and journal._task is None,
        seconds=1,
        what="the writer to write and stop",
    )
    run.add(1)
    journal.mark(run)  # starts again
    assert journal._task is not None
    await wait_for(lambda: run.persisted == 3, seconds=1, what="the restarted writer to write")
    await journal.close()


async def test_a_finishing_run_is_left_to_its_final_write() -> None:
    store = RecordingStore()
    journal = EventJournal(store)  # type: ignore[arg-type]
    run = Run("a")
    run.add(4)
    run.finishing = True
    journal.mark(run)
    await journal.flush()
    assert store.calls == []
    assert run.persisted == 0
    await journal.close()


async def test_one_bad_interaction_does_not_hold_back_the_others() -> None:
    store = RecordingStore(poisoned="bad")
    journal = EventJournal(store)  # type: ignore[arg-type]
    good, bad = Run("good"), Run("bad")
    good.add(2)
    bad.add(2)
    journal.mark(good)
    journal.mark(bad)
    await journal.flush()
    assert good.persisted == 2
    assert bad.persisted == 0  # kept in memory for the final write
    await journal.close()


async def test_settle_waits_for_the_write_that_holds_the_runs_events() -> None:
    store = RecordingStore()
    store.gate = asyncio.Event()
    journal = EventJournal(store)  # type: ignore[arg-type]
    run, other = Run("a"), Run("b")
    run.add(3)
    journal.mark(run)
    writing = asyncio.create_task(journal.flush())
    await wait_for(lambda: store.calls, seconds=1, what="the write to begin")  # and be held open
    await asyncio.wait_for(journal.settle(other), 1)  # not in this write: no wait
    run.finishing = True
    settled = asyncio.create_task(journal.settle(run))
    # Nothing to wait for: settle must still be waiting after it has had every chance to run.
    for _ in range(10):
        await asyncio.sleep(0)
    assert not settled.done()
    store.gate.set()
    await asyncio.wait_for(settled, 1)
    assert run.persisted == 3  # the final write starts after these
    await writing
    await journal.close()


async def test_events_reach_the_store_while_generating_and_once_each(
    store: SqlStore, tmp_path: Path
) -> None:
    pieces = [f"w{i} " for i in range(30)]
    engine = ScriptedEngine(pieces, delay=0.02)
    registry = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID)
    service = build_service(store, tmp_path / "files", registry, {DEFAULT_MODEL_ID: engine})
    runs = [
        (await service.create({"model": "gemini-2.5-flash", "input": f"Hi {i}"}, "t"))[1]
        for i in range(3)
    ]
    # While they generate (each takes at least 0.6 s; the journal writes every 0.2 s), each
    # one's store holds more than its opening events and fewer than all: the journal's writes.
    # (Its final write stores everything at once, so a count in between is never that.)
    seen: set[str] = set()

    async def each_stored_while_generating() -> bool:
        for run in runs:
            if run.id not in seen and 3 < len(await store.get_events(run.id, 0)) < len(pieces):
                seen.add(run.id)
        return len(seen) == len(runs)

    await wait_for_async(each_stored_while_generating, seconds=10, what="the journal's writes")
    for run in runs:
        await run.wait()
        stored = await store.get_events(run.id, 0)
        assert [e["event_id"] for e in stored] == [e["event_id"] for e in run.log]
        assert stored[-1]["event_type"] == "interaction.completed"
    await service.shutdown()
