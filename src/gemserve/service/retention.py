"""The sweeper: deletes interactions past their retention, in bounded batches."""

from __future__ import annotations

import asyncio
import logging

from gemserve.service.clock import Clock, utc_now
from gemserve.store import Store

log = logging.getLogger("gemserve.retention")

BATCH = 500


async def sweep_once(store: Store, clock: Clock = utc_now) -> int:
    deleted = 0
    while True:
        batch = await store.delete_expired(clock(), BATCH)
        deleted += batch
        if batch < BATCH:
            return deleted


async def sweep_forever(store: Store, interval_seconds: float, clock: Clock = utc_now) -> None:
    while True:
        try:
            deleted = await sweep_once(store, clock)
            if deleted:
                log.info("retention: deleted %d expired interactions", deleted)
        except Exception:
            log.exception("retention sweep failed; retrying at the next interval")
        await asyncio.sleep(interval_seconds)
