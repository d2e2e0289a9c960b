"""The grammar that holds a model's tool calls to the declared tools (llguidance Lark).

Each call is one JSON object, ``{"name": <one of the callable names>, "arguments": <that
tool's parameters schema>}``, laid out by the format (blocks or an array). Names are limited
to the callable tools and each call's arguments to its own tool's schema, through one
``%json`` rule per tool. The result is a :class:`~gemserve.engine.base.Constraint`:

- ``auto`` / ``validated``: lazy. Free text until the format's opener, then the grammar.
- ``any`` (``allowed`` included): the calls from the first answer token.
- ``auto`` with a JSON answer schema: from the first answer token, either the calls or the
  JSON answer.
- ``none``: text in which the opener cannot appear.
"""

from __future__ import annotations

import json
from typing import Any

from gemserve.engine.base import Constraint, ToolSpec, ToolUse
from gemserve.engine.tools.formats import ToolFormat

# JSON on one line with json.dumps's separators (see guidance._LAYOUT for why).
_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def lark_literal(text: str) -> str:
    return json.dumps(text)


def call_schema(tool: ToolSpec, args_key: str) -> dict[str, Any]:
    """One call to ``tool`` as a JSON object, name first."""
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, args_key: json.loads(tool.parameters)},
        "required": ["name", args_key],
        "additionalProperties": False,
        "x-guidance": _LAYOUT,
    }


def call_rules(fmt: ToolFormat, tools: tuple[ToolSpec, ...], *, parallel: bool = True) -> str:
    """Lark rules ``calls`` (the whole call block or blocks) and one ``call_<i>`` per tool."""
    alternatives = " | ".join(f"call_{i}" for i in range(len(tools)))
    opener, closer = lark_literal(fmt.opener), lark_literal(fmt.closer)
    if fmt.layout == "array":
        more = ' ("," SP? NL? call)*' if parallel else ""
        calls = f'calls: {opener} NL? "[" NL? call{more} NL? "]" {closer}'
    else:
        more = " (NL block)*" if parallel else ""
        calls = f"calls: block{more}\nblock: {opener} NL? call NL? {closer}"
    rules = [calls, f"call: {alternatives}"]
    rules += [
        f"call_{i}: %json {json.dumps(call_schema(tool, fmt.args_key))}"
        for i, tool in enumerate(tools)
    ]
    rules += ['NL: "\\n"', 'SP: " "']
    return "\n".join(rules)


def tool_constraint(
    fmt: ToolFormat, tools: ToolUse, json_answer: str | None = None
) -> Constraint | None:
    """The constraint for a request's tools (None: nothing to hold the output to).
    ``json_answer``: a JSON Schema (as text) the answer must match when it is not a call."""
    callable_tools = tools.callable()
    if not callable_tools:
        ban = f"start: TEXT\nTEXT: /(?s:.*)/ & ~/(?s:.*){_regex_literal(fmt.opener)}(?s:.*)/"
        if json_answer is not None:
            return None  # the JSON answer's own constraint already keeps the opener out
        return Constraint(ban, scope="answer", syntax="lark")
    rules = call_rules(fmt, callable_tools, parallel=tools.parallel)
    if json_answer is not None:
        body = json.loads(json_answer)
        if isinstance(body, dict):
            body = {**body, "x-guidance": _LAYOUT}
        start = "start: calls" if tools.mode == "any" else "start: calls | answer"
        return Constraint(
            f"{start}\nanswer: %json {json.dumps(body)}\n{rules}", scope="answer", syntax="lark"
        )
    if tools.mode == "any":
        return Constraint(f"start: calls\n{rules}", scope="answer", syntax="lark")
    return Constraint(
        f"start: calls\n{rules}", scope="answer", triggers=(fmt.opener,), syntax="lark"
    )


def single_tool_grammar(tool: ToolSpec, args_key: str) -> str:
    """One tool's call alone: compiled by itself, its error names that tool."""
    return f"start: %json {json.dumps(call_schema(tool, args_key))}"


def _regex_literal(text: str) -> str:
    out = []
    for ch in text:
        if ch.isalnum() or ch in "_<>=: \t":
            out.append(ch)
        elif ch == "/":
            out.append("\\/")
        else:
            out.append("\\" + ch)
    return "".join(out)
