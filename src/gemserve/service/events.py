"""Interaction stream events and the fold that turns them into the final Interaction.

Events are plain dicts in wire shape, each carrying ``event_type``, a mirrored ``type`` (the
JS doc example reads ``event.type``) and an ``event_id``. The non-streaming response is the
fold of the very same events, so both paths cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from gemserve.engine import FinishReason

STATUS_BY_FINISH = {
    FinishReason.STOP: "completed",
    FinishReason.MAX_TOKENS: "incomplete",
    FinishReason.CONTEXT: "incomplete",
    FinishReason.CANCELLED: "cancelled",
    FinishReason.ERROR: "failed",
}


class EventSequencer:
    """Stamps events with their type fields and monotonically increasing ids."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 1

    def make(self, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        event_id = f"evt_{self._next:06d}"
        self._next += 1
        return {"event_type": event_type, "type": event_type, "event_id": event_id, **payload}


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
        elif kind == "step.start":
            self._steps.append(dict(event["step"]))
            self._texts[event["index"]] = []
        elif kind in ("interaction.created", "interaction.completed"):
            self.interaction.update(event["interaction"])
        elif kind == "interaction.status_update":
            self.interaction["status"] = event["status"]
        elif kind == "error":
            self.error = event["error"]

    def result(self) -> dict[str, Any]:
        steps = []
        for index, step in enumerate(self._steps):
            if step["type"] == "model_output":
                step["content"] = [{"type": "text", "text": "".join(self._texts.get(index, []))}]
            steps.append(step)
        out = dict(self.interaction)
        out["steps"] = steps
        if self.error is not None:
            out["status"] = "failed"
            out["errors"] = [self.error]
        return out
