"""The BatchStore acceptance suite: SqlBatchStore must pass all of it on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gemserve.store import SqlStore
from gemserve.store.batches import (
    ACTIVE_STATES,
    CANCELLED,
    ITEM_FAILED,
    ITEM_PENDING,
    ITEM_SUCCEEDED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    BatchItemRecord,
    BatchRecord,
)
from gemserve.store.sql_batches import SqlBatchStore

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
REQUEST = {"contents": [{"parts": [{"text": "Hi 🙂"}]}]}


@pytest.fixture
def batches(store: SqlStore) -> SqlBatchStore:
    return SqlBatchStore(store)


def new_batch(tenant: str = "t1", count: int = 3, **overrides: Any) -> BatchRecord:
    values: dict[str, Any] = {
        "id": secrets.token_hex(8),
        "tenant": tenant,
        "model": "models/gemini-2.5-flash",
        "display_name": "nightly",
        "state": PENDING,
        "request_count": count,
        "created_at": NOW,
        "updated_at": NOW,
        "own_hosts": ["127.0.0.1:8080"],
        "input_file": "files/input",
    }
    values.update(overrides)
    return BatchRecord(**values)


async def add_batch(
    batches: SqlBatchStore, tenant: str = "t1", count: int = 3, **overrides: Any
) -> BatchRecord:
    record = new_batch(tenant, count, **overrides)
    items = [
        BatchItemRecord(record.id, seq, REQUEST, {"key": f"k{seq}"} if seq % 2 else None)
        for seq in range(count)
    ]
    await batches.create_batch(record, items)
    return record


async def test_a_batch_and_its_requests_round_trip(batches: SqlBatchStore) -> None:
    record = await add_batch(batches)
    assert await batches.get_batch("t1", record.id) == record
    assert await batches.get_batch("t2", record.id) is None
    items = await batches.batch_items(record.id)
    assert [(i.seq, i.request, i.metadata, i.state) for i in items] == [
        (0, REQUEST, None, ITEM_PENDING),
        (1, REQUEST, {"key": "k1"}, ITEM_PENDING),
        (2, REQUEST, None, ITEM_PENDING),
    ]


async def test_many_requests_go_in_chunks(batches: SqlBatchStore) -> None:
    record = await add_batch(batches, count=2500)
    items = await batches.batch_items(record.id)
    assert [i.seq for i in items] == list(range(2500))


async def test_a_batch_keeps_its_kind(batches: SqlBatchStore) -> None:
    embed = await add_batch(batches, kind="embed")
    generate = await add_batch(batches)
    assert generate.kind == "generate"  # the default, as for rows older than the column
    loaded = [await batches.get_batch("t1", r.id) for r in (embed, generate)]
    assert [r.kind for r in loaded if r is not None] == ["embed", "generate"]
    claimed = await batches.claim_batch("r1", now=NOW, lease_until=NOW + timedelta(seconds=30))
    assert claimed is not None
    assert claimed.kind == {embed.id: "embed", generate.id: "generate"}[claimed.id]


async def test_finishing_requests_counts_them_once(batches: SqlBatchStore) -> None:
    record = await add_batch(batches)
    later = NOW + timedelta(seconds=5)
    response = {"candidates": [{"content": {"parts": [{"text": "Hello"}]}}]}
    error = {"code": 3, "message": "bad"}
    await batches.finish_item(record.id, 0, response=response, error=None, now=later)
    await batches.finish_item(record.id, 2, response=None, error=error, now=later)
    # A request finished already is left alone (a resumed run cannot count it twice).
    await batches.finish_item(record.id, 0, response=None, error=error, now=later)
    loaded = await batches.get_batch("t1", record.id)
    assert loaded is not None
    assert (loaded.succeeded, loaded.failed, loaded.pending, loaded.updated_at) == (1, 1, 1, later)
    items = await batches.batch_items(record.id)
    assert [(i.state, i.response, i.error) for i in items] == [
        (ITEM_SUCCEEDED, response, None),
        (ITEM_PENDING, None, None),
        (ITEM_FAILED, None, error),
    ]
    pending = await batches.batch_items(record.id, pending_only=True)
    assert [i.seq for i in pending] == [1]


async def test_state_moves_only_from_the_states_given(batches: SqlBatchStore) -> None:
    record = await add_batch(batches)
    later = NOW + timedelta(minutes=1)
    assert await batches.set_batch_state(record.id, RUNNING, only_from=(PENDING,), now=later)
    assert not await batches.set_batch_state(record.id, RUNNING, only_from=(PENDING,), now=later)
    assert await batches.set_batch_state(
        record.id,
        CANCELLED,
        only_from=ACTIVE_STATES,
        now=later,
        end_time=later,
        expires_at=later + timedelta(hours=48),
        error={"code": 1, "message": "cancelled"},
        output_file="files/batch-out",
    )
    assert not await batches.set_batch_state(record.id, SUCCEEDED, only_from=(RUNNING,), now=later)
    loaded = await batches.get_batch("t1", record.id)
    assert loaded is not None
    assert (loaded.state, loaded.end_time, loaded.done) == (CANCELLED, later, True)
    assert loaded.error == {"code": 1, "message": "cancelled"}
    assert loaded.output_file == "files/batch-out"


async def test_active_batches_are_counted_per_tenant(batches: SqlBatchStore) -> None:
    await add_batch(batches, "t2", created_at=NOW + timedelta(seconds=1))
    await add_batch(batches, "t1", state=RUNNING)
    await add_batch(batches, "t1", state=SUCCEEDED)
    assert await batches.count_active_batches("t1") == 1
    assert await batches.count_active_batches("t2") == 1


async def test_list_is_newest_first_and_per_tenant(batches: SqlBatchStore) -> None:
    made = [await add_batch(batches, created_at=NOW + timedelta(seconds=i)) for i in range(4)]
    await add_batch(batches, "t2")
    page = await batches.list_batches("t1", 1, 2)
    assert [b.id for b in page] == [made[2].id, made[1].id]


async def test_delete_takes_the_requests_along_and_is_per_tenant(batches: SqlBatchStore) -> None:
    record = await add_batch(batches)
    assert not await batches.delete_batch("t2", record.id)
    assert await batches.delete_batch("t1", record.id)
    assert await batches.get_batch("t1", record.id) is None
    assert await batches.batch_items(record.id) == []
    assert not await batches.delete_batch("t1", record.id)


async def test_the_sweep_deletes_ended_batches_past_their_expiry(batches: SqlBatchStore) -> None:
    old = await add_batch(batches, state=SUCCEEDED, expires_at=NOW)
    kept = await add_batch(batches, state=SUCCEEDED, expires_at=NOW + timedelta(seconds=1))
    running = await add_batch(batches, state=RUNNING)
    assert await batches.delete_expired_batches(NOW, 10) == 1
    assert await batches.get_batch("t1", old.id) is None
    assert await batches.batch_items(old.id) == []
    assert await batches.get_batch("t1", kept.id) is not None
    assert await batches.get_batch("t1", running.id) is not None


# ----- claims (replicas sharing the database) -------------------------------------------------

LEASE = timedelta(seconds=30)


async def claim(
    batches: SqlBatchStore, replica: str, at: datetime = NOW, exclude: tuple[str, ...] = ()
) -> str | None:
    record = await batches.claim_batch(replica, now=at, lease_until=at + LEASE, exclude=exclude)
    return None if record is None else record.id


async def test_a_claimed_batch_waits_for_its_lease_to_run_out(batches: SqlBatchStore) -> None:
    batches.shared = True  # as on PostgreSQL; SQLite too runs the rules when told to
    first = await add_batch(batches, "t1")
    second = await add_batch(batches, "t2", created_at=NOW + timedelta(seconds=1))
    await add_batch(batches, state=SUCCEEDED, created_at=NOW - timedelta(seconds=1))
    assert await claim(batches, "a") == first.id
    loaded = await batches.get_batch("t1", first.id)
    assert loaded is not None
    assert (loaded.claimed_by, loaded.lease_until) == ("a", NOW + LEASE)
    assert await claim(batches, "b") == second.id
    assert await claim(batches, "c") is None
    # A replica's own claim is its own (it resumes after a restart under the same id), unless
    # it says it is working on it already.
    assert await claim(batches, "a", exclude=(first.id,)) is None
    assert await claim(batches, "a") == first.id
    # A lease that ran out (the replica died) frees the batch.
    later = NOW + LEASE
    assert await claim(batches, "c", later) == first.id
    assert await batches.renew_claims("a", [first.id], lease_until=later + LEASE) == set()
    assert await batches.renew_claims("b", [first.id, second.id], lease_until=later + LEASE) == {
        second.id
    }
    assert await claim(batches, "d", later) is None  # b renewed in time, c holds the first
    # Released (a clean shutdown): free at once.
    await batches.release_claims("b", now=later)
    assert await claim(batches, "a", later) == second.id
    # An ended batch is neither renewed nor claimed.
    assert await batches.set_batch_state(second.id, CANCELLED, only_from=ACTIVE_STATES, now=later)
    assert await batches.renew_claims("a", [second.id], lease_until=later + LEASE) == set()
    assert await claim(batches, "d", later + 2 * LEASE) == first.id


async def test_concurrent_claims_never_get_the_same_batch(batches: SqlBatchStore) -> None:
    batches.shared = True
    made = {(await add_batch(batches, created_at=NOW + timedelta(seconds=i))).id for i in range(4)}
    claimed = await asyncio.gather(*(claim(batches, f"r{i}") for i in range(8)))
    assert sorted(c for c in claimed if c is not None) == sorted(made)
    assert claimed.count(None) == 4


async def test_a_database_one_process_owns_gives_up_claims_of_dead_processes(
    batches: SqlBatchStore,
) -> None:
    record = await add_batch(batches)
    assert await claim(batches, "before-the-crash") == record.id
    if batches.shared:  # PostgreSQL: the other replica may be alive
        assert await claim(batches, "after-the-restart") is None
    else:  # SQLite: one process at a time, so the claim was a dead process's
        assert await claim(batches, "after-the-restart") == record.id


async def test_no_request_is_answered_once_the_batch_ended_or_is_gone(
    batches: SqlBatchStore,
) -> None:
    record = await add_batch(batches)
    response: dict[str, Any] = {"candidates": []}
    assert await batches.finish_item(record.id, 0, response=response, error=None, now=NOW)
    assert await batches.set_batch_state(record.id, CANCELLED, only_from=ACTIVE_STATES, now=NOW)
    assert not await batches.finish_item(record.id, 1, response=response, error=None, now=NOW)
    items = await batches.batch_items(record.id)
    assert [i.state for i in items] == [ITEM_SUCCEEDED, ITEM_PENDING, ITEM_PENDING]
    loaded = await batches.get_batch("t1", record.id)
    assert loaded is not None
    assert loaded.succeeded == 1
    assert await batches.delete_batch("t1", record.id)
    assert not await batches.finish_item(record.id, 2, response=response, error=None, now=NOW)
