"""Interaction stream events and the fold that turns them into the final Interaction.

Events are plain dicts in wire shape, each carrying ``event_type``, a mirrored ``type`` (the
JS doc example reads ``event.type``) and an ``event_id``. The non-streaming response is the
fold of the very same events, so both paths cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from gemserve.engine import Finished, FinishReason, GenerationStream, TextDelta, ThoughtDelta
from gemserve.errors import InvalidArgument
from gemserve.protocol.interactions import usage_dict
from gemserve.service.clock import Clock, iso_utc
from gemserve.service.signatures import SignedThought, ThoughtSigner
from gemserve.service.usage import InputAccounting

STATUS_BY_FINISH = {
    FinishReason.STOP: "completed",
    FinishReason.MAX_TOKENS: "incomplete",
    FinishReason.CONTEXT: "incomplete",
    FinishReason.CANCELLED: "cancelled",
    FinishReason.ERROR: "failed",
}


TERMINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled"})

_EVENT_ID = re.compile(r"^evt_([0-9a-f]{8})_([0-9]{1,9})$")


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

    def __init__(self, interaction_id: str) -> None:
        self._tag = event_tag(interaction_id)
        self.next_seq = 1

    def make(self, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        event_id = f"evt_{self._tag}_{self.next_seq:06d}"
        self.next_seq += 1
        return {"event_type": event_type, "type": event_type, "event_id": event_id, **payload}


class ThoughtSealer:
    """Signs a finished thought (for its ``thought_signature`` delta) and says whether the
    thought text is returned as the step's summary."""

    def __init__(
        self, signer: ThoughtSigner, model_id: str, interaction_id: str, *, summaries: bool
    ) -> None:
        self._signer = signer
        self._model_id = model_id
        self._interaction_id = interaction_id
        self.summaries = summaries

    def seal(self, thought: str) -> str:
        return self._signer.sign(SignedThought(thought, self._model_id, self._interaction_id))


async def generation_events(
    header: dict[str, Any],
    stream: GenerationStream,
    sequencer: EventSequencer,
    clock: Clock,
    accounting: InputAccounting | None = None,
    thoughts: ThoughtSealer | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The events of one model turn, from ``interaction.created`` to ``interaction.completed``:
    a ``thought`` step when the model thought, then the ``model_output`` step (always last)."""
    make = sequencer.make
    interaction_id = header["id"]
    try:
        yield make("interaction.created", {"interaction": {**header, "status": "in_progress"}})
        yield make(
            "interaction.status_update", {"interaction_id": interaction_id, "status": "in_progress"}
        )
        index = -1
        output_open = False
        thought: list[str] | None = None  # the open thought step's text
        finished: Finished | None = None
        async for event in stream:
            if isinstance(event, ThoughtDelta):
                if thought is None and not output_open:
                    index += 1
                    thought = []
                    yield make("step.start", {"index": index, "step": {"type": "thought"}})
                if thought is None:
                    continue  # thought after the answer began: not part of this turn's steps
                thought.append(event.text)
                if thoughts is None or thoughts.summaries:
                    content = {"type": "text", "text": event.text}
                    yield make(
                        "step.delta",
                        {"index": index, "delta": {"type": "thought_summary", "content": content}},
                    )
            elif isinstance(event, TextDelta):
                if not output_open:
                    if thought is not None:
                        for closing in _close_thought(make, index, thought, thoughts):
                            yield closing
                        thought = None
                    index += 1
                    output_open = True
                    yield make("step.start", {"index": index, "step": {"type": "model_output"}})
                yield make(
                    "step.delta", {"index": index, "delta": {"type": "text", "text": event.text}}
                )
            else:
                finished = event
        assert finished is not None
        if thought is not None:
            for closing in _close_thought(make, index, thought, thoughts):
                yield closing
        if not output_open:
            # The answer is the last step even when it is empty (the docs read steps[-1]).
            index += 1
            yield make("step.start", {"index": index, "step": {"type": "model_output"}})
        yield make("step.stop", {"index": index})
        usage = usage_dict(
            finished.prompt_tokens,
            finished.output_tokens - finished.thought_tokens,
            finished.thought_tokens,
            cached=finished.cached_tokens,
            input_by_modality=(accounting or InputAccounting()).by_modality(finished),
        )
        status = STATUS_BY_FINISH[finished.reason]
        if finished.error is not None:
            yield make("error", {"error": {"code": "INTERNAL", "message": "Generation failed."}})
        yield make(
            "interaction.completed",
            {
                "interaction": {
                    **header,
                    "status": status,
                    "updated": iso_utc(clock()),
                    "usage": usage,
                }
            },
        )
    finally:
        # Closing this generator early must stop generation.
        stream.cancel()


def _close_thought(
    make: Callable[[str, dict[str, Any]], dict[str, Any]],
    index: int,
    thought: list[str],
    thoughts: ThoughtSealer | None,
) -> list[dict[str, Any]]:
    events = []
    if thoughts is not None:
        signature = thoughts.seal("".join(thought).strip())
        delta = {"type": "thought_signature", "signature": signature}
        events.append(make("step.delta", {"index": index, "delta": delta}))
    events.append(make("step.stop", {"index": index}))
    return events


def next_event(log: list[dict[str, Any]], index: int) -> tuple[dict[str, Any], int]:
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
    if kind not in ("text", "thought_summary"):
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
    merged = {"type": "thought_summary", "content": {"type": "text", "text": text}}
    return {**log[end - 1], "delta": merged}, end


def _delta_text(delta: dict[str, Any]) -> str:
    return str(delta["text"] if delta["type"] == "text" else delta["content"]["text"])


class InteractionFold:
    """Accumulates events into an Interaction dict (the non-streaming response)."""

    def __init__(self) -> None:
        self.interaction: dict[str, Any] = {}
        self._steps: list[dict[str, Any]] = []
        self._texts: dict[int, list[str]] = {}
        self.error: dict[str, Any] | None = None

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["event_type"]
        if kind == "step.delta":
            delta = event["delta"]
            if delta["type"] == "text":
                self._texts[event["index"]].append(delta["text"])
            elif delta["type"] == "thought_summary":
                self._texts[event["index"]].append(delta["content"]["text"])
            elif delta["type"] == "thought_signature":
                self._steps[event["index"]]["signature"] = delta["signature"]
        elif kind == "step.start":
            self._steps.append(dict(event["step"]))
            self._texts[event["index"]] = []
        elif kind in ("interaction.created", "interaction.completed"):
            self.interaction.update(event["interaction"])
        elif kind == "interaction.status_update":
            self.interaction["status"] = event["status"]
        elif kind == "error":
            self.error = event["error"]

    @property
    def status(self) -> str:
        return str(self.interaction.get("status", "in_progress"))

    def output_steps(self) -> list[dict[str, Any]]:
        steps = []
        for index, step in enumerate(self._steps):
            step = dict(step)
            text = "".join(self._texts.get(index, []))
            if step["type"] == "model_output":
                step["content"] = [{"type": "text", "text": text}]
            elif step["type"] == "thought" and text.strip():
                step["summary"] = [{"type": "text", "text": text.strip()}]
            steps.append(step)
        return steps

    def result(self) -> dict[str, Any]:
        out = dict(self.interaction)
        out["steps"] = self.output_steps()
        if self.error is not None:
            out["status"] = "failed"
            out["errors"] = [self.error]
        return out
