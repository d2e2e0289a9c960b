"""ReplicaStore acceptance: leases, orphaned interactions, cancel requests, shared settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gemserve.store import InteractionRecord, SqlStore
from gemserve.store.replicas import ReplicaRecord, SettingMismatch
from gemserve.store.sql_replicas import SqlReplicaStore

NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=10)


def replica(replica_id: str, lease_until: datetime = NOW + LEASE) -> ReplicaRecord:
    return ReplicaRecord(id=replica_id, host="host", pid=1, started_at=NOW, lease_until=lease_until)


def interaction(iid: str, owner: str | None, status: str = "in_progress") -> InteractionRecord:
    return InteractionRecord(
        id=iid,
        tenant="t1",
        model="m",
        status=status,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(days=1),
        owner=owner,
    )


async def test_shared_is_true_only_off_sqlite(store: SqlStore) -> None:
    assert SqlReplicaStore(store).shared == (not store.url.startswith("sqlite"))


async def test_an_owner_without_a_live_lease_leaves_its_interactions_orphaned(
    store: SqlStore,
) -> None:
    replicas = SqlReplicaStore(store)
    await replicas.register(replica("r_alive"))
    await replicas.register(replica("r_dead", lease_until=NOW - timedelta(seconds=1)))
    for iid, owner, status in (
        ("v1_a", "r_alive", "in_progress"),
        ("v1_b", "r_dead", "in_progress"),
        ("v1_c", None, "in_progress"),
        ("v1_d", "r_gone", "in_progress"),
        ("v1_e", "r_dead", "completed"),
    ):
        await store.create_interaction(interaction(iid, owner, status), [])
    orphans = await replicas.orphaned_interactions(NOW)
    assert sorted(r.id for r in orphans) == ["v1_b", "v1_c", "v1_d"]
    assert [r.id for r in await replicas.live_replicas(NOW)] == ["r_alive"]
    # A lost replica's row stays while it still owns a running interaction.
    assert await replicas.forget_lost(NOW) == 0
    closed = await store.finish_interaction(
        "v1_b", first_seq=1, events=[], status="failed", steps=[], usage=None, error=None,
        updated_at=NOW,
    )  # fmt: skip
    assert closed
    assert await replicas.forget_lost(NOW) == 1
    assert not await replicas.renew("r_dead", NOW + LEASE)  # declared lost
    assert await replicas.renew("r_alive", NOW + 2 * LEASE)


async def test_finishing_is_once(store: SqlStore) -> None:
    await store.create_interaction(interaction("v1_x", "r1"), [])
    args = dict(steps=[], usage=None, error=None, updated_at=NOW)
    assert await store.finish_interaction(
        "v1_x", first_seq=1, events=[{"event_type": "a"}], status="failed", **args
    )
    assert not await store.finish_interaction(
        "v1_x", first_seq=2, events=[{"event_type": "b"}], status="completed", **args
    )
    record = await store.get_interaction("t1", "v1_x", NOW)
    assert record is not None
    assert record.status == "failed"
    assert record.owner is None
    assert await store.get_events("v1_x", 0) == [{"event_type": "a"}]


async def test_cancel_requests_reach_the_owner_of_a_running_interaction(
    store: SqlStore,
) -> None:
    replicas = SqlReplicaStore(store)
    await store.create_interaction(interaction("v1_run", "r1"), [])
    await store.create_interaction(interaction("v1_done", "r1", "completed"), [])
    await store.create_interaction(interaction("v1_other", "r2"), [])
    assert await replicas.request_cancel("v1_run")
    assert not await replicas.request_cancel("v1_done")
    assert not await replicas.request_cancel("v1_missing")
    assert await replicas.cancel_requests("r1") == ["v1_run"]
    assert await replicas.cancel_requests("r2") == []


async def test_release_and_expire_all_but(store: SqlStore) -> None:
    replicas = SqlReplicaStore(store)
    for name in ("r1", "r2", "r3"):
        await replicas.register(replica(name))
    await replicas.release("r1")
    assert [r.id for r in await replicas.live_replicas(NOW)] == ["r2", "r3"]
    await replicas.expire_all_but("r3")
    assert [r.id for r in await replicas.live_replicas(NOW)] == ["r3"]


async def test_the_first_value_of_a_shared_setting_wins(store: SqlStore) -> None:
    replicas = SqlReplicaStore(store)
    await replicas.agree("thought_signing_key", "sha256:aaaa", NOW)
    await replicas.agree("thought_signing_key", "sha256:aaaa", NOW)
    with pytest.raises(SettingMismatch) as caught:
        await replicas.agree("thought_signing_key", "sha256:bbbb", NOW)
    assert (caught.value.recorded, caught.value.mine) == ("sha256:aaaa", "sha256:bbbb")
