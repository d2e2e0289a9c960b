"""The sweeper: deletes expired interactions, files and abandoned uploads, in bounded batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from gemserve.service.clock import Clock, utc_now
from gemserve.store import Store

log = logging.getLogger("gemserve.retention")

BATCH = 500

Sweep = Callable[[], Awaitable[int]]


async def sweep_once(store: Store, clock: Clock = utc_now) -> int:
    """Delete every expired interaction with its events; returns how many."""
    deleted = 0
    while True:
        batch = await store.delete_expired(clock(), BATCH)
        deleted += batch
        if batch < BATCH:
            return deleted


async def sweep_forever(sweeps: Sequence[tuple[str, Sweep]], interval_seconds: float) -> None:
    while True:
        for what, sweep in sweeps:
            try:
                deleted = await sweep()
                if deleted:
                    log.info("retention: deleted %d expired %s", deleted, what)
            except Exception:
                log.exception("retention sweep of %s failed; retrying at the next interval", what)
        await asyncio.sleep(interval_seconds)
