"""Helpers of the tool-format tests: text cut at random places, fed to a parser, and the
events read back (argument pieces checked to join to each call's arguments)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from gemserve.engine import EngineEvent, TextDelta, ToolCallArguments, ToolCallEnd, ToolCallStart
from gemserve.engine.tools.base import ToolCallStage


def cut(text: str, rng: random.Random) -> list[str]:
    points = sorted(rng.sample(range(1, len(text)), rng.randint(0, min(25, len(text) - 1))))
    return [text[i:j] for i, j in zip([0, *points], [*points, len(text)], strict=True)]


@dataclass(frozen=True)
class Parsed:
    text: str
    calls: list[tuple[str, str]]  # (name, arguments) of each ToolCallEnd
    events: list[EngineEvent]


def parse(stage: ToolCallStage, chunks: list[str]) -> Parsed:
    events: list[EngineEvent] = []
    for chunk in chunks:
        events += stage.feed(chunk)
    events += stage.flush()
    pieces: dict[int, str] = {}
    started: dict[int, str] = {}
    for event in events:
        if isinstance(event, ToolCallStart):
            assert event.index not in started
            started[event.index] = event.name
        elif isinstance(event, ToolCallArguments):
            assert event.index in started  # no piece before its call started
            pieces[event.index] = pieces.get(event.index, "") + event.text
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    for end in ends:
        assert started[end.index] == end.name
        assert pieces.get(end.index, "") == end.arguments  # the pieces join to the arguments
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return Parsed(text, [(e.name, e.arguments) for e in ends], events)
