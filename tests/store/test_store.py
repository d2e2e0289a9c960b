"""The shared acceptance suite: every Store backend must pass all of it."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError

from gemserve.store import (
    ApiKeyRecord,
    EventBatch,
    InteractionRecord,
    SqlStore,
    database_url_for,
)
from gemserve.store.sql import MIGRATIONS

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def new_record(tenant: str = "t1", **overrides: Any) -> InteractionRecord:
    values: dict[str, Any] = {
        "id": "v1_" + secrets.token_hex(12),
        "tenant": tenant,
        "model": "gemini-3-flash-preview",
        "status": "in_progress",
        "created_at": NOW,
        "updated_at": NOW,
        "expires_at": NOW + timedelta(days=55),
        "input": [{"type": "user_input", "content": [{"type": "text", "text": "Hi ünïcode 🙂"}]}],
        "system_instruction": "Be brief.",
        "generation_config": {"temperature": 0.5},
        "previous_interaction_id": None,
        "background": False,
    }
    values.update(overrides)
    return InteractionRecord(**values)


def event(seq: int, kind: str = "step.delta") -> dict[str, Any]:
    return {"event_type": kind, "type": kind, "event_id": f"evt_x_{seq}", "index": 0}


async def test_create_get_roundtrip_preserves_every_field(store: SqlStore) -> None:
    record = new_record(previous_interaction_id="v1_" + "0" * 24, background=True)
    await store.create_interaction(record, [event(1), event(2)])
    loaded = await store.get_interaction("t1", record.id, NOW)
    assert loaded == record
    assert loaded is not None
    assert loaded.created_at.tzinfo is not None


async def test_events_are_kept_in_order_and_replayed_after_a_sequence(store: SqlStore) -> None:
    record = new_record()
    await store.create_interaction(record, [event(1), event(2)])
    await store.append_events([EventBatch(record.id, 3, [event(3), event(4)])])
    await store.append_events([EventBatch(record.id, 5, [])])
    await store.append_events([])
    assert [e["event_id"] for e in await store.get_events(record.id, 0)] == [
        f"evt_x_{i}" for i in range(1, 5)
    ]
    assert [e["event_id"] for e in await store.get_events(record.id, 2)] == ["evt_x_3", "evt_x_4"]
    assert await store.get_events(record.id, 4) == []


async def test_one_append_writes_several_interactions(store: SqlStore) -> None:
    first, second = new_record(), new_record()
    await store.create_interaction(first, [event(1)])
    await store.create_interaction(second, [event(1), event(2)])
    await store.append_events(
        [EventBatch(first.id, 2, [event(2), event(3)]), EventBatch(second.id, 3, [event(3)])]
    )
    assert len(await store.get_events(first.id, 0)) == 3
    assert [e["event_id"] for e in await store.get_events(second.id, 1)] == ["evt_x_2", "evt_x_3"]


async def test_a_failed_append_writes_nothing(store: SqlStore) -> None:
    first, second = new_record(), new_record()
    await store.create_interaction(first, [event(1)])
    await store.create_interaction(second, [event(1)])
    with pytest.raises(IntegrityError):  # seq 1 of the second one exists
        await store.append_events(
            [EventBatch(first.id, 2, [event(2)]), EventBatch(second.id, 1, [event(1)])]
        )
    assert len(await store.get_events(first.id, 0)) == 1


async def complete(
    store: SqlStore,
    record: InteractionRecord,
    steps: list[dict[str, Any]],
    usage: dict[str, Any],
    updated_at: datetime,
) -> None:
    """Finish ``record`` (created with one event) as completed."""
    await store.finish_interaction(
        record.id,
        first_seq=2,
        events=[event(2, "interaction.completed")],
        status="completed",
        steps=steps,
        usage=usage,
        error=None,
        updated_at=updated_at,
    )


async def test_finish_writes_final_state_and_last_events(store: SqlStore) -> None:
    record = new_record()
    await store.create_interaction(record, [event(1)])
    steps = [{"type": "model_output", "content": [{"type": "text", "text": "Hello"}]}]
    usage = {"total_input_tokens": 3, "total_output_tokens": 1, "total_tokens": 4}
    later = NOW + timedelta(seconds=3)
    await complete(store, record, steps, usage, later)
    loaded = await store.get_interaction("t1", record.id, NOW)
    assert loaded is not None
    assert (loaded.status, loaded.steps, loaded.usage, loaded.updated_at) == (
        "completed",
        steps,
        usage,
        later,
    )
    assert len(await store.get_events(record.id, 0)) == 2


async def test_stored_json_reads_back_in_its_own_key_order(store: SqlStore) -> None:
    """A finished interaction must serialize byte for byte as the replica that ran it served
    it: PostgreSQL's JSONB re-ordered keys (shorter first), so a GET after a restart or from
    another replica differed from the first answer (the kill -9 test caught it)."""
    record = new_record(generation_config={"temperature": 0.5, "max_output_tokens": 9, "seed": 1})
    ordered = {"event_type": "step.delta", "index": 0, "delta": {"type": "text", "text": "Hi"}}
    await store.create_interaction(record, [ordered])
    steps = [{"type": "model_output", "content": [{"type": "text", "text": "Hello"}]}]
    usage = {"total_tokens": 4, "total_input_tokens": 3, "total_output_tokens": 1}
    await complete(store, record, steps, usage, NOW)
    loaded = await store.get_interaction("t1", record.id, NOW)
    assert loaded is not None
    dumps = json.dumps
    assert dumps(loaded.steps) == dumps(steps)
    assert dumps(loaded.usage) == dumps(usage)
    assert dumps(loaded.input) == dumps(record.input)
    assert dumps(loaded.generation_config) == dumps(record.generation_config)
    assert dumps((await store.get_events(record.id, 0))[0]) == dumps(ordered)


async def test_other_tenants_and_expired_rows_are_invisible(store: SqlStore) -> None:
    record = new_record(tenant="alice")
    await store.create_interaction(record, [])
    assert await store.get_interaction("bob", record.id, NOW) is None
    assert await store.get_interaction("alice", record.id, NOW) is not None
    assert await store.get_interaction("alice", record.id, record.expires_at) is None
    assert not await store.delete_interaction("bob", record.id)
    assert await store.get_interaction("alice", record.id, NOW) is not None


async def test_delete_removes_row_and_events(store: SqlStore) -> None:
    record = new_record()
    await store.create_interaction(record, [event(1), event(2)])
    assert await store.delete_interaction("t1", record.id)
    assert await store.get_interaction("t1", record.id, NOW) is None
    assert await store.get_events(record.id, 0) == []
    assert not await store.delete_interaction("t1", record.id)


async def test_conversations_are_listed_by_their_last_turn_newest_first(store: SqlStore) -> None:
    def at(minutes: int, **overrides: Any) -> InteractionRecord:
        return new_record(created_at=NOW + timedelta(minutes=minutes), **overrides)

    first = at(0)  # a conversation of three turns
    second = at(1, previous_interaction_id=first.id)
    third = at(4, previous_interaction_id=second.id)
    alone = at(2)  # one turn
    forked = at(3, previous_interaction_id=first.id)  # a second branch from the first turn
    expired = at(5, expires_at=NOW - timedelta(seconds=1))
    foreign = at(6, tenant="t2", previous_interaction_id=alone.id)  # another tenant's turn
    for record in (first, second, third, alone, forked, expired, foreign):
        await store.create_interaction(record, [])

    listed = await store.list_conversations("t1", NOW, 0, 10)
    assert [r.id for r in listed] == [third.id, forked.id, alone.id]
    assert listed[0] == third
    assert [r.id for r in await store.list_conversations("t1", NOW, 1, 1)] == [forked.id]
    assert await store.list_conversations("t1", NOW, 3, 10) == []
    assert [r.id for r in await store.list_conversations("t2", NOW, 0, 10)] == [foreign.id]
    # Deleting the last turn makes the one before it the conversation's last.
    assert await store.delete_interaction("t1", third.id)
    listed = await store.list_conversations("t1", NOW, 0, 10)
    assert [r.id for r in listed] == [forked.id, alone.id, second.id]


async def test_unfinished_interactions_are_the_running_ones_of_every_tenant(
    store: SqlStore,
) -> None:
    running = [new_record(), new_record(tenant="t2")]
    done = new_record(status="completed")
    for record in [*running, done]:
        await store.create_interaction(record, [])
    unfinished = {record.id: record for record in await store.unfinished_interactions()}
    assert {r.id for r in running} <= set(unfinished)
    assert done.id not in unfinished
    assert unfinished[running[1].id].tenant == "t2"


async def test_delete_expired_in_batches(store: SqlStore) -> None:
    old = [new_record(expires_at=NOW - timedelta(seconds=1)) for _ in range(5)]
    fresh = new_record()
    for record in [*old, fresh]:
        await store.create_interaction(record, [event(1)])
    assert await store.delete_expired(NOW, limit=3) == 3
    assert await store.delete_expired(NOW, limit=3) == 2
    assert await store.delete_expired(NOW, limit=3) == 0
    assert await store.get_interaction("t1", fresh.id, NOW) is not None
    for record in old:
        assert await store.get_events(record.id, 0) == []


async def test_concurrent_writers_do_not_conflict(store: SqlStore) -> None:
    records = [new_record() for _ in range(16)]

    async def writer(record: InteractionRecord) -> None:
        await store.create_interaction(record, [event(1)])
        for seq in range(2, 12):
            await store.append_events([EventBatch(record.id, seq, [event(seq)])])

    await asyncio.gather(*(writer(r) for r in records))
    for record in records:
        assert len(await store.get_events(record.id, 0)) == 11


async def test_api_keys(store: SqlStore) -> None:
    key = ApiKeyRecord(
        id="key_" + secrets.token_hex(8),
        tenant="tenant_a",
        name="ci",
        key_hash=secrets.token_hex(32),
        created_at=NOW,
    )
    await store.create_key(key)
    assert await store.find_key(key.key_hash) == key
    assert key in await store.list_keys()
    assert await store.revoke_key(key.id, NOW)
    assert not await store.revoke_key(key.id, NOW)
    revoked = await store.find_key(key.key_hash)
    assert revoked is not None
    assert revoked.revoked_at == NOW
    assert await store.find_key("0" * 64) is None


def schema_of(connection: sa.Connection) -> tuple[str | None, dict[str, list[str]]]:
    """The Alembic revision, and every table with its columns."""
    revision = MigrationContext.configure(connection).get_current_revision()
    inspector = sa.inspect(connection)
    tables = {
        name: sorted(column["name"] for column in inspector.get_columns(name))
        for name in inspector.get_table_names()
    }
    return revision, tables


async def test_migrations_are_idempotent(store: SqlStore, caplog: pytest.LogCaptureFixture) -> None:
    """A second start on a migrated database changes nothing: same revision (the newest),
    same tables and columns, every row intact, and no migration logged."""
    record = new_record()
    await store.create_interaction(record, [event(1), event(2)])
    key = ApiKeyRecord(
        id="key_" + secrets.token_hex(8),
        tenant="tenant_a",
        name="ci",
        key_hash=secrets.token_hex(32),
        created_at=NOW,
    )
    await store.create_key(key)
    async with store.engine.connect() as conn:
        before = await conn.run_sync(schema_of)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert before[0] == ScriptDirectory.from_config(config).get_current_head()
    assert {"interactions", "interaction_events", "api_keys"} <= set(before[1])

    again = SqlStore(store.url)
    with caplog.at_level(logging.INFO, logger="gemserve"):
        await again.start()
    try:
        async with again.engine.connect() as conn:
            assert await conn.run_sync(schema_of) == before
        assert "migrated" not in caplog.text
        assert await again.get_interaction("t1", record.id, NOW) == record
        assert await again.get_events(record.id, 0) == [event(1), event(2)]
        assert await again.find_key(key.key_hash) == key
    finally:
        await again.close()


async def test_the_sqlite_file_is_owner_only(tmp_path: Path) -> None:
    new = SqlStore(database_url_for(None, tmp_path / "new"))
    await new.start()
    try:
        await new.unfinished_interactions()
        files = sorted((tmp_path / "new").glob("gemserve.db*"))
        assert files, "no database file"
        assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
            f.name: "0o600" for f in files
        }
    finally:
        await new.close()
    # A database made by an older gemserve, readable by all: tightened at the next start.
    old = tmp_path / "old" / "gemserve.db"
    old.parent.mkdir()
    old.touch(mode=0o644)
    old.chmod(0o644)
    store = SqlStore(database_url_for(None, old.parent))
    await store.start()
    await store.close()
    assert oct(old.stat().st_mode & 0o777) == "0o600"


async def test_a_jsonb_database_migrates_to_json_with_its_rows() -> None:
    """A PostgreSQL database made before migration 0008 (JSONB columns) starts: its JSON
    columns become ``json`` and the rows in them read back as they were."""
    from alembic import command
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.support.postgres import async_url, fresh_database

    def to_0007(connection: sa.Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")

    def types(connection: sa.Connection) -> set[str]:
        columns = sa.inspect(connection).get_columns("interactions")
        return {type(c["type"]).__name__ for c in columns if c["name"] in ("input", "steps")}

    with fresh_database() as url:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(to_0007)
                assert await conn.run_sync(types) == {"JSONB"}
                await conn.execute(
                    sa.text(
                        "insert into interactions (id, tenant, model, status, background, input,"
                        " steps, created_at, updated_at, expires_at, cancel_requested) values"
                        " ('v1_old', 't1', 'm', 'completed', false,"
                        " '[{\"type\": \"user_input\"}]', '[]', now(), now(),"
                        " now() + interval '1 day', false)"
                    )
                )
        finally:
            await engine.dispose()
        store = SqlStore(async_url(url))
        await store.start()
        try:
            async with store.engine.connect() as conn:
                assert await conn.run_sync(types) == {"JSON"}
            loaded = await store.get_interaction("t1", "v1_old", NOW - timedelta(days=1))
            assert loaded is not None
            assert loaded.input == [{"type": "user_input"}]
        finally:
            await store.close()
