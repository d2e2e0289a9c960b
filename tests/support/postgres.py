"""A PostgreSQL database of a test session's own, as tests/store's conftest makes one: on
127.0.0.1:5432 (trust auth; GEMSERVE_TEST_POSTGRES_URL overrides the server), created fresh
and dropped at the end. There is no silent skip: without PostgreSQL these tests fail."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator

import asyncpg  # type: ignore[import-untyped]
import pytest

from gemserve.store import SqlStore
from gemserve.store.schema import metadata

# A fixture's factory of started stores on one database (one per replica a test plays).
MakeStore = Callable[[], Awaitable[SqlStore]]

ADMIN_URL = os.environ.get(
    "GEMSERVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _run_admin(statement: str) -> None:
    """Outside the test event loop (sync fixtures cannot await)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _admin(statement)).result()


async def clear(store: SqlStore) -> None:
    """Delete every row (the next test starts on empty tables)."""
    async with store.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(table.delete())


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """The plain URL (postgresql://…) of a new empty database, dropped afterwards; a test
    fails (never skips) when PostgreSQL is not reachable."""
    name = "gemserve_test_" + secrets.token_hex(4)
    try:
        _run_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}")
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        _run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def async_url(url: str) -> str:
    """The SQLAlchemy URL of a plain postgresql:// one (the asyncpg driver)."""
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)
