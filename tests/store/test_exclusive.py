"""``SqlStore.exclusive``: one holder at a time across every process on a PostgreSQL database
(a session advisory lock); SQLite, which one process owns, always says yes."""

from __future__ import annotations

import asyncio

import pytest

from gemserve.store import SqlStore


async def test_one_holder_at_a_time(store: SqlStore) -> None:
    shared = not store.url.startswith("sqlite")
    other = SqlStore(store.url)  # another replica: a pool of its own
    await other.start()
    try:
        async with store.exclusive("sweep") as first:
            assert first
            async with other.exclusive("sweep") as second, store.exclusive("sweep") as third:
                assert (second, third) == (not shared, not shared)
            async with other.exclusive("another job") as unrelated:
                assert unrelated
        async with other.exclusive("sweep") as after:
            assert after
    finally:
        await other.close()


async def test_a_holder_cancelled_mid_round_lets_go(store: SqlStore) -> None:
    entered = asyncio.Event()

    async def hold() -> None:
        async with store.exclusive("sweep") as alone:
            assert alone
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with store.exclusive("sweep") as alone:
        assert alone
