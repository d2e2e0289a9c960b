"""Llama 3's format: what the template is given, and calls read at the answer's start only
(with or without <|python_tag|>, several separated by ';'), text cut anywhere."""

from __future__ import annotations

import json
import random

import pytest

from gemserve.engine import ChatMessage, ToolCall, ToolSpec, ToolUse
from gemserve.engine.chat_template import ChatTemplate
from gemserve.engine.tools.llama3 import LLAMA3
from tests.engine.tools.cutting import cut, parse
from tests.engine.tools.templates import LLAMA3 as TEMPLATE

TOOL = ToolSpec("get_weather", "The weather", '{"type": "object"}')
ONE = ToolCall("call-1", "get_weather", '{"city": "Paris"}')
TWO = ToolCall("call-2", "get_time", '{"tz": "CET"}')
CALLS = (
    '<|python_tag|>{"name": "get_weather", "parameters": {"city": "P}aris", "n": [1, {"a": 2}]}}'
    '; {"name": "get_time", "parameters": {}}'
)


def test_the_template_renders_tools_and_a_single_call() -> None:
    history = (
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ONE,)),
        ChatMessage("tool", '"sunny"', tool_call_id="call-1"),
    )
    messages, variables = LLAMA3.render(history, ToolUse((TOOL,)))
    assert messages == history
    assert variables["tools"][0]["function"]["name"] == "get_weather"
    prompt = ChatTemplate(TEMPLATE).render(messages, **variables)
    assert '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>' in prompt
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n"sunny"' in prompt


def test_several_calls_in_a_turn_are_the_text_the_model_writes() -> None:
    """The templates take one call per turn; more are written as the model writes them."""
    history = (
        ChatMessage("user", "Weather and time?"),
        ChatMessage("assistant", "", tool_calls=(ONE, TWO)),
    )
    messages, _ = LLAMA3.render(history, ToolUse((TOOL,)))
    assert messages[1].tool_calls == ()
    assert messages[1].text == (
        '{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_time", "parameters": {"tz": "CET"}}'
    )
    ChatTemplate(TEMPLATE).render(messages)  # the template does not refuse it


def test_none_keeps_the_tools_out() -> None:
    _, variables = LLAMA3.render((ChatMessage("user", "Hi"),), ToolUse((TOOL,), "none"))
    assert variables == {}


@pytest.mark.parametrize("seed", range(40))
def test_calls_at_the_start_cut_anywhere(seed: int) -> None:
    parsed = parse(LLAMA3.parser(()), cut(CALLS, random.Random(seed)))
    assert parsed.text == ""
    assert [name for name, _ in parsed.calls] == ["get_weather", "get_time"]
    assert json.loads(parsed.calls[0][1]) == {"city": "P}aris", "n": [1, {"a": 2}]}
    assert json.loads(parsed.calls[1][1]) == {}


@pytest.mark.parametrize("seed", range(20))
def test_a_bare_call_after_whitespace(seed: int) -> None:
    text = '\n {"name": "get_weather", "parameters": {"city": "Oslo"}}'
    parsed = parse(LLAMA3.parser(()), cut(text, random.Random(seed)))
    assert parsed.calls == [("get_weather", '{"city": "Oslo"}')]
    assert parsed.text == ""


@pytest.mark.parametrize("seed", range(20))
def test_text_answers_stay_text_even_with_json_later(seed: int) -> None:
    text = 'The call would be {"name": "get_weather", "parameters": {}} but no.'
    parsed = parse(LLAMA3.parser(()), cut(text, random.Random(seed)))
    assert parsed.text == text
    assert parsed.calls == []


def test_a_partial_tag_at_the_end_is_text() -> None:
    parsed = parse(LLAMA3.parser(()), [" <|python"])
    assert parsed.text == " <|python"
