"""Mistral's [TOOL_CALLS] formats: ids mapped to the 9 characters the templates demand (the
same for a call and its result), and the three ways of writing calls read cut anywhere."""

from __future__ import annotations

import json
import random
import re

import pytest

from gemserve.engine import ChatMessage, ToolCall, ToolSpec, ToolUse
from gemserve.engine.chat_template import ChatTemplate
from gemserve.engine.tools.base import ToolFormat
from gemserve.engine.tools.mistral import (
    MISTRAL_ARGS,
    MISTRAL_CALL_ID,
    MISTRAL_JSON,
    mistral_id,
)
from tests.engine.tools.cutting import cut, parse
from tests.engine.tools.templates import TEMPLATES

TOOL = ToolSpec("get_weather", "The weather", '{"type": "object"}')
HISTORY = (
    ChatMessage("user", "Weather?"),
    ChatMessage(
        "assistant",
        "",
        tool_calls=(
            ToolCall("call_7f3a9c0e2b", "get_weather", '{"city": "Paris"}'),
            ToolCall("c2", "get_weather", '{"city": "Rome"}'),
        ),
    ),
    ChatMessage("tool", '"sunny"', tool_call_id="call_7f3a9c0e2b"),
    ChatMessage("tool", '"rain"', tool_call_id="c2"),
)


def test_ids_become_nine_alphanumerics_deterministically() -> None:
    for original in ("call_7f3a9c0e2b", "c2", "", "x" * 100):
        mapped = mistral_id(original)
        assert re.fullmatch(r"[A-Za-z0-9]{9}", mapped)
        assert mistral_id(original) == mapped
    assert mistral_id("abcDEF123") == "abcDEF123"  # already fits: kept
    assert mistral_id("c1") != mistral_id("c2")


@pytest.mark.parametrize("fmt", [MISTRAL_JSON, MISTRAL_ARGS, MISTRAL_CALL_ID])
def test_calls_and_results_keep_their_pairing(fmt: ToolFormat) -> None:
    messages, variables = fmt.render(HISTORY, ToolUse((TOOL,)))
    calls = messages[1].tool_calls
    assert [c.id for c in calls] == [messages[2].tool_call_id, messages[3].tool_call_id]
    assert all(len(c.id) == 9 for c in calls)
    assert variables["tools"][0]["function"]["name"] == "get_weather"
    name = fmt.name
    prompt = ChatTemplate(TEMPLATES[name]).render(messages, **variables)
    assert "[AVAILABLE_TOOLS]" in prompt
    assert calls[0].id in prompt or name == "mistral_args"  # that template shows no ids


def test_the_json_form_renders_through_its_template() -> None:
    messages, variables = MISTRAL_JSON.render(HISTORY, ToolUse((TOOL,)))
    prompt = ChatTemplate(TEMPLATES["mistral_json"]).render(messages, **variables)
    first = mistral_id("call_7f3a9c0e2b")
    assert (
        f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {{"city": "Paris"}}, "id": "{first}"}}'
        in prompt
    )
    assert f'[TOOL_RESULTS]{{"content": "sunny", "call_id": "{first}"}}[/TOOL_RESULTS]' in prompt


JSON_CALLS = (
    'Checking.[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "P]a}ris", '
    '"n": [1, {"a": "}"}]}, "id": "abcDEF123"}, {"name": "get_time", "arguments": {}, '
    '"id": "zzzzzzzzz"}]'
)
ARGS_CALLS = (
    'Checking.[TOOL_CALLS]get_weather[ARGS]{"city": "P]a}ris", "n": [1, {"a": "}"}]}'
    "[TOOL_CALLS]get_time[ARGS]{}"
)
CALL_ID_CALLS = (
    'Checking.[TOOL_CALLS]get_weather[CALL_ID]abcDEF123[ARGS]{"city": "P]a}ris", '
    '"n": [1, {"a": "}"}]}[TOOL_CALLS]get_time[CALL_ID]zzzzzzzzz[ARGS]{}'
)


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize(
    ("fmt", "text"),
    [(MISTRAL_JSON, JSON_CALLS), (MISTRAL_ARGS, ARGS_CALLS), (MISTRAL_CALL_ID, CALL_ID_CALLS)],
    ids=["json", "args", "call_id"],
)
def test_calls_cut_anywhere(fmt: ToolFormat, text: str, seed: int) -> None:
    parsed = parse(fmt.parser(()), cut(text, random.Random(seed)))
    assert parsed.text == "Checking."
    assert [name for name, _ in parsed.calls] == ["get_weather", "get_time"]
    assert json.loads(parsed.calls[0][1]) == {"city": "P]a}ris", "n": [1, {"a": "}"}]}
    assert json.loads(parsed.calls[1][1]) == {}


def test_the_json_arguments_stop_before_the_id() -> None:
    """The id after the arguments is no part of them, even while they stream."""
    parsed = parse(MISTRAL_JSON.parser(()), list(JSON_CALLS))
    assert parsed.calls[0][1] == '{"city": "P]a}ris", "n": [1, {"a": "}"}]}'


def test_a_near_miss_of_the_marker_is_text() -> None:
    parsed = parse(MISTRAL_ARGS.parser(()), ["see [TOOL_", "CALL] and [TOOL"])
    assert parsed.text == "see [TOOL_CALL] and [TOOL"
    assert parsed.calls == []
