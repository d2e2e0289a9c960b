"""BatchRunner on replicas sharing one PostgreSQL: each runner claims a batch before it runs
it, renews its lease while it works, and lets go of it when it shuts down; a batch left by a
runner that died is finished by another once the lease runs out. ``execute`` is a test double
(the pipeline under it is tested in tests/api/inprocess/test_batches.py)."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from gemserve.service.classic.batches import ActiveBatch, BatchRunner, Outcome
from gemserve.service.clock import utc_now
from gemserve.store import SqlStore
from gemserve.store.batches import (
    ACTIVE_STATES,
    CANCELLED,
    ITEM_PENDING,
    PENDING,
    SUCCEEDED,
    BatchItemRecord,
    BatchRecord,
)
from gemserve.store.sql_batches import SqlBatchStore
from tests.support.postgres import MakeStore
from tests.support.wait import wait_for, wait_for_async

REQUEST = {"contents": [{"parts": [{"text": "Hi"}]}]}


class Replica:
    """One replica's runner over its own store (connection pool), with a fake ``execute``
    that records what it ran; a request ``hold`` picks waits until its batch is stopped."""

    def __init__(
        self,
        name: str,
        store: SqlStore,
        *,
        lease: float,
        hold: Callable[[BatchItemRecord], bool] = lambda _item: False,
        delay: float = 0.0,
        concurrency: int = 2,
    ) -> None:
        self.name = name
        self.batches = SqlBatchStore(store)
        self.ran: list[tuple[str, int]] = []
        self.held: list[tuple[str, int]] = []
        self.cut_short: list[tuple[str, int]] = []
        self._hold = hold
        self._delay = delay
        self.runner = BatchRunner(
            self.batches,
            self._execute,
            lambda _record: None,
            self._end,
            concurrency=concurrency,
            deadline=timedelta(hours=1),
            replica_id=name,
            lease=timedelta(seconds=lease),
        )

    async def _execute(self, active: ActiveBatch, item: BatchItemRecord) -> Outcome | None:
        key = (item.batch_id, item.seq)
        self.ran.append(key)
        if self._hold(item):
            self.held.append(key)
            await active.stop.wait()
            self.cut_short.append(key)
            return None
        await asyncio.sleep(self._delay)
        return {"by": self.name, "seq": item.seq}, None

    async def _end(self, record: BatchRecord, state: str, error: dict[str, Any] | None) -> bool:
        now = utc_now()
        return await self.batches.set_batch_state(
            record.id,
            state,
            only_from=ACTIVE_STATES,
            now=now,
            end_time=now,
            expires_at=now + timedelta(hours=1),
            error=error,
        )

    async def die(self) -> None:
        """kill -9, as far as the database can tell: every task of the runner stops where it
        is, and nothing is written (no release, no end, no renewal)."""
        runner = self.runner
        tasks = [t for t in (runner._dispatcher, runner._renewer, *runner._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def replicas(postgres_stores: MakeStore) -> AsyncIterator[list[Replica]]:
    """The replicas a test starts; closed at the end (a dead one has nothing left to close)."""
    started: list[Replica] = []
    yield started
    for replica in started:
        await replica.runner.close(grace_seconds=1)


async def start(
    replicas: list[Replica], make: MakeStore, name: str, *, run: bool = True, **options: Any
) -> Replica:
    """A replica on a store of its own, its runner started unless ``run`` is False."""
    replica = Replica(name, await make(), **options)
    replicas.append(replica)
    if run:
        replica.runner.start()
    return replica


async def add_batch(store: SqlBatchStore, count: int, seconds: int = 0) -> BatchRecord:
    now = utc_now() + timedelta(seconds=seconds)
    record = BatchRecord(
        id=secrets.token_hex(8),
        tenant="t1",
        model="models/m",
        display_name=None,
        state=PENDING,
        request_count=count,
        created_at=now,
        updated_at=now,
    )
    items = [BatchItemRecord(record.id, seq, REQUEST) for seq in range(count)]
    await store.create_batch(record, items)
    return record


async def state_of(store: SqlBatchStore, batch_id: str) -> str | None:
    record = await store.get_batch("t1", batch_id)
    return None if record is None else record.state


async def wait_state(store: SqlBatchStore, batch_id: str, state: str, seconds: float) -> None:
    async def reached() -> bool:
        return await state_of(store, batch_id) == state

    await wait_for_async(reached, seconds=seconds, interval=0.05, what=f"{batch_id} {state}")


async def test_two_replicas_run_each_request_exactly_once(
    postgres_stores: MakeStore, replicas: list[Replica]
) -> None:
    store = SqlBatchStore(await postgres_stores())
    made = [await add_batch(store, 5, seconds=i) for i in range(4)]
    a = await start(replicas, postgres_stores, "a", lease=30, delay=0.05, run=False)
    b = await start(replicas, postgres_stores, "b", lease=30, delay=0.05, run=False)
    a.runner.start()
    b.runner.start()
    for batch in made:
        await wait_state(store, batch.id, SUCCEEDED, seconds=30)
    ran = Counter(a.ran + b.ran)
    assert sorted(ran) == sorted((batch.id, seq) for batch in made for seq in range(5))
    assert set(ran.values()) == {1}
    # Both worked, a batch each at a time; each answer is the one of the replica that ran it.
    assert a.ran
    assert b.ran
    for batch in made:
        items = await store.batch_items(batch.id)
        by = "a" if (batch.id, 0) in a.ran else "b"
        assert [i.response for i in items] == [{"by": by, "seq": s} for s in range(5)]
        record = await store.get_batch("t1", batch.id)
        assert record is not None
        assert record.claimed_by == by


async def test_a_batch_left_by_a_dead_replica_is_finished_once_its_lease_runs_out(
    postgres_stores: MakeStore, replicas: list[Replica]
) -> None:
    store = SqlBatchStore(await postgres_stores())
    batch = await add_batch(store, 6)
    # a answers requests 0 and 1, then hangs in 2 and 3 (its two slots) and dies.
    a = await start(replicas, postgres_stores, "a", lease=1, hold=lambda item: item.seq >= 2)
    b = await start(replicas, postgres_stores, "b", lease=1, run=False)
    await wait_for(lambda: len(a.held) == 2, what="a to hang in two requests")
    assert [(i.seq, i.state) for i in await store.batch_items(batch.id, pending_only=True)] == [
        (seq, ITEM_PENDING) for seq in range(2, 6)
    ]
    await a.die()
    b.runner.start()
    # b looks at once, but a's lease still holds (renewed less than a third of a second ago);
    # b looks again a lease later.
    await asyncio.sleep(0.2)
    assert b.ran == []
    await wait_state(store, batch.id, SUCCEEDED, seconds=15)
    # b ran what a had not answered, the two requests a died in included, and nothing else.
    assert sorted(b.ran) == [(batch.id, seq) for seq in range(2, 6)]
    items = await store.batch_items(batch.id)
    assert [i.response for i in items] == [
        {"by": "a", "seq": 0},
        {"by": "a", "seq": 1},
        *({"by": "b", "seq": seq} for seq in range(2, 6)),
    ]
    record = await store.get_batch("t1", batch.id)
    assert record is not None
    assert (record.succeeded, record.failed, record.claimed_by) == (6, 0, "b")


async def test_a_clean_shutdown_hands_the_batch_over_at_once(
    postgres_stores: MakeStore, replicas: list[Replica]
) -> None:
    store = SqlBatchStore(await postgres_stores())
    batch = await add_batch(store, 4)
    a = await start(replicas, postgres_stores, "a", lease=30, hold=lambda _item: True)
    await wait_for(lambda: len(a.held) == 2, what="a to start two requests")
    b = await start(replicas, postgres_stores, "b", lease=30)
    await asyncio.sleep(0.2)
    assert b.ran == []  # a holds it, for 30 s
    await a.runner.close()
    assert sorted(a.cut_short) == [(batch.id, 0), (batch.id, 1)]
    b.runner.wake()  # b's next look (at most its poll interval later)
    await wait_state(store, batch.id, SUCCEEDED, seconds=5)
    assert sorted(b.ran) == [(batch.id, seq) for seq in range(4)]


@pytest.mark.parametrize("how", ["cancel", "delete"])
async def test_a_batch_cancelled_or_deleted_on_another_replica_stops_where_it_runs(
    postgres_stores: MakeStore, replicas: list[Replica], how: str
) -> None:
    store = SqlBatchStore(await postgres_stores())
    batch = await add_batch(store, 6)
    a = await start(replicas, postgres_stores, "a", lease=1, hold=lambda _item: True)
    b = await start(replicas, postgres_stores, "b", lease=1)
    await wait_for(lambda: len(a.held) == 2, what="a to start two requests")
    # What BatchService.cancel or delete does on b: stop it there (b does not run it), then
    # end or delete it in the database.
    await b.runner.stop(batch.id)
    if how == "cancel":
        now = utc_now()
        assert await b.batches.set_batch_state(
            batch.id, CANCELLED, only_from=ACTIVE_STATES, now=now, end_time=now
        )
    else:
        assert await b.batches.delete_batch("t1", batch.id)
    b.runner.forget(batch.id)
    # a stops at its next renewal (a third of the lease), starts nothing more, ends nothing.
    await wait_for(lambda: len(a.cut_short) == 2, seconds=5, what="a to stop the batch")
    await wait_for(lambda: not a.runner._active, seconds=5, what="a to let go of it")
    assert len(a.ran) == 2
    assert b.ran == []
    if how == "cancel":
        assert await state_of(store, batch.id) == CANCELLED
        assert len(await store.batch_items(batch.id, pending_only=True)) == 6
    else:
        assert await state_of(store, batch.id) is None
