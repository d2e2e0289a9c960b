"""``SqlFileStore``: the FileStore interface on the same database as the interactions."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gemserve.store.files import FileRecord, NameTaken, UploadGone, UploadRecord
from gemserve.store.schema import files, uploads
from gemserve.store.sql import SqlStore


class SqlFileStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    # --- upload sessions ---------------------------------------------------------------------

    async def create_upload(self, record: UploadRecord, now: datetime) -> list[str]:
        async with self._store.write() as conn:
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

    async def advance_upload(self, upload_id: str, received: int, expires_at: datetime) -> None:
        async with self._store.write() as conn:
            await conn.execute(
                uploads.update()
                .where(uploads.c.id == upload_id)
                .values(received=received, expires_at=expires_at)
            )

    async def complete_upload(self, upload_id: str, file: FileRecord) -> None:
        try:
            async with self._store.write() as conn:
                gone = await conn.execute(uploads.delete().where(uploads.c.id == upload_id))
                if gone.rowcount != 1:
                    raise UploadGone(upload_id)
                await conn.execute(files.insert().values(**vars(file)))
        except IntegrityError:
            raise NameTaken(file.name) from None

    async def delete_upload(self, upload_id: str) -> None:
        async with self._store.write() as conn:
            await conn.execute(uploads.delete().where(uploads.c.id == upload_id))

    async def expired_uploads(self, now: datetime, limit: int) -> list[UploadRecord]:
        query = sa.select(uploads).where(uploads.c.expires_at <= now).limit(limit)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [UploadRecord(**dict(row)) for row in rows]

    async def pending_file_ids(self) -> set[str]:
        async with self._store.engine.connect() as conn:
            return {row[0] for row in await conn.execute(sa.select(uploads.c.file_id))}

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
        held = sa.select(sa.func.coalesce(sa.func.sum(files.c.size_bytes), 0)).where(
            files.c.tenant == tenant, files.c.expires_at > now
        )
        pending = sa.select(
            sa.func.coalesce(
                sa.func.sum(sa.func.coalesce(uploads.c.declared_size, uploads.c.received)), 0
            )
        ).where(uploads.c.tenant == tenant, uploads.c.expires_at > now)
        async with self._store.engine.connect() as conn:
            total = (await conn.execute(held)).scalar_one()
            total += (await conn.execute(pending)).scalar_one()
        return int(total)

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
