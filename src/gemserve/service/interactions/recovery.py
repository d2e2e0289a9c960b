"""Closing the interactions a crash cut short: at start, and whenever a replica is lost.

The row keeps what its stored events say (their fold: the text generated before the crash),
its status becomes ``failed`` with the reason, and the verdict (``error``, then
``interaction.completed``) is appended to the log with ids from ``RECOVERY_SEQ``, so a
resuming client always gets it and no id it saw before the crash is reused.
"""

from __future__ import annotations

import logging
from typing import Any

from gemserve.protocol.common import iso_utc
from gemserve.protocol.interactions.events import RECOVERY_SEQ, EventSequencer
from gemserve.protocol.interactions.fold import InteractionFold
from gemserve.protocol.interactions.views import interaction_header
from gemserve.service.clock import Clock
from gemserve.store import InteractionRecord, Store

log = logging.getLogger("gemserve.interactions")

INTERRUPTED = {
    "code": "INTERNAL",
    "message": "The server stopped while this interaction was being generated.",
}
REPLICA_LOST = {
    "code": "INTERNAL",
    "message": (
        "The replica generating this interaction was lost (it stopped renewing its lease) "
        "before the interaction finished."
    ),
}


async def recover_interrupted(store: Store, clock: Clock) -> int:
    """Close every interaction left unfinished; returns how many."""
    records = await store.unfinished_interactions()
    closed = 0
    for record in records:
        closed += await close_interrupted(store, record, clock)
    return closed


async def close_interrupted(
    store: Store, record: InteractionRecord, clock: Clock, error: dict[str, Any] = INTERRUPTED
) -> bool:
    """Fail one running interaction with ``error`` as its verdict; False if it ended meanwhile
    (its owner finished it, or another replica closed it first)."""
    fold = InteractionFold()
    for event in await store.get_events(record.id, 0):
        fold.apply(event)
    now = clock()
    sequencer = EventSequencer(record.id, next_seq=RECOVERY_SEQ)
    completed: dict[str, Any] = {
        **interaction_header(record),
        "status": "failed",
        "updated": iso_utc(now),
    }
    verdict = [sequencer.error(error), sequencer.completed(completed)]
    return await store.finish_interaction(
        record.id,
        first_seq=RECOVERY_SEQ,
        events=verdict,
        status="failed",
        steps=fold.output_steps(),
        usage=None,
        error=error,
        updated_at=now,
    )
