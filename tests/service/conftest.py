"""What the service tests share: an SQLite store in tmp_path (the services over scripted
engines are built by tests/support/service.py; never evidence that generation works:
tests/engine runs the real one), and stores on one PostgreSQL database for tests that play
several replicas."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gemserve.store import SqlStore
from tests.support.postgres import MakeStore, async_url, clear, fresh_database


@pytest.fixture
async def store(tmp_path: Path, migrated_database: Path) -> AsyncIterator[SqlStore]:
    """On a copy of the session's migrated database (tests/store runs the migrations)."""
    path = tmp_path / "store.db"
    shutil.copy2(migrated_database, path)
    sql_store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await sql_store.start()
    yield sql_store
    await sql_store.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session (tests/support/postgres.py)."""
    with fresh_database() as url:
        yield async_url(url)


@pytest.fixture
async def postgres_stores(postgres_url: str) -> AsyncIterator[MakeStore]:
    """Makes started stores on the session's PostgreSQL database, one per replica a test
    plays (each with its own connection pool); the tables are emptied afterwards."""
    made: list[SqlStore] = []

    async def make() -> SqlStore:
        store = SqlStore(postgres_url)
        await store.start()
        made.append(store)
        return store

    yield make
    if made:
        await clear(made[0])
    for store in made:
        await store.close()
