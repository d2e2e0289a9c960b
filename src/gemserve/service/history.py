"""Rebuilding a conversation from the stored chain of ``previous_interaction_id`` links."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from gemserve.errors import FailedPrecondition, InvalidArgument, NotFound
from gemserve.protocol.interactions import InputStep, ModelOutputStep, ThoughtStep, parse_input
from gemserve.service.events import TERMINAL_STATUSES
from gemserve.store import InteractionRecord, Store

INTERACTION_ID = re.compile(r"^v1_[0-9a-f]{24}$")

HistoryStep = InputStep


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


def history_steps(chain: list[InteractionRecord]) -> list[HistoryStep]:
    """Earlier inputs, thoughts and model outputs, in order (system instructions are not
    inherited)."""
    steps: list[HistoryStep] = []
    for record in chain:
        steps.extend(parse_input(record.input, max_parts=1_000_000))
        steps.extend(_output_steps(record.steps))
    return steps


def _output_steps(raw: list[dict[str, Any]]) -> list[HistoryStep]:
    out: list[HistoryStep] = []
    for step in raw:
        if step.get("type") == "model_output" and step.get("content"):
            out.append(ModelOutputStep.model_validate(step))
        elif step.get("type") == "thought" and step.get("signature"):
            out.append(ThoughtStep.model_validate(step))
    return out
