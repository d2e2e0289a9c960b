"""Qwen3-Coder's XML calls, which its template renders from ``tools`` and ``tool_calls``:

    <tool_call>
    <function=NAME>
    <parameter=KEY>
    VALUE
    </parameter>
    </function>
    </tool_call>

The values are not JSON: a string parameter's value is its raw text, any other is the JSON
of the value (the template writes objects and arrays with ``tojson``, numbers and booleans as
text). The grammar holds each call to a declared name, its parameters to that tool's
properties in their declared order (every required one present, the others optional), and
each value to its schema as far as Lark can: a string parameter to text without
``</parameter>`` (its ``enum``, ``const``, ``minLength``/``maxLength`` and an anchored
``pattern`` kept), any other to ``%json`` of its subschema. Results come back in
``<tool_response>`` (the template's), which an answer after them must not echo.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gemserve.engine.base import ChatMessage, ToolSpec, ToolUse
from gemserve.engine.tools.base import ToolCallStage, ToolFormat, template_tools
from gemserve.engine.tools.lark import PLAIN, Markers, json_rule, literal, regex_literal
from gemserve.engine.tools.xml_parser import (
    PARAMETER_END,
    XmlCallParser,
    is_string,
    parameter_schemas,
)

OPENER = "<tool_call>"
CLOSER = "</tool_call>"
FUNCTION_END = "</function>"


def _string_terminal(schema: dict[str, Any]) -> str:
    """The terminal of a string value: its text up to (without) the parameter's end."""
    if "const" in schema and isinstance(schema["const"], str):
        return literal(schema["const"])
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return " | ".join(literal(v) for v in enum)
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    parts = [f"/(?s:.{{{low},{'' if high is None else high}}})/"]
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        if pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$"):
            body = pattern[1:-1]
        else:
            body = f"(?s:.*)(?:{pattern})(?s:.*)"
        parts.append("/" + body.replace("/", "\\/") + "/")
    parts.append(f"~/(?s:.*){regex_literal('</parameter>')}(?s:.*)/")
    return " & ".join(parts)


@dataclass(frozen=True, slots=True)
class Qwen3CoderFormat(ToolFormat):
    name: str = "qwen3_coder"
    opener: str = OPENER
    result_markers: tuple[str, ...] = ("<tool_response", "</tool_response")

    def render(
        self, messages: Sequence[ChatMessage], tools: ToolUse | None
    ) -> tuple[tuple[ChatMessage, ...], dict[str, Any]]:
        return tuple(messages), template_tools(tools)

    def function_rules(self, i: int, tool: ToolSpec) -> list[str]:
        """``fn_<i>``: one call's function element, and the rules of its parameters."""
        root = json.loads(tool.parameters)
        defs = {k: root[k] for k in ("$defs", "definitions") if k in root}
        required = set(root.get("required", []))
        rules: list[str] = []
        params: list[str] = []
        for j, (key, schema) in enumerate(parameter_schemas(tool).items()):
            rule = f"p_{i}_{j}"
            head = f"{literal(f'<parameter={key}>')} NL"
            if is_string(schema):
                rules.append(f"{rule}: {head} v_{i}_{j} NL")
                rules.append(f"v_{i}_{j}[lazy]: S_{i}_{j} {literal(PARAMETER_END)}")
                rules.append(f"S_{i}_{j}: {_string_terminal(schema)}")
            else:
                sub = {**schema, **defs} if isinstance(schema, dict) else schema
                rules.append(f"{rule}: {head} {json_rule(sub)} {literal(PARAMETER_END)} NL")
            params.append(rule if key in required else f"{rule}?")
        parts = [literal(f"<function={tool.name}>"), "NL", *params, literal(FUNCTION_END)]
        return [f"fn_{i}: " + " ".join(parts), *rules]

    def markers(self) -> tuple[str, ...]:
        return (OPENER, CLOSER)

    def body_rules(
        self, tools: tuple[ToolSpec, ...], *, parallel: bool, mark: Markers = PLAIN
    ) -> str:
        more = " (NL block)*" if parallel else ""
        rules = [f"calls_body: NL fn NL {mark(CLOSER)}{more}"]
        if parallel:
            rules.append(f"block: {mark(OPENER)} NL fn NL {mark(CLOSER)}")
        rules.append("fn: " + " | ".join(f"fn_{i}" for i in range(len(tools))))
        for i, tool in enumerate(tools):
            rules += self.function_rules(i, tool)
        rules.append('NL: "\\n"')
        return "\n".join(rules)

    def tool_grammar(self, tool: ToolSpec) -> str:
        return "\n".join(["start: fn_0", *self.function_rules(0, tool), 'NL: "\\n"'])

    def parser(self, tools: tuple[ToolSpec, ...]) -> ToolCallStage:
        return XmlCallParser(tools)


QWEN3_CODER = Qwen3CoderFormat()
