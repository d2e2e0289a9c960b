"""Qwen3-Coder's XML calls: values converted by their declared types, the argument pieces
joining to the JSON of the arguments wherever the text is cut, strings streamed as they
come, and the grammar's rules per parameter."""

from __future__ import annotations

import json
import random

import pytest

from gemserve.engine import ChatMessage, ToolCall, ToolCallArguments, ToolSpec, ToolUse
from gemserve.engine.chat_template import ChatTemplate
from gemserve.engine.tools.qwen3_coder import QWEN3_CODER
from tests.engine.tools.cutting import cut, parse
from tests.engine.tools.templates import QWEN3_CODER as TEMPLATE

SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "force": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "opts": {"type": "object"},
        "mode": {"type": "string", "enum": ["a", "b"]},
    },
    "required": ["path"],
}
TOOLS = (
    ToolSpec("write_file", "Write a file", json.dumps(SCHEMA)),
    ToolSpec("ping", "Ping", '{"type": "object", "properties": {}}'),
)
CALLS = (
    "Writing it now.\n<tool_call>\n<function=write_file>\n"
    '<parameter=path>\nsrc/a "b".py\n</parameter>\n'
    "<parameter=count>\n3\n</parameter>\n"
    "<parameter=ratio>\n0.5\n</parameter>\n"
    "<parameter=force>\ntrue\n</parameter>\n"
    '<parameter=tags>\n["x", "y"]\n</parameter>\n'
    '<parameter=opts>\n{"k": [1, 2]}\n</parameter>\n'
    "<parameter=mode>\nb\n</parameter>\n"
    "</function>\n</tool_call>\n<tool_call>\n<function=ping>\n</function>\n</tool_call>"
)
WANT = {
    "path": 'src/a "b".py',
    "count": 3,
    "ratio": 0.5,
    "force": True,
    "tags": ["x", "y"],
    "opts": {"k": [1, 2]},
    "mode": "b",
}


@pytest.mark.parametrize("seed", range(60))
def test_calls_cut_anywhere_join_to_json_arguments(seed: int) -> None:
    parsed = parse(QWEN3_CODER.parser(TOOLS), cut(CALLS, random.Random(seed)))
    assert parsed.text == "Writing it now.\n"
    assert [name for name, _ in parsed.calls] == ["write_file", "ping"]
    assert json.loads(parsed.calls[0][1]) == WANT
    assert json.loads(parsed.calls[1][1]) == {}


@pytest.mark.parametrize("seed", range(30))
def test_a_string_value_keeps_its_text_and_lines(seed: int) -> None:
    code = 'def f():\n    return "</param" + "\\n"\n\n'
    text = (
        "<tool_call>\n<function=write_file>\n<parameter=path>\n"
        f"{code}\n</parameter>\n</function>\n</tool_call>"
    )
    parsed = parse(QWEN3_CODER.parser(TOOLS), cut(text, random.Random(seed)))
    assert json.loads(parsed.calls[0][1]) == {"path": code}


def test_a_string_streams_before_its_parameter_ends() -> None:
    stage = QWEN3_CODER.parser(TOOLS)
    events = stage.feed("<tool_call>\n<function=write_file>\n<parameter=path>\nhello wor")
    pieces = "".join(e.text for e in events if isinstance(e, ToolCallArguments))
    assert pieces == '{"path": "hello wor'
    assert stage.in_call


def test_values_written_python_style_are_read() -> None:
    """The template writes booleans with Jinja's ``string`` (True); without a grammar the
    parser takes them as the model read them."""
    text = (
        "<tool_call>\n<function=write_file>\n<parameter=path>\nx\n</parameter>\n"
        "<parameter=force>\nTrue\n</parameter>\n<parameter=extra>\n7\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    parsed = parse(QWEN3_CODER.parser(TOOLS), [text])
    assert json.loads(parsed.calls[0][1]) == {"path": "x", "force": True, "extra": "7"}


def test_history_renders_raw_strings_and_json_values() -> None:
    call = ToolCall("c1", "write_file", json.dumps({"path": "a.py", "tags": ["x"]}))
    history = (ChatMessage("user", "Go"), ChatMessage("assistant", "", tool_calls=(call,)))
    messages, variables = QWEN3_CODER.render(history, ToolUse(TOOLS))
    assert messages == history
    prompt = ChatTemplate(TEMPLATE).render(messages, **variables)
    assert "<function=write_file>\n<parameter=path>\na.py\n</parameter>\n" in prompt
    assert '<parameter=tags>\n["x"]\n</parameter>\n</function>' in prompt
    assert "<name>write_file</name>" in prompt


def test_grammar_rules_follow_the_schema() -> None:
    rules = QWEN3_CODER.body_rules(TOOLS, parallel=False)
    # Names and parameter names are literals; path is required, the others optional.
    assert '"<function=write_file>" NL p_0_0 p_0_1? p_0_2?' in rules
    assert '"<parameter=path>" NL v_0_0 NL' in rules
    assert 'S_0_6: "a" | "b"' in rules  # a string enum
    assert "%json" in rules.split("p_0_1:")[1].split("\n")[0]  # integers are JSON
    assert "(NL block)*" not in rules
    assert "(NL block)*" in QWEN3_CODER.body_rules(TOOLS, parallel=True)
