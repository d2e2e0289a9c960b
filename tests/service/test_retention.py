"""The sweeper on replicas sharing one PostgreSQL: one sweeps a round, the others skip it."""

from __future__ import annotations

import asyncio

from gemserve.service.retention import LOCK_NAME, Sweep, sweep_forever
from gemserve.store import SqlStore
from tests.support.postgres import MakeStore
from tests.support.wait import wait_for, wait_for_async


async def test_one_replica_sweeps_a_round_at_a_time(postgres_stores: MakeStore) -> None:
    stores = [await postgres_stores(), await postgres_stores()]
    rounds: list[int] = []
    release = asyncio.Event()

    def sweeps(replica: int) -> list[tuple[str, Sweep]]:
        async def sweep() -> int:
            rounds.append(replica)
            await release.wait()
            return 0

        return [("things", sweep)]

    tasks = [
        asyncio.create_task(sweep_forever(sweeps(i), 3600, store.exclusive))
        for i, store in enumerate(stores)
    ]
    try:
        await wait_for(lambda: rounds, what="a sweep round to start")
        await asyncio.sleep(0.3)
        assert len(rounds) == 1  # the other replica found the lock taken, and skipped its round
        other = stores[1 - rounds[0]]
        async with other.exclusive(LOCK_NAME) as alone:
            assert not alone
        release.set()

        # Released after the round: the next round, on any replica, takes it.
        async def free(store: SqlStore = other) -> bool:
            async with store.exclusive(LOCK_NAME) as alone:
                return alone

        await wait_for_async(free, seconds=5, what="the lock to be released")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
