"""Server-sent events as clients parse them, and the invariants of an interaction stream."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The event order of a plain-text interaction stream (wire-protocol.md §3.4).
STREAM_ORDER = re.compile(
    r"interaction\.created interaction\.status_update step\.start (step\.delta )+"
    r"step\.stop interaction\.completed"
)


@dataclass
class SseEvent:
    event: str | None
    id: str | None
    data: dict[str, Any]


def parse_sse(body: str) -> list[SseEvent]:
    """Parse an SSE body strictly: every data-bearing block must hold one JSON object."""
    events = []
    for block in re.split(r"\r?\n\r?\n", body):
        fields: dict[str, list[str]] = {}
        # Only CR and LF end a line (str.splitlines also splits at U+2028, NEL, \x1c…,
        # which JSON leaves unescaped inside a string).
        for line in re.split(r"\r\n|\r|\n", block):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        if "data" not in fields:
            assert not fields, f"SSE block without data: {block!r}"
            continue
        raw = "\n".join(fields["data"])
        if raw == "[DONE]":
            continue
        data = json.loads(raw)
        assert isinstance(data, dict), f"SSE data is not a JSON object: {raw!r}"
        events.append(
            SseEvent(
                event=fields.get("event", [None])[-1],
                id=fields.get("id", [None])[-1],
                data=data,
            )
        )
    return events


def check_stream_events(events: Sequence[Mapping[str, Any]]) -> str:
    """Assert the documented event order and fields; return the streamed text."""
    types = [e["event_type"] for e in events]
    assert STREAM_ORDER.fullmatch(" ".join(types)), f"unexpected event order: {types}"
    ids = [e.get("event_id") for e in events]
    assert all(isinstance(i, str) and i for i in ids), f"events without event_id: {ids}"
    assert len(set(ids)) == len(ids), f"duplicate event ids: {ids}"
    for event in events:
        assert event.get("type") == event["event_type"], event
    created, status_update, start = events[0], events[1], events[2]
    stop, completed = events[-2], events[-1]
    interaction_id = created["interaction"]["id"]
    assert interaction_id
    assert created["interaction"]["status"] == "in_progress"
    assert status_update["interaction_id"] == interaction_id
    assert status_update["status"] == "in_progress"
    assert start["step"]["type"] == "model_output"
    assert completed["interaction"]["id"] == interaction_id
    assert completed["interaction"]["status"] in ("completed", "incomplete")
    check_usage(completed["interaction"]["usage"])
    deltas = events[3:-2]
    for delta in deltas:
        assert delta["index"] == start["index"] == stop["index"]
        assert delta["delta"]["type"] == "text"
        assert isinstance(delta["delta"]["text"], str)
    text = "".join(d["delta"]["text"] for d in deltas)
    # A delta carries at least one token's text, so there are no more deltas than tokens.
    assert len(deltas) <= completed["interaction"]["usage"]["total_output_tokens"] + 1
    return text


def check_usage(usage: Mapping[str, Any]) -> None:
    """The Usage invariants every interaction must satisfy."""
    inp = usage["total_input_tokens"]
    out = usage["total_output_tokens"]
    thought = usage.get("total_thought_tokens") or 0
    assert isinstance(inp, int)
    assert isinstance(out, int)
    assert inp > 0
    assert out >= 0
    assert usage["total_tokens"] == inp + out + thought
    # Cached (reused) prompt tokens are part of the input, never more than it.
    assert 0 <= (usage.get("total_cached_tokens") or 0) <= inp
    assert _by_modality(usage.get("input_tokens_by_modality")) == {"text": inp}
    if usage.get("output_tokens_by_modality") is not None:
        assert _by_modality(usage["output_tokens_by_modality"]) == {"text": out}


def _by_modality(items: Iterable[Mapping[str, Any]] | None) -> dict[str, int]:
    return {item["modality"]: item["tokens"] for item in items or ()}
