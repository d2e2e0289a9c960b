"""A database that is not there (PostgreSQL stopped, a lost connection) is a 503 UNAVAILABLE
with Retry-After on every surface, in its own envelope, never a 500; a full disk is a 507.
The classification lives in one place (gemserve.store.errors); the live outage is in
tests/faults/test_postgres_outage.py."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
from typing import Any
from unittest import mock

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy.exc as sa_exc

from gemserve.store import SqlStore
from gemserve.store.errors import is_storage_full, is_store_unavailable
from gemserve.store.sql_files import SqlFileStore
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi


def refused() -> sa_exc.OperationalError:
    orig = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 5432)")
    return sa_exc.OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    "exc",
    [
        refused(),
        sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        sa_exc.DBAPIError("SELECT 1", {}, asyncpg.exceptions.CannotConnectNowError("starting up")),
        sa_exc.DBAPIError("SELECT 1", {}, asyncpg.exceptions.AdminShutdownError("terminating")),
        sa_exc.DBAPIError("x", {}, asyncpg.exceptions.ConnectionDoesNotExistError("gone")),
        sa_exc.TimeoutError("QueuePool limit reached"),
        ConnectionResetError(errno.ECONNRESET, "reset"),
    ],
    ids=["refused", "closed", "starting", "shutdown", "lost", "pool", "reset"],
)
def test_connection_failures_are_unavailable(exc: BaseException) -> None:
    assert is_store_unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        sa_exc.ProgrammingError("SELECT", {}, Exception("syntax error")),
        ValueError("a bug"),
        FileNotFoundError(errno.ENOENT, "no such file"),
    ],
)
def test_bugs_and_bad_rows_are_not_unavailable(exc: BaseException) -> None:
    assert not is_store_unavailable(exc)
    assert not is_storage_full(exc)


def test_a_full_disk_is_storage_full_not_unavailable() -> None:
    assert is_storage_full(OSError(errno.ENOSPC, "No space left on device"))
    sqlite_full = sa_exc.OperationalError("INSERT", {}, Exception("database or disk is full"))
    assert is_storage_full(sqlite_full)


async def test_a_read_during_an_outage_is_503_with_retry_after(api: InProcessApi) -> None:
    created = (await api.create()).json()
    with mock.patch.object(SqlStore, "get_interaction", side_effect=refused()):
        response = await api.get(created["id"])
    assert_envelope(response, 503, "UNAVAILABLE", "database is unavailable")
    assert response.headers["retry-after"] == "1"
    assert (await api.get(created["id"])).status_code == 200  # and back without a restart


async def test_a_create_during_an_outage_is_503_with_retry_after(api: InProcessApi) -> None:
    with mock.patch.object(SqlStore, "write", side_effect=refused()):
        response = await api.create()
    assert_envelope(response, 503, "UNAVAILABLE")
    assert response.headers["retry-after"] == "1"


async def test_files_during_an_outage_is_503_with_retry_after(api: InProcessApi) -> None:
    with mock.patch.object(SqlFileStore, "list_files", side_effect=refused()):
        response = await api.client.get("/v1beta/files", headers=api.headers)
    assert_envelope(response, 503, "UNAVAILABLE")
    assert response.headers["retry-after"] == "1"


async def test_a_full_disk_is_507_with_retry_after(api: InProcessApi) -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    with mock.patch.object(SqlFileStore, "list_files", side_effect=full):
        response = await api.client.get("/v1beta/files", headers=api.headers)
    assert_envelope(response, 507, "RESOURCE_EXHAUSTED", "storage is full")
    assert response.headers["retry-after"] == "60"


async def test_another_os_error_is_still_a_500(api: InProcessApi) -> None:
    missing = FileNotFoundError(errno.ENOENT, "/secret/path")
    with mock.patch.object(SqlFileStore, "list_files", side_effect=missing):
        response = await api.client.get("/v1beta/files", headers=api.headers)
    assert_envelope(response, 500, "INTERNAL")
    assert "/secret/path" not in response.text


async def test_a_final_write_during_an_outage_is_retried_until_it_lands(
    api: InProcessApi,
) -> None:
    """Regression: a generation that ended while PostgreSQL was down logged "could not store
    the final state" once and left its row ``in_progress`` for good (and its stream open)."""
    original = SqlStore.finish_interaction
    calls = 0

    async def flaky(self: SqlStore, *args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise refused()
        return await original(self, *args, **kwargs)

    with mock.patch.object(SqlStore, "finish_interaction", flaky):
        created = await api.create()
        assert created.status_code == 200, created.text
        iid = created.json()["id"]
        assert created.json()["status"] == "completed"
        # Answered from memory while the write waits for the store.
        assert (await api.get(iid)).json()["status"] == "completed"
        deadline = asyncio.get_running_loop().time() + 10
        while calls < 3:
            assert asyncio.get_running_loop().time() < deadline, calls
            await asyncio.sleep(0.1)
    db = api.settings.data_dir / "gemserve.db"
    for _ in range(50):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            row = conn.execute("select status from interactions where id = ?", (iid,)).fetchone()
        if row == ("completed",):
            break
        await asyncio.sleep(0.1)
    assert row == ("completed",)
