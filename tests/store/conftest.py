"""The store backends under test: SQLite in a temp dir, and a fresh PostgreSQL database.

PostgreSQL runs on 127.0.0.1:5432 (trust auth) on developer machines and in CI; each session
creates its own database and drops it at the end. GEMSERVE_TEST_POSTGRES_URL overrides the
server; there is no silent skip: without PostgreSQL these tests fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from gemserve.store import SqlStore

ADMIN_URL = os.environ.get(
    "GEMSERVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def run_admin(statement: str) -> None:
    """Run outside the test event loop (sync fixtures cannot await)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _admin(statement)).result()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    name = "gemserve_test_" + secrets.token_hex(4)
    try:
        run_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}")
    yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        base = request.getfixturevalue("postgres_url")
        url = base.replace("postgresql://", "postgresql+asyncpg://", 1)
    sql_store = SqlStore(url)
    await sql_store.start()
    yield sql_store
    if request.param == "postgresql":
        async with sql_store.engine.begin() as conn:
            from gemserve.store.schema import metadata

            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
    await sql_store.close()
