"""``SqlReplicaStore``: the ReplicaStore interface on the same database as the interactions."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from gemserve.protocol.interactions.status import TERMINAL_STATUSES
from gemserve.store.base import InteractionRecord
from gemserve.store.replicas import ReplicaRecord, SettingMismatch
from gemserve.store.schema import cluster_settings, interactions, replicas
from gemserve.store.sql import SqlStore


class SqlReplicaStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.shared = not store.url.startswith("sqlite")

    async def register(self, replica: ReplicaRecord) -> None:
        async with self._store.write() as conn:
            await conn.execute(replicas.insert().values(**vars(replica)))

    async def renew(self, replica_id: str, lease_until: datetime) -> bool:
        async with self._store.write() as conn:
            result = await conn.execute(
                replicas.update().where(replicas.c.id == replica_id).values(lease_until=lease_until)
            )
            return bool(result.rowcount)

    async def release(self, replica_id: str) -> None:
        async with self._store.write() as conn:
            await conn.execute(replicas.delete().where(replicas.c.id == replica_id))

    async def live_replicas(self, now: datetime) -> list[ReplicaRecord]:
        query = sa.select(replicas).where(replicas.c.lease_until >= now).order_by(replicas.c.id)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [ReplicaRecord(**dict(row)) for row in rows]

    async def expire_all_but(self, replica_id: str) -> None:
        async with self._store.write() as conn:
            await conn.execute(replicas.delete().where(replicas.c.id != replica_id))

    async def orphaned_interactions(self, now: datetime) -> list[InteractionRecord]:
        live = sa.select(replicas.c.id).where(replicas.c.lease_until >= now)
        query = sa.select(interactions).where(
            interactions.c.status.not_in(TERMINAL_STATUSES),
            sa.or_(interactions.c.owner.is_(None), interactions.c.owner.not_in(live)),
        )
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [InteractionRecord(**dict(row)) for row in rows]

    async def forget_lost(self, now: datetime) -> int:
        running = sa.select(interactions.c.owner).where(
            interactions.c.status.not_in(TERMINAL_STATUSES), interactions.c.owner.is_not(None)
        )
        async with self._store.write() as conn:
            result = await conn.execute(
                replicas.delete().where(replicas.c.lease_until < now, replicas.c.id.not_in(running))
            )
            return int(result.rowcount or 0)

    async def request_cancel(self, interaction_id: str) -> bool:
        async with self._store.write() as conn:
            result = await conn.execute(
                interactions.update()
                .where(
                    interactions.c.id == interaction_id,
                    interactions.c.status.not_in(TERMINAL_STATUSES),
                )
                .values(cancel_requested=True)
            )
            return bool(result.rowcount)

    async def cancel_requests(self, owner: str) -> list[str]:
        query = sa.select(interactions.c.id).where(
            interactions.c.owner == owner,
            interactions.c.cancel_requested.is_(True),
            interactions.c.status.not_in(TERMINAL_STATUSES),
        )
        async with self._store.engine.connect() as conn:
            return [row[0] for row in await conn.execute(query)]

    async def agree(self, name: str, value: str, now: datetime) -> None:
        insert = postgresql.insert if self.shared else sqlite.insert
        async with self._store.write() as conn:
            # The first replica's value wins, even when two start at once.
            await conn.execute(
                insert(cluster_settings)
                .values(name=name, value=value, recorded_at=now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            query = sa.select(cluster_settings.c.value).where(cluster_settings.c.name == name)
            recorded = (await conn.execute(query)).scalar_one()
        if recorded != value:
            raise SettingMismatch(name, recorded, value)
