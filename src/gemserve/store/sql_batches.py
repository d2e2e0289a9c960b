"""``SqlBatchStore``: the BatchStore interface on the same database as the interactions."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gemserve.store.batches import (
    ACTIVE_STATES,
    ITEM_FAILED,
    ITEM_PENDING,
    ITEM_SUCCEEDED,
    BatchItemRecord,
    BatchRecord,
)
from gemserve.store.schema import batch_items, batches
from gemserve.store.sql import SqlStore

# Rows per INSERT: PostgreSQL takes at most 32767 bind parameters per statement.
_INSERT_CHUNK = 1000


class SqlBatchStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store
        # Other processes may use the database (PostgreSQL): claims of other replicas hold
        # until their lease runs out. SQLite is one process's: a claim of another replica id
        # was left by a process that died, and is taken over at once.
        self.shared = not store.url.startswith("sqlite")

    async def create_batch(self, record: BatchRecord, items: list[BatchItemRecord]) -> None:
        async with self._store.write() as conn:
            await conn.execute(batches.insert().values(**vars(record)))
            rows = [vars(item) for item in items]
            for start in range(0, len(rows), _INSERT_CHUNK):
                await conn.execute(batch_items.insert(), rows[start : start + _INSERT_CHUNK])

    async def get_batch(self, tenant: str, batch_id: str) -> BatchRecord | None:
        query = sa.select(batches).where(batches.c.id == batch_id, batches.c.tenant == tenant)
        async with self._store.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else BatchRecord(**dict(row))

    async def list_batches(self, tenant: str, offset: int, limit: int) -> list[BatchRecord]:
        query = (
            sa.select(batches)
            .where(batches.c.tenant == tenant)
            .order_by(batches.c.created_at.desc(), batches.c.id)
            .offset(offset)
            .limit(limit)
        )
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [BatchRecord(**dict(row)) for row in rows]

    async def count_active_batches(self, tenant: str) -> int:
        query = sa.select(sa.func.count()).where(
            batches.c.tenant == tenant, batches.c.state.in_(ACTIVE_STATES)
        )
        async with self._store.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def batch_items(
        self, batch_id: str, *, pending_only: bool = False
    ) -> list[BatchItemRecord]:
        query = sa.select(batch_items).where(batch_items.c.batch_id == batch_id)
        if pending_only:
            query = query.where(batch_items.c.state == ITEM_PENDING)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(batch_items.c.seq))).mappings().all()
        return [BatchItemRecord(**dict(row)) for row in rows]

    async def finish_item(
        self,
        batch_id: str,
        seq: int,
        *,
        response: dict[str, Any] | None,
        error: dict[str, Any] | None,
        now: datetime,
    ) -> bool:
        state = ITEM_FAILED if error is not None else ITEM_SUCCEEDED
        async with self._store.write() as conn:
            # The batch row first, locked (PostgreSQL; SQLite's writers are serialised): an end
            # or a delete from another replica waits for this write, or this one sees it.
            batch_state = (
                await conn.execute(
                    sa.select(batches.c.state).where(batches.c.id == batch_id).with_for_update()
                )
            ).scalar_one_or_none()
            if batch_state not in ACTIVE_STATES:
                return False
            result = await conn.execute(
                batch_items.update()
                .where(
                    batch_items.c.batch_id == batch_id,
                    batch_items.c.seq == seq,
                    batch_items.c.state == ITEM_PENDING,
                )
                .values(state=state, response=response, error=error)
            )
            if result.rowcount != 1:
                return True
            counter = batches.c.failed if error is not None else batches.c.succeeded
            await conn.execute(
                batches.update()
                .where(batches.c.id == batch_id)
                .values({counter: counter + 1, batches.c.updated_at: now})
            )
        return True

    async def set_batch_state(
        self,
        batch_id: str,
        state: str,
        *,
        only_from: Collection[str],
        now: datetime,
        end_time: datetime | None = None,
        expires_at: datetime | None = None,
        error: dict[str, Any] | None = None,
        output_file: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {"state": state, "updated_at": now}
        if end_time is not None:
            values["end_time"] = end_time
        if expires_at is not None:
            values["expires_at"] = expires_at
        if error is not None:
            values["error"] = error
        if output_file is not None:
            values["output_file"] = output_file
        async with self._store.write() as conn:
            result = await conn.execute(
                batches.update()
                .where(batches.c.id == batch_id, batches.c.state.in_(tuple(only_from)))
                .values(**values)
            )
        return bool(result.rowcount == 1)

    async def claim_batch(
        self,
        replica: str,
        *,
        now: datetime,
        lease_until: datetime,
        exclude: Collection[str] = (),
    ) -> BatchRecord | None:
        query = (
            sa.select(batches)
            .where(batches.c.state.in_(ACTIVE_STATES))
            .order_by(batches.c.created_at, batches.c.id)
            .limit(1)
        )
        if exclude:
            query = query.where(batches.c.id.not_in(list(exclude)))
        if self.shared:
            # A row locked by another replica (claiming it, or writing to it) is passed over,
            # not waited for; a row claimed meanwhile fails the filter, which PostgreSQL checks
            # again on the row it locks.
            query = query.where(
                sa.or_(
                    batches.c.claimed_by.is_(None),
                    batches.c.claimed_by == replica,
                    batches.c.lease_until.is_(None),
                    batches.c.lease_until <= now,
                )
            ).with_for_update(skip_locked=True)
        async with self._store.write() as conn:
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                return None
            await conn.execute(
                batches.update()
                .where(batches.c.id == row["id"])
                .values(claimed_by=replica, lease_until=lease_until)
            )
        return replace(BatchRecord(**dict(row)), claimed_by=replica, lease_until=lease_until)

    async def renew_claims(
        self, replica: str, batch_ids: Collection[str], *, lease_until: datetime
    ) -> set[str]:
        if not batch_ids:
            return set()
        async with self._store.write() as conn:
            result = await conn.execute(
                batches.update()
                .where(
                    batches.c.id.in_(list(batch_ids)),
                    batches.c.claimed_by == replica,
                    batches.c.state.in_(ACTIVE_STATES),
                )
                .values(lease_until=lease_until)
                .returning(batches.c.id)
            )
            return {row[0] for row in result}

    async def release_claims(self, replica: str, *, now: datetime) -> None:
        async with self._store.write() as conn:
            await conn.execute(
                batches.update()
                .where(batches.c.claimed_by == replica, batches.c.lease_until > now)
                .values(lease_until=now)
            )

    async def delete_batch(self, tenant: str, batch_id: str) -> bool:
        async with self._store.write() as conn:
            # Locked first, as finish_item locks it: the two never wait on each other's rows.
            owned = await conn.execute(
                sa.select(batches.c.id)
                .where(batches.c.id == batch_id, batches.c.tenant == tenant)
                .with_for_update()
            )
            if owned.first() is None:
                return False
            await _delete_ids(conn, [batch_id])
        return True

    async def delete_expired_batches(self, now: datetime, limit: int) -> int:
        expired = sa.select(batches.c.id).where(batches.c.expires_at <= now).limit(limit)
        async with self._store.write() as conn:
            ids = [row[0] for row in await conn.execute(expired)]
            if ids:
                await _delete_ids(conn, ids)
        return len(ids)


async def _delete_ids(conn: AsyncConnection, ids: list[str]) -> None:
    # Items first: SQLite enforces the foreign key (PRAGMA foreign_keys=ON) but the cascade
    # is not relied on, as for interaction events.
    await conn.execute(batch_items.delete().where(batch_items.c.batch_id.in_(ids)))
    await conn.execute(batches.delete().where(batches.c.id.in_(ids)))
