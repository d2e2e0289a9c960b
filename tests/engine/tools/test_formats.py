"""Tool formats: which one a template speaks, and what the model reads in its prompt."""

from __future__ import annotations

import json

from gemserve.engine import ChatMessage, ToolCall, ToolSpec, ToolUse
from gemserve.engine.tools.formats import HERMES, JSON_ARRAY, detect
from gemserve.engine.tools.grammar import tool_constraint

TOOL = ToolSpec("get_weather", "The weather", '{"type": "object"}')
HISTORY = (
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Weather?"),
    ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city": "A"}'),)),
    ChatMessage("tool", '"sunny"', tool_call_id="c1", tool_name="get_weather"),
    ChatMessage("tool", '"rain"', tool_call_id="c2", tool_name="get_weather"),
)


def test_detection() -> None:
    qwen_like = "{% for t in tools %}{% endfor %}<tool_call>{{ m.tool_calls }}"
    assert detect(qwen_like) is HERMES
    assert detect("{{ messages }}") is JSON_ARRAY


def test_json_array_puts_tools_calls_and_results_in_text() -> None:
    messages, variables = JSON_ARRAY.render(HISTORY, ToolUse((TOOL,)))
    assert variables == {}
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert "<tools>" in messages[0].text
    assert messages[0].text.endswith("Be brief.")
    assert json.loads(messages[0].text.split("<tools>")[1].split("</tools>")[0])[0]["name"] == (
        "get_weather"
    )
    assert (
        messages[2].text
        == '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "A"}}\n]</tool_call>'
    )
    assert messages[3].text.count("<tool_response>") == 2  # both results, one user turn


def test_none_leaves_tools_out_of_the_prompt() -> None:
    messages, _ = JSON_ARRAY.render(HISTORY[:2], ToolUse((TOOL,), "none"))
    assert "<tools>" not in messages[0].text
    _, variables = HERMES.render(HISTORY[:2], ToolUse((TOOL,), "none"))
    assert "tools" not in variables


def test_hermes_hands_tools_to_the_template() -> None:
    messages, variables = HERMES.render(HISTORY, ToolUse((TOOL,)))
    assert messages == HISTORY
    assert variables["tools"][0]["function"]["name"] == "get_weather"


def test_constraints_by_mode() -> None:
    lazy = tool_constraint(JSON_ARRAY, ToolUse((TOOL,), "auto"))
    assert lazy is not None
    assert lazy.triggers == ("<tool_call>",)
    forced = tool_constraint(JSON_ARRAY, ToolUse((TOOL,), "any"))
    assert forced is not None
    assert forced.triggers == ()
    assert forced.syntax == "lark"
    banned = tool_constraint(JSON_ARRAY, ToolUse((TOOL,), "none"))
    assert banned is not None
    assert "~" in banned.grammar
    with_json = tool_constraint(JSON_ARRAY, ToolUse((TOOL,), "auto"), '{"type": "object"}')
    assert with_json is not None
    assert "start: calls | answer" in with_json.grammar
