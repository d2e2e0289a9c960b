"""``SqlStore``: the Store interface over SQLAlchemy 2 async, for SQLite and PostgreSQL alike.

Migrations (Alembic) run at start. SQLite runs in WAL mode with a busy timeout, and writes go
through one asyncio lock so concurrent requests never meet "database is locked".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gemserve.protocol.interactions.status import TERMINAL_STATUSES
from gemserve.store.base import ApiKeyRecord, Event, EventBatch, InteractionRecord
from gemserve.store.schema import api_keys, interaction_events, interactions

log = logging.getLogger("gemserve.store")

MIGRATIONS = Path(__file__).parent / "migrations"


def database_url_for(database_url: str | None, data_dir: Path) -> str:
    """The configured URL with an async driver, or the embedded SQLite file in the data dir."""
    if not database_url:
        return f"sqlite+aiosqlite:///{data_dir / 'gemserve.db'}"
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if database_url.startswith(plain):
            return driver + database_url.removeprefix(plain)
    return database_url


def _upgrade(connection: sa.Connection) -> tuple[str | None, str | None]:
    """Migrate to the newest schema; the revisions before and after."""
    before = MigrationContext.configure(connection).get_current_revision()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return before, MigrationContext.configure(connection).get_current_revision()


class SqlStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite = url.startswith("sqlite")
        self._engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()
        # Called with each write transaction's seconds (the app's metrics; no dependency here).
        self.on_write: Callable[[float], None] | None = None

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "store not started"
        return self._engine

    async def start(self) -> None:
        if self._sqlite:
            _owner_only(sa.engine.make_url(self.url).database)
        engine = create_async_engine(self.url, pool_pre_ping=not self._sqlite)
        if self._sqlite:
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        self._engine = engine
        async with engine.begin() as conn:
            before, after = await conn.run_sync(_upgrade)
        if before != after:
            log.info("database schema migrated from %s to %s", before or "empty", after)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (serialised on SQLite, whose writers would otherwise collide)."""
        started = time.perf_counter()
        try:
            if self._sqlite:
                async with self._write_lock, self.engine.begin() as conn:
                    yield conn
            else:
                async with self.engine.begin() as conn:
                    yield conn
        finally:
            if self.on_write is not None:
                self.on_write(time.perf_counter() - started)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Whether this caller is the only one doing ``name`` until the block ends, among all
        the processes on the database (the retention sweeper: one replica sweeps a round, the
        others skip it). On PostgreSQL: a session advisory lock, taken without waiting on a
        connection of its own and released at the end (a process that dies lets go with its
        connection). SQLite is one process's: always True."""
        if self._sqlite:
            yield True
            return
        key = sa.literal(_lock_key(name), sa.BigInteger)
        async with self.engine.connect() as conn:
            held = bool(await conn.scalar(sa.select(sa.func.pg_try_advisory_lock(key))))
            await conn.commit()
            try:
                yield held
            finally:
                if held:
                    try:
                        await conn.scalar(sa.select(sa.func.pg_advisory_unlock(key)))
                        await conn.commit()
                    except BaseException:
                        # Never back into the pool holding the lock: closing the session
                        # releases it.
                        await conn.invalidate()
                        raise

    # --- interactions ----------------------------------------------------------------------

    async def create_interaction(self, record: InteractionRecord, events: list[Event]) -> None:
        async with self.write() as conn:
            await conn.execute(interactions.insert().values(**_row(record)))
            await _insert_events(conn, record.id, 1, events)

    async def append_events(self, batches: Sequence[EventBatch]) -> None:
        rows = [
            {"interaction_id": batch.interaction_id, "seq": batch.first_seq + i, "event": event}
            for batch in batches
            for i, event in enumerate(batch.events)
        ]
        if not rows:
            return
        async with self.write() as conn:
            await conn.execute(interaction_events.insert(), rows)

    async def finish_interaction(
        self,
        interaction_id: str,
        *,
        first_seq: int,
        events: list[Event],
        status: str,
        steps: list[dict[str, Any]],
        usage: dict[str, Any] | None,
        error: dict[str, Any] | None,
        updated_at: datetime,
    ) -> bool:
        async with self.write() as conn:
            # Only a row still running: two replicas closing one interaction (its owner, late,
            # and one that declared the owner lost) never both write a verdict.
            result = await conn.execute(
                interactions.update()
                .where(
                    interactions.c.id == interaction_id,
                    interactions.c.status.not_in(TERMINAL_STATUSES),
                )
                .values(
                    status=status,
                    steps=steps,
                    usage=usage,
                    error=error,
                    updated_at=updated_at,
                    owner=None,
                )
            )
            if not result.rowcount:
                return False
            await _insert_events(conn, interaction_id, first_seq, events)
            return True

    async def get_interaction(
        self, tenant: str, interaction_id: str, now: datetime
    ) -> InteractionRecord | None:
        query = sa.select(interactions).where(
            interactions.c.id == interaction_id,
            interactions.c.tenant == tenant,
            interactions.c.expires_at > now,
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else InteractionRecord(**dict(row))

    async def get_events(self, interaction_id: str, after_seq: int) -> list[Event]:
        query = (
            sa.select(interaction_events.c.event)
            .where(
                interaction_events.c.interaction_id == interaction_id,
                interaction_events.c.seq > after_seq,
            )
            .order_by(interaction_events.c.seq)
        )
        async with self.engine.connect() as conn:
            result = await conn.execute(query)
        return [row[0] for row in result]

    async def list_conversations(
        self, tenant: str, now: datetime, offset: int, limit: int
    ) -> list[InteractionRecord]:
        # An anti-join (no later turn names this one): one pass over the tenant's rows, on
        # SQLite through an automatic index, on PostgreSQL a hash anti-join.
        later = interactions.alias("later")
        query = (
            sa.select(interactions)
            .outerjoin(
                later,
                sa.and_(
                    later.c.previous_interaction_id == interactions.c.id,
                    later.c.tenant == interactions.c.tenant,
                ),
            )
            .where(
                interactions.c.tenant == tenant,
                interactions.c.expires_at > now,
                later.c.id.is_(None),
            )
            .order_by(interactions.c.created_at.desc(), interactions.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [InteractionRecord(**dict(row)) for row in rows]

    async def delete_interaction(self, tenant: str, interaction_id: str) -> bool:
        async with self.write() as conn:
            owned = await conn.execute(
                sa.select(interactions.c.id).where(
                    interactions.c.id == interaction_id, interactions.c.tenant == tenant
                )
            )
            if owned.first() is None:
                return False
            await _delete_ids(conn, [interaction_id])
            return True

    async def unfinished_interactions(self) -> list[InteractionRecord]:
        query = sa.select(interactions).where(interactions.c.status.not_in(TERMINAL_STATUSES))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [InteractionRecord(**dict(row)) for row in rows]

    async def delete_expired(self, now: datetime, limit: int) -> int:
        expired = sa.select(interactions.c.id).where(interactions.c.expires_at <= now).limit(limit)
        async with self.write() as conn:
            result = await conn.execute(expired)
            ids = [row[0] for row in result]
            if ids:
                await _delete_ids(conn, ids)
        return len(ids)

    # --- API keys ----------------------------------------------------------------------------

    async def create_key(self, record: ApiKeyRecord) -> None:
        async with self.write() as conn:
            await conn.execute(api_keys.insert().values(**vars(record)))

    async def list_keys(self) -> list[ApiKeyRecord]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))
            ).mappings()
            return [ApiKeyRecord(**dict(row)) for row in rows]

    async def revoke_key(self, key_id: str, now: datetime) -> bool:
        async with self.write() as conn:
            result = await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return bool(result.rowcount)

    async def find_key(self, key_hash: str) -> ApiKeyRecord | None:
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == key_hash)))
                .mappings()
                .first()
            )
        return None if row is None else ApiKeyRecord(**dict(row))


def _lock_key(name: str) -> int:
    """A PostgreSQL advisory lock key (a signed 64-bit integer) of its own for ``name``."""
    digest = hashlib.sha256(b"gemserve lock\0" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _owner_only(database: str | None) -> None:
    """The SQLite file holds every conversation: readable by its owner only, like the signing
    key. Made before SQLite opens it (its -wal and -shm files copy its mode); an older 0644
    file is tightened."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists():
        for companion in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if companion.exists():
                companion.chmod(0o600)
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA busy_timeout=10000",
        "PRAGMA foreign_keys=ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def _row(record: InteractionRecord) -> dict[str, Any]:
    return dict(vars(record))


async def _insert_events(
    conn: AsyncConnection, interaction_id: str, first_seq: int, events: list[Event]
) -> None:
    if events:
        await conn.execute(
            interaction_events.insert(),
            [
                {"interaction_id": interaction_id, "seq": first_seq + i, "event": event}
                for i, event in enumerate(events)
            ],
        )


async def _delete_ids(conn: AsyncConnection, ids: list[str]) -> None:
    await conn.execute(
        interaction_events.delete().where(interaction_events.c.interaction_id.in_(ids))
    )
    await conn.execute(interactions.delete().where(interactions.c.id.in_(ids)))
