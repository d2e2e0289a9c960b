"""The sweeper: deletes expired interactions, files and abandoned uploads, in bounded batches.

Replicas sharing a database sweep one at a time: a round runs only where ``exclusive`` (the
store's) says this replica holds the sweeper's lock; the others skip that round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from gemserve.service.clock import Clock, utc_now
from gemserve.store import Store

log = logging.getLogger("gemserve.retention")

BATCH = 500

Sweep = Callable[[], Awaitable[int]]
# SqlStore.exclusive: whether this caller alone does the named work until the block ends.
Exclusive = Callable[[str], AbstractAsyncContextManager[bool]]
LOCK_NAME = "retention sweep"


async def sweep_once(store: Store, clock: Clock = utc_now) -> int:
    """Delete every expired interaction with its events; returns how many."""
    deleted = 0
    while True:
        batch = await store.delete_expired(clock(), BATCH)
        deleted += batch
        if batch < BATCH:
            return deleted


async def sweep_forever(
    sweeps: Sequence[tuple[str, Sweep]],
    interval_seconds: float,
    exclusive: Exclusive | None = None,
) -> None:
    while True:
        if exclusive is None:
            await sweep_round(sweeps)
        else:
            try:
                async with exclusive(LOCK_NAME) as alone:
                    if alone:
                        await sweep_round(sweeps)
                    else:
                        log.debug("retention: another replica is sweeping; skipping this round")
            except Exception:
                log.exception("retention: the sweeper's lock failed; retrying at the next interval")
        await asyncio.sleep(interval_seconds)


async def sweep_round(sweeps: Sequence[tuple[str, Sweep]]) -> None:
    for what, sweep in sweeps:
        try:
            deleted = await sweep()
            if deleted:
                log.info("retention: deleted %d expired %s", deleted, what)
        except Exception:
            log.exception("retention sweep of %s failed; retrying at the next interval", what)
