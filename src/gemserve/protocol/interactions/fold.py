"""The fold of an interaction's events into the Interaction they describe.

The non-streaming response, GET's view of a running interaction and the stored final state
are all this fold applied to the streamed events, so they cannot disagree.
"""

from __future__ import annotations

import json
from typing import Any

from gemserve.protocol.interactions.events import Event


def _arguments(text: str) -> dict[str, Any]:
    """A call's joined arguments; a call cut short (the output ended inside it) has none."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class InteractionFold:
    """Accumulates events into an Interaction dict (the non-streaming response)."""

    def __init__(self) -> None:
        self.interaction: dict[str, Any] = {}
        self._steps: list[dict[str, Any]] = []
        self._texts: dict[int, list[str]] = {}
        self.error: dict[str, Any] | None = None

    def apply(self, event: Event) -> None:
        kind = event["event_type"]
        if kind == "step.delta":
            delta = event["delta"]
            if delta["type"] == "text":
                self._texts[event["index"]].append(delta["text"])
            elif delta["type"] == "thought_summary":
                self._texts[event["index"]].append(delta["content"]["text"])
            elif delta["type"] == "arguments_delta":
                self._texts[event["index"]].append(delta["arguments"])
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
            elif step["type"] == "function_call" and text:
                step["arguments"] = _arguments(text)
            steps.append(step)
        return steps

    def result(self) -> dict[str, Any]:
        out = dict(self.interaction)
        out["steps"] = self.output_steps()
        if self.error is not None:
            out["status"] = "failed"
            out["errors"] = [self.error]
        return out
