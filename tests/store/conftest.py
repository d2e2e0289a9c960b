"""The store backends under test: SQLite in a temp dir, and a fresh PostgreSQL database.

PostgreSQL runs on 127.0.0.1:5432 (trust auth) on developer machines and in CI; each session
creates its own database and drops it at the end. GEMSERVE_TEST_POSTGRES_URL overrides the
server; there is no silent skip: without PostgreSQL these tests fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gemserve.store import SqlStore
from tests.support.postgres import async_url, fresh_database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        base = request.getfixturevalue("postgres_url")
        url = async_url(base)
    sql_store = SqlStore(url)
    await sql_store.start()
    yield sql_store
    if request.param == "postgresql":
        async with sql_store.engine.begin() as conn:
            from gemserve.store.schema import metadata

            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
    await sql_store.close()
