"""The tool-call parser on text cut at every possible place: text before a call is never
lost, no part of a marker reaches a text delta, and argument pieces join to the arguments."""

from __future__ import annotations

import json
import random

import pytest

from gemserve.engine import EngineEvent, TextDelta, ToolCallArguments, ToolCallEnd, ToolCallStart
from gemserve.engine.tools.parser import ToolCallParser

ARRAY = (
    'Sure.<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Paris {x}", '
    '"n": [1, {"a": "}\\""}]}}, {"name": "b", "arguments": {}}\n]</tool_call>'
)
BLOCKS = (
    '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
    '<tool_call>\n{"name": "b", "arguments": {"y": "é"}}\n</tool_call>'
)


def parse(chunks: list[str]) -> list[EngineEvent]:
    parser = ToolCallParser("<tool_call>", "</tool_call>")
    events: list[EngineEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.flush()


def cut(text: str, rng: random.Random) -> list[str]:
    points = sorted(rng.sample(range(1, len(text)), rng.randint(0, min(25, len(text) - 1))))
    return [text[i:j] for i, j in zip([0, *points], [*points, len(text)], strict=True)]


def joined(events: list[EngineEvent]) -> dict[int, str]:
    out: dict[int, str] = {}
    for event in events:
        if isinstance(event, ToolCallArguments):
            out[event.index] = out.get(event.index, "") + event.text
    return out


@pytest.mark.parametrize("seed", range(50))
def test_an_array_of_calls_cut_anywhere(seed: int) -> None:
    events = parse(cut(ARRAY, random.Random(seed)))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Sure."
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert [e.name for e in ends] == ["get_weather", "b"]
    arguments = joined(events)
    assert json.loads(arguments[0]) == {"city": "Paris {x}", "n": [1, {"a": '}"'}]}
    assert ends[0].arguments == arguments[0]
    assert json.loads(arguments[1]) == {}
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [s.index for s in starts] == [0, 1]


@pytest.mark.parametrize("seed", range(20))
def test_hermes_blocks_cut_anywhere(seed: int) -> None:
    events = parse(cut(BLOCKS, random.Random(seed)))
    assert not [e for e in events if isinstance(e, TextDelta)]
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert [(e.name, json.loads(e.arguments)) for e in ends] == [("a", {"x": 1}), ("b", {"y": "é"})]


def test_a_near_miss_of_the_marker_is_text() -> None:
    events = parse(["hello <tool", "_cal", "l is not", " here <tool_c"])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == (
        "hello <tool_call is not here <tool_c"
    )


def test_keys_out_of_order_are_read_whole() -> None:
    events = parse(['<tool_call>[{"arguments": {"q": 1}, "name": "z"}]</tool_call>'])
    assert [type(e) for e in events] == [ToolCallStart, ToolCallArguments, ToolCallEnd]
    assert isinstance(events[-1], ToolCallEnd)
    assert json.loads(events[-1].arguments) == {"q": 1}


def test_a_call_cut_by_the_end_of_output_is_not_completed() -> None:
    parser = ToolCallParser("<tool_call>", "</tool_call>")
    events = parser.feed('<tool_call>[{"name": "a", "arguments": {"x": ')
    events += parser.flush()
    assert parser.in_call
    assert not [e for e in events if isinstance(e, ToolCallEnd)]
