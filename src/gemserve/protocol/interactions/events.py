"""Interaction stream events on the wire: ids, the sequencer that stamps them, the builders of
each event shape, and the merging of waiting text deltas for a follower that fell behind.

Events are plain dicts in wire shape, each carrying ``event_type``, a mirrored ``type`` (the
JS doc example reads ``event.type``) and an ``event_id`` ``evt_<8 hex of the interaction
id>_<seq>``, so a ``last_event_id`` from another interaction is recognised and refused.
"""

from __future__ import annotations

import re
from typing import Any

from gemserve.errors import InvalidArgument

Event = dict[str, Any]

_EVENT_ID = re.compile(r"^evt_([0-9a-f]{8})_([0-9]{1,9})$")

# Where the events that close an interaction cut short by a crash are numbered from. The run
# streamed events before the journal stored them, so a client may have seen ids past the
# stored end; numbering the verdict far above any id a run reaches means an id, once sent,
# never names another event, and still sorts after everything the client saw.
RECOVERY_SEQ = 900_000_000


def event_tag(interaction_id: str) -> str:
    """Eight hex digits of the interaction id, so an event id names its interaction."""
    return interaction_id[-8:]


def parse_event_id(event_id: str, interaction_id: str) -> int:
    """The sequence number of ``event_id``; 400 if malformed or from another interaction."""
    match = _EVENT_ID.match(event_id)
    if match is None:
        raise InvalidArgument(f"Invalid value at 'last_event_id': {event_id!r} is not an event id.")
    if match.group(1) != event_tag(interaction_id):
        raise InvalidArgument(
            f"Invalid value at 'last_event_id': {event_id!r} belongs to another interaction."
        )
    return int(match.group(2))


class EventSequencer:
    """Stamps events with their type fields and ids ``evt_<tag>_<seq>``, seq counting from 1."""

    __slots__ = ("_tag", "next_seq")

    def __init__(self, interaction_id: str, next_seq: int = 1) -> None:
        self._tag = event_tag(interaction_id)
        self.next_seq = next_seq

    def make(self, event_type: str, payload: dict[str, Any]) -> Event:
        event_id = f"evt_{self._tag}_{self.next_seq:06d}"
        self.next_seq += 1
        return {"event_type": event_type, "type": event_type, "event_id": event_id, **payload}

    # ----- the event shapes --------------------------------------------------------------------

    def created(self, interaction: dict[str, Any]) -> Event:
        return self.make("interaction.created", {"interaction": interaction})

    def status_update(self, interaction_id: str, status: str) -> Event:
        return self.make(
            "interaction.status_update", {"interaction_id": interaction_id, "status": status}
        )

    def step_start(self, index: int, step: dict[str, Any]) -> Event:
        return self.make("step.start", {"index": index, "step": step})

    def text_delta(self, index: int, text: str) -> Event:
        return self.make("step.delta", {"index": index, "delta": {"type": "text", "text": text}})

    def thought_summary_delta(self, index: int, text: str) -> Event:
        delta = {"type": "thought_summary", "content": {"type": "text", "text": text}}
        return self.make("step.delta", {"index": index, "delta": delta})

    def thought_signature_delta(self, index: int, signature: str) -> Event:
        delta = {"type": "thought_signature", "signature": signature}
        return self.make("step.delta", {"index": index, "delta": delta})

    def arguments_delta(self, index: int, text: str) -> Event:
        delta = {"type": "arguments_delta", "arguments": text}
        return self.make("step.delta", {"index": index, "delta": delta})

    def step_stop(self, index: int) -> Event:
        return self.make("step.stop", {"index": index})

    def error(self, error: dict[str, Any]) -> Event:
        return self.make("error", {"error": error})

    def completed(self, interaction: dict[str, Any]) -> Event:
        return self.make("interaction.completed", {"interaction": interaction})


GENERATION_FAILED = {"code": "INTERNAL", "message": "Generation failed."}


def next_event(log: list[Event], index: int) -> tuple[Event, int]:
    """The event at ``index``, with the text deltas already waiting behind it merged in.

    A client that keeps up gets one ``step.delta`` per decoded piece; one that falls behind
    (or replays) gets the backlog in fewer events, so parsing cannot throttle it further. The
    merged event keeps the last piece's ``event_id``, so resuming after it loses nothing.
    """
    event = log[index]
    index += 1
    if event["event_type"] != "step.delta":
        return event, index
    kind = event["delta"]["type"]
    if kind not in ("text", "thought_summary", "arguments_delta"):
        return event, index
    end = index
    while (
        end < len(log)
        and log[end]["event_type"] == "step.delta"
        and log[end]["index"] == event["index"]
        and log[end]["delta"]["type"] == kind
    ):
        end += 1
    if end == index:
        return event, index
    text = "".join(_delta_text(e["delta"]) for e in log[index - 1 : end])
    if kind == "text":
        return {**log[end - 1], "delta": {"type": "text", "text": text}}, end
    if kind == "arguments_delta":
        return {**log[end - 1], "delta": {"type": kind, "arguments": text}}, end
    merged = {"type": "thought_summary", "content": {"type": "text", "text": text}}
    return {**log[end - 1], "delta": merged}, end


def _delta_text(delta: dict[str, Any]) -> str:
    kind = delta["type"]
    if kind == "arguments_delta":
        return str(delta["arguments"])
    return str(delta["text"] if kind == "text" else delta["content"]["text"])
