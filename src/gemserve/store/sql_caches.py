"""``SqlCacheStore``: the CacheStore interface on the same database as the interactions."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from gemserve.store.caches import CachedContentRecord
from gemserve.store.schema import cached_contents
from gemserve.store.sql import SqlStore


class SqlCacheStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def create_cache(self, record: CachedContentRecord) -> None:
        async with self._store.write() as conn:
            await conn.execute(cached_contents.insert().values(**vars(record)))

    async def get_cache(
        self, tenant: str, cache_id: str, now: datetime
    ) -> CachedContentRecord | None:
        query = sa.select(cached_contents).where(*_live(tenant, cache_id, now))
        async with self._store.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else CachedContentRecord(**dict(row))

    async def list_caches(
        self, tenant: str, now: datetime, offset: int, limit: int
    ) -> list[CachedContentRecord]:
        query = (
            sa.select(cached_contents)
            .where(cached_contents.c.tenant == tenant, cached_contents.c.expires_at > now)
            .order_by(cached_contents.c.created_at.desc(), cached_contents.c.id)
            .offset(offset)
            .limit(limit)
        )
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [CachedContentRecord(**dict(row)) for row in rows]

    async def count_caches(self, tenant: str, now: datetime) -> int:
        query = sa.select(sa.func.count()).where(
            cached_contents.c.tenant == tenant, cached_contents.c.expires_at > now
        )
        async with self._store.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def update_cache_expiry(
        self, tenant: str, cache_id: str, expires_at: datetime, now: datetime
    ) -> CachedContentRecord | None:
        async with self._store.write() as conn:
            result = await conn.execute(
                cached_contents.update()
                .where(*_live(tenant, cache_id, now))
                .values(expires_at=expires_at, updated_at=now)
            )
            if result.rowcount != 1:
                return None
            row = (
                (
                    await conn.execute(
                        sa.select(cached_contents).where(cached_contents.c.id == cache_id)
                    )
                )
                .mappings()
                .one()
            )
        return CachedContentRecord(**dict(row))

    async def delete_cache(self, tenant: str, cache_id: str, now: datetime) -> bool:
        async with self._store.write() as conn:
            live = await conn.execute(
                sa.select(cached_contents.c.id).where(*_live(tenant, cache_id, now))
            )
            found = live.first() is not None
            await conn.execute(
                cached_contents.delete().where(
                    cached_contents.c.tenant == tenant, cached_contents.c.id == cache_id
                )
            )
        return found

    async def delete_expired_caches(self, now: datetime, limit: int) -> int:
        expired = (
            sa.select(cached_contents.c.id).where(cached_contents.c.expires_at <= now).limit(limit)
        )
        async with self._store.write() as conn:
            ids = [row[0] for row in await conn.execute(expired)]
            if ids:
                await conn.execute(cached_contents.delete().where(cached_contents.c.id.in_(ids)))
        return len(ids)


def _live(tenant: str, cache_id: str, now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        cached_contents.c.id == cache_id,
        cached_contents.c.tenant == tenant,
        cached_contents.c.expires_at > now,
    )
