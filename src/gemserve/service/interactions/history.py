"""Rebuilding a conversation from the stored chain of ``previous_interaction_id`` links."""

from __future__ import annotations

import re
from datetime import datetime

from gemserve.errors import FailedPrecondition, InvalidArgument, NotFound
from gemserve.protocol.interactions.status import TERMINAL_STATUSES
from gemserve.store import InteractionRecord, Store

INTERACTION_ID = re.compile(r"^v1_[0-9a-f]{24}$")


def check_interaction_id(value: str, field: str = "id") -> str:
    if not INTERACTION_ID.match(value):
        raise InvalidArgument(f"Invalid value at '{field}': {value!r} is not an interaction id.")
    return value


async def load_chain(
    store: Store, tenant: str, last_id: str, now: datetime, max_turns: int
) -> list[InteractionRecord]:
    """The interactions from the first turn to ``last_id``, oldest first."""
    chain: list[InteractionRecord] = []
    next_id: str | None = last_id
    while next_id is not None:
        if len(chain) >= max_turns:
            raise InvalidArgument(
                f"The conversation is longer than {max_turns} turns; start a new one or send "
                "the history as input steps."
            )
        record = await store.get_interaction(tenant, next_id, now)
        if record is None:
            raise NotFound(f"Interaction {next_id!r} was not found.")
        if record.status not in TERMINAL_STATUSES:
            raise FailedPrecondition(
                f"Interaction {next_id!r} is still {record.status}; wait for it to finish."
            )
        chain.append(record)
        next_id = record.previous_interaction_id
    chain.reverse()
    return chain
