"""``SqlFileStore``: the FileStore interface on the same database as the interactions.

Replicas share it: a chunk is accepted by a conditional update (``received`` must still be its
offset), and a quota check runs with the insert it allows under a per-tenant lock, on
PostgreSQL a transaction-scoped advisory lock (released at commit, or when a dead process's
connection closes), on SQLite the write lock (one process owns the file).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gemserve.store.files import (
    FileRecord,
    NameTaken,
    QuotaExceeded,
    Segment,
    UploadGone,
    UploadRecord,
)
from gemserve.store.schema import files, upload_segments, uploads
from gemserve.store.sql import SqlStore


class SqlFileStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    # --- upload sessions ---------------------------------------------------------------------

    async def create_upload(
        self, record: UploadRecord, now: datetime, quota: int | None = None
    ) -> list[str]:
        async with self._store.write() as conn:
            await _lock_tenant(conn, record.tenant)
            taken = await conn.execute(
                sa.select(files.c.id).where(
                    files.c.tenant == record.tenant,
                    files.c.name == record.name,
                    files.c.expires_at > now,
                )
            )
            pending = await conn.execute(
                sa.select(uploads.c.id).where(
                    uploads.c.tenant == record.tenant,
                    uploads.c.name == record.name,
                    uploads.c.expires_at > now,
                )
            )
            if taken.first() is not None or pending.first() is not None:
                raise NameTaken(record.name)
            if quota is not None:
                total = await _tenant_bytes(conn, record.tenant, now) + (record.declared_size or 0)
                if total > quota:
                    raise QuotaExceeded(total)
            # An expired file of the same name may still wait for the sweeper: it goes now.
            stale = files.c.tenant == record.tenant, files.c.name == record.name
            expired = [row[0] for row in await conn.execute(sa.select(files.c.id).where(*stale))]
            await conn.execute(files.delete().where(*stale))
            await conn.execute(uploads.insert().values(**vars(record)))
        return expired

    async def get_upload(self, upload_id: str, now: datetime) -> UploadRecord | None:
        query = sa.select(uploads).where(uploads.c.id == upload_id, uploads.c.expires_at > now)
        async with self._store.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else UploadRecord(**dict(row))

    async def add_segment(self, upload_id: str, segment: Segment, expires_at: datetime) -> bool:
        async with self._store.write() as conn:
            advanced = await conn.execute(
                uploads.update()
                .where(uploads.c.id == upload_id, uploads.c.received == segment.start)
                .values(received=segment.start + segment.size, expires_at=expires_at)
            )
            if advanced.rowcount != 1:
                return False
            if segment.size:
                await conn.execute(
                    upload_segments.insert().values(
                        upload_id=upload_id,
                        start_byte=segment.start,
                        size=segment.size,
                        blob_key=segment.key,
                    )
                )
        return True

    async def segments(self, upload_id: str) -> list[Segment]:
        query = (
            sa.select(
                upload_segments.c.start_byte, upload_segments.c.size, upload_segments.c.blob_key
            )
            .where(upload_segments.c.upload_id == upload_id)
            .order_by(upload_segments.c.start_byte)
        )
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Segment(int(start), int(size), key) for start, size, key in rows]

    async def enforce_quota(self, upload_id: str, quota: int, now: datetime) -> None:
        async with self._store.write() as conn:
            tenant = (
                await conn.execute(sa.select(uploads.c.tenant).where(uploads.c.id == upload_id))
            ).scalar()
            if tenant is None:
                return  # gone: completing it will say so
            await _lock_tenant(conn, tenant)
            total = await _tenant_bytes(conn, tenant, now)
            if total <= quota:
                return
            dropped = await _delete_upload(conn, upload_id)
        raise QuotaExceeded(total, dropped)

    async def complete_upload(self, upload_id: str, file: FileRecord) -> None:
        try:
            async with self._store.write() as conn:
                await conn.execute(
                    upload_segments.delete().where(upload_segments.c.upload_id == upload_id)
                )
                gone = await conn.execute(uploads.delete().where(uploads.c.id == upload_id))
                if gone.rowcount != 1:
                    raise UploadGone(upload_id)
                await conn.execute(files.insert().values(**vars(file)))
        except IntegrityError:
            raise NameTaken(file.name) from None

    async def delete_upload(self, upload_id: str) -> list[str]:
        async with self._store.write() as conn:
            return await _delete_upload(conn, upload_id)

    async def expired_uploads(self, now: datetime, limit: int) -> list[UploadRecord]:
        query = sa.select(uploads).where(uploads.c.expires_at <= now).limit(limit)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [UploadRecord(**dict(row)) for row in rows]

    async def pending_file_ids(self) -> set[str]:
        async with self._store.engine.connect() as conn:
            return {row[0] for row in await conn.execute(sa.select(uploads.c.file_id))}

    async def segment_keys(self) -> set[str]:
        async with self._store.engine.connect() as conn:
            return {row[0] for row in await conn.execute(sa.select(upload_segments.c.blob_key))}

    # --- files -------------------------------------------------------------------------------

    async def get_file(self, tenant: str, name: str, now: datetime) -> FileRecord | None:
        query = sa.select(files).where(
            files.c.tenant == tenant, files.c.name == name, files.c.expires_at > now
        )
        async with self._store.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else FileRecord(**dict(row))

    async def list_files(
        self, tenant: str, now: datetime, offset: int, limit: int
    ) -> list[FileRecord]:
        query = (
            sa.select(files)
            .where(files.c.tenant == tenant, files.c.expires_at > now)
            .order_by(files.c.created_at.desc(), files.c.id)
            .offset(offset)
            .limit(limit)
        )
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [FileRecord(**dict(row)) for row in rows]

    async def delete_file(self, tenant: str, name: str) -> FileRecord | None:
        async with self._store.write() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(files).where(files.c.tenant == tenant, files.c.name == name)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            await conn.execute(files.delete().where(files.c.id == row["id"]))
        return FileRecord(**dict(row))

    async def tenant_bytes(self, tenant: str, now: datetime) -> int:
        async with self._store.engine.connect() as conn:
            return await _tenant_bytes(conn, tenant, now)

    async def delete_expired_files(self, now: datetime, limit: int) -> list[str]:
        expired = sa.select(files.c.id).where(files.c.expires_at <= now).limit(limit)
        async with self._store.write() as conn:
            ids = [row[0] for row in await conn.execute(expired)]
            if ids:
                await conn.execute(files.delete().where(files.c.id.in_(ids)))
        return ids

    async def all_file_ids(self) -> set[str]:
        async with self._store.engine.connect() as conn:
            return {row[0] for row in await conn.execute(sa.select(files.c.id))}


async def _tenant_bytes(conn: AsyncConnection, tenant: str, now: datetime) -> int:
    """Live files plus pending uploads (declared size, or what arrived when undeclared)."""
    held = sa.select(sa.func.coalesce(sa.func.sum(files.c.size_bytes), 0)).where(
        files.c.tenant == tenant, files.c.expires_at > now
    )
    pending = sa.select(
        sa.func.coalesce(
            sa.func.sum(sa.func.coalesce(uploads.c.declared_size, uploads.c.received)), 0
        )
    ).where(uploads.c.tenant == tenant, uploads.c.expires_at > now)
    total = (await conn.execute(held)).scalar_one()
    total += (await conn.execute(pending)).scalar_one()
    return int(total)


async def _delete_upload(conn: AsyncConnection, upload_id: str) -> list[str]:
    """Delete the session and its segment rows; returns the segments' blob keys."""
    keys = await conn.execute(
        sa.select(upload_segments.c.blob_key).where(upload_segments.c.upload_id == upload_id)
    )
    doomed = [row[0] for row in keys]
    await conn.execute(upload_segments.delete().where(upload_segments.c.upload_id == upload_id))
    await conn.execute(uploads.delete().where(uploads.c.id == upload_id))
    return doomed


async def _lock_tenant(conn: AsyncConnection, tenant: str) -> None:
    """Hold the tenant's quota lock until the transaction ends (PostgreSQL; SQLite's writes
    are serialised already)."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.sha256(b"gemserve tenant files\0" + tenant.encode()).digest()
    key = sa.literal(int.from_bytes(digest[:8], "big", signed=True), sa.BigInteger)
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
