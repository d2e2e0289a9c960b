"""How a model family writes tool calls, and how tools, calls and results go into its prompt.

One :class:`ToolFormat` per family holds both sides, so what the model reads in its history is
what it is held to write: the rendering of declarations, earlier calls and results, the
trigger that opens a call, the layout of the call block (for the grammar) and the key of the
arguments (for the parser).

- ``hermes``: Hermes, Qwen 2.5 and Qwen 3 templates, which render ``tools``, ``tool_calls``
  and ``tool`` messages themselves; each call is ``<tool_call>\\n{"name": …, "arguments":
  {…}}\\n</tool_call>``.
- ``json_array``: SmolLM2's format (the one it was trained on) and the fallback for templates
  with no tool section: the declarations go into the system message, the calls are one
  ``<tool_call>[{…}, {…}]</tool_call>`` block, results come back as ``<tool_response>``
  user text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from gemserve.engine.base import ChatMessage, ToolCall, ToolSpec, ToolUse

Layout = Literal["blocks", "array"]

_TOOLS_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of possible "
    "functions. Based on the question, you will need to make one or more function/tool calls to "
    "achieve the purpose.\n"
    "{fallback}\n"
    "You have access to the following tools:\n"
    "<tools>{tools}</tools>\n"
    "To call tools, write them in this format, with the parameter types the tools declare:\n"
    '<tool_call>[\n{{"name": "func_name1", "arguments": {{"argument1": "value1", '
    '"argument2": "value2"}}}},\n... (more tool calls as required)\n]</tool_call>'
)
_FALLBACK_AUTO = (
    "If none of the functions fit the question, answer it in plain text without a tool call."
)
_FALLBACK_ANY = "Always answer with tool calls and no other text."


@dataclass(frozen=True, slots=True)
class ToolFormat:
    name: str
    opener: str  # the trigger: where a call block starts
    closer: str
    layout: Layout  # one block per call, or one block holding an array of calls
    native: bool  # the chat template renders tools, calls and results itself
    args_key: str = "arguments"

    def render(
        self, messages: Sequence[ChatMessage], tools: ToolUse | None
    ) -> tuple[tuple[ChatMessage, ...], dict[str, Any]]:
        """The messages for the chat template, and its extra variables (``tools``)."""
        offered = tools.callable() if tools is not None else ()
        if self.native:
            variables: dict[str, Any] = {}
            if offered:
                variables["tools"] = [_openai_tool(t) for t in offered]
            return tuple(messages), variables
        return self._inline(messages, tools, offered), {}

    def call_text(self, calls: Sequence[ToolCall]) -> str:
        """Earlier calls as the model writes them."""
        objects = [
            f'{{"name": {json.dumps(c.name)}, "{self.args_key}": {c.arguments}}}' for c in calls
        ]
        if self.layout == "array":
            return f"{self.opener}[\n" + ",\n".join(objects) + f"\n]{self.closer}"
        return "\n".join(f"{self.opener}\n{o}\n{self.closer}" for o in objects)

    def _inline(
        self,
        messages: Sequence[ChatMessage],
        tools: ToolUse | None,
        offered: tuple[ToolSpec, ...],
    ) -> tuple[ChatMessage, ...]:
        out: list[ChatMessage] = []
        if offered:
            assert tools is not None
            fallback = _FALLBACK_ANY if tools.mode == "any" else _FALLBACK_AUTO
            listed = json.dumps([_declaration(t) for t in offered])
            prompt = _TOOLS_PROMPT.format(fallback=fallback, tools=listed)
            system = next((m for m in messages if m.role == "system"), None)
            text = prompt if system is None else f"{prompt}\n\n{system.text}"
            out.append(ChatMessage("system", text))
        elif messages and messages[0].role == "system":
            out.append(messages[0])
        for message in messages:
            if message.role == "system":
                continue
            if message.role == "tool":
                response = f"<tool_response>\n{message.text}\n</tool_response>"
                last = out[-1] if out else None
                if (
                    last is not None
                    and last.role == "user"
                    and last.text.endswith("</tool_response>")
                ):
                    out[-1] = replace(last, text=f"{last.text}\n{response}")
                else:
                    out.append(ChatMessage("user", response))
                continue
            if message.tool_calls:
                calls = self.call_text(message.tool_calls)
                text = f"{message.text}\n{calls}" if message.text else calls
                out.append(replace(message, text=text, tool_calls=()))
                continue
            out.append(message)
        return tuple(out)


HERMES = ToolFormat("hermes", "<tool_call>", "</tool_call>", "blocks", native=True)
JSON_ARRAY = ToolFormat("json_array", "<tool_call>", "</tool_call>", "array", native=False)
FORMATS = {f.name: f for f in (HERMES, JSON_ARRAY)}


def detect(template: str) -> ToolFormat:
    """The format a chat template speaks: one that renders ``tools`` and writes
    ``<tool_call>`` is Hermes-style; any other gets the JSON-array format in its prompt."""
    if "tools" in template and "<tool_call>" in template and "tool_calls" in template:
        return HERMES
    return JSON_ARRAY


def _declaration(tool: ToolSpec) -> dict[str, Any]:
    declared: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declared["description"] = tool.description
    declared["parameters"] = json.loads(tool.parameters)
    return declared


def _openai_tool(tool: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "function": _declaration(tool)}
