"""The CacheStore acceptance suite: SqlCacheStore must pass all of it on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gemserve.store import SqlStore
from gemserve.store.caches import CachedContentRecord
from gemserve.store.sql_caches import SqlCacheStore

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(hours=1)


@pytest.fixture
def caches(store: SqlStore) -> SqlCacheStore:
    return SqlCacheStore(store)


def new_cache(tenant: str = "t1", **overrides: Any) -> CachedContentRecord:
    values: dict[str, Any] = {
        "id": secrets.token_hex(8),
        "tenant": tenant,
        "model": "models/gemini-2.5-flash",
        "display_name": "Ünïcode 🙂",
        "content": {
            "contents": [{"role": "user", "parts": [{"text": "A long document."}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
        },
        "size_bytes": 120,
        "token_count": 42,
        "created_at": NOW,
        "updated_at": NOW,
        "expires_at": NOW + TTL,
    }
    values.update(overrides)
    return CachedContentRecord(**values)


async def test_a_cache_round_trips_every_field(caches: SqlCacheStore) -> None:
    record = new_cache(size_bytes=5 * 1024**3)  # int64, beyond 32 bits
    await caches.create_cache(record)
    loaded = await caches.get_cache("t1", record.id, NOW)
    assert loaded == record
    assert loaded is not None
    assert loaded.expires_at.tzinfo is not None


async def test_a_cache_is_its_tenants_only_and_gone_once_expired(caches: SqlCacheStore) -> None:
    record = new_cache()
    await caches.create_cache(record)
    assert await caches.get_cache("t2", record.id, NOW) is None
    assert await caches.get_cache("t1", record.id, record.expires_at - timedelta(seconds=1))
    assert await caches.get_cache("t1", record.id, record.expires_at) is None
    assert await caches.get_cache("t1", "missing", NOW) is None


async def test_list_is_newest_first_paged_live_and_per_tenant(caches: SqlCacheStore) -> None:
    made = [new_cache(created_at=NOW + timedelta(seconds=i)) for i in range(5)]
    for record in made:
        await caches.create_cache(record)
    await caches.create_cache(new_cache(expires_at=NOW))  # expired
    await caches.create_cache(new_cache("t2"))
    first = await caches.list_caches("t1", NOW, 0, 3)
    rest = await caches.list_caches("t1", NOW, 3, 3)
    assert [r.id for r in first + rest] == [r.id for r in reversed(made)]
    assert await caches.count_caches("t1", NOW) == 5
    assert await caches.count_caches("t2", NOW) == 1


async def test_update_expiry_moves_a_live_cache_only(caches: SqlCacheStore) -> None:
    record = new_cache()
    await caches.create_cache(record)
    later = NOW + timedelta(minutes=5)
    updated = await caches.update_cache_expiry("t1", record.id, later + TTL, later)
    assert updated is not None
    assert (updated.expires_at, updated.updated_at, updated.created_at) == (
        later + TTL,
        later,
        NOW,
    )
    assert await caches.update_cache_expiry("t2", record.id, later, later) is None
    gone = later + 2 * TTL
    assert await caches.update_cache_expiry("t1", record.id, gone + TTL, gone) is None


async def test_delete_answers_whether_a_live_cache_was_there(caches: SqlCacheStore) -> None:
    record, stale = new_cache(), new_cache(expires_at=NOW)
    await caches.create_cache(record)
    await caches.create_cache(stale)
    assert not await caches.delete_cache("t2", record.id, NOW)
    assert await caches.delete_cache("t1", record.id, NOW)
    assert not await caches.delete_cache("t1", record.id, NOW)
    assert not await caches.delete_cache("t1", stale.id, NOW)
    assert await caches.delete_expired_caches(NOW, 10) == 0  # the stale one went with delete


async def test_the_sweep_deletes_expired_caches_in_batches(caches: SqlCacheStore) -> None:
    for i in range(5):
        await caches.create_cache(new_cache(expires_at=NOW - timedelta(seconds=i)))
    live = new_cache()
    await caches.create_cache(live)
    assert await caches.delete_expired_caches(NOW, 3) == 3
    assert await caches.delete_expired_caches(NOW, 3) == 2
    assert await caches.get_cache("t1", live.id, NOW) == live
