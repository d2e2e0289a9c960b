"""Formats whose calls are JSON objects ``{"name": …, "<args key>": {…}}``.

- ``hermes``: Hermes, Qwen 2.5 and Qwen 3 templates, which render ``tools``, ``tool_calls``
  and ``tool`` messages themselves; each call is ``<tool_call>\\n{"name": …, "arguments":
  {…}}\\n</tool_call>``.
- ``json_array``: SmolLM2's format (the one it was trained on) and the fallback for templates
  with no tool section: the declarations go into the system message, the calls are one
  ``<tool_call>[{…}, {…}]</tool_call>`` block, results come back as ``<tool_response>``
  user text.

Llama 3 (``llama3.py``) and Mistral's JSON array (``mistral.py``) build on this class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from gemserve.engine.base import ChatMessage, ToolCall, ToolSpec, ToolUse
from gemserve.engine.tools.base import ToolCallStage, ToolFormat, declaration, template_tools
from gemserve.engine.tools.lark import LAYOUT, PLAIN, Markers
from gemserve.engine.tools.parser import ToolCallParser

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
_RESPONSE_OPEN = "<tool_response>"
_RESPONSE_CLOSE = "</tool_response>"
# What an answer to results may not write: the wrapper's starts (its near misses too).
RESPONSE_MARKERS = ("<tool_response", "</tool_response")


@dataclass(frozen=True, slots=True)
class JsonCallFormat(ToolFormat):
    name: str
    opener: str  # the trigger: where a call block starts
    closer: str
    layout: Layout  # one block per call, or one block holding an array of calls
    native: bool  # the chat template renders tools, calls and results itself
    args_key: str = "arguments"
    result_markers: tuple[str, ...] = RESPONSE_MARKERS
    text_first_after_results: bool = False

    def render(
        self, messages: Sequence[ChatMessage], tools: ToolUse | None
    ) -> tuple[tuple[ChatMessage, ...], dict[str, Any]]:
        if self.native:
            return tuple(messages), template_tools(tools)
        offered = tools.callable() if tools is not None else ()
        return self._inline(messages, tools, offered), {}

    def call_schema(self, tool: ToolSpec) -> dict[str, Any]:
        """One call to ``tool`` as a JSON object, name first."""
        return {
            "type": "object",
            "properties": {
                "name": {"const": tool.name},
                self.args_key: json.loads(tool.parameters),
            },
            "required": ["name", self.args_key],
            "additionalProperties": False,
            "x-guidance": LAYOUT,
        }

    def call_object(self, call: ToolCall) -> str:
        """An earlier call as the model writes its object."""
        return f'{{"name": {json.dumps(call.name)}, "{self.args_key}": {call.arguments}}}'

    def call_text(self, calls: Sequence[ToolCall]) -> str:
        """Earlier calls as the model writes them."""
        objects = [self.call_object(c) for c in calls]
        if self.layout == "array":
            return f"{self.opener}[\n" + ",\n".join(objects) + f"\n]{self.closer}"
        return "\n".join(f"{self.opener}\n{o}\n{self.closer}" for o in objects)

    def markers(self) -> tuple[str, ...]:
        return (self.opener, self.closer) if self.closer else (self.opener,)

    def body_rules(
        self, tools: tuple[ToolSpec, ...], *, parallel: bool, mark: Markers = PLAIN
    ) -> str:
        closer = f" {mark(self.closer)}" if self.closer else ""
        if self.layout == "array":
            more = ' ("," SP? NL? call)*' if parallel else ""
            rules = [f'calls_body: NL? "[" NL? call{more} NL? "]"{closer}']
        else:
            more = " (NL block)*" if parallel else ""
            rules = [f"calls_body: NL? call NL?{closer}{more}"]
            if parallel:
                rules.append(f"block: {mark(self.opener)} NL? call NL?{closer}")
        return "\n".join([*rules, *self.call_rules(tools), 'NL: "\\n"', 'SP: " "'])

    def call_rules(self, tools: tuple[ToolSpec, ...]) -> list[str]:
        """``call`` (one call to any of the tools) and one ``call_<i>`` per tool."""
        rules = ["call: " + " | ".join(f"call_{i}" for i in range(len(tools)))]
        rules += [
            f"call_{i}: %json {json.dumps(self.call_schema(tool))}" for i, tool in enumerate(tools)
        ]
        return rules

    def tool_grammar(self, tool: ToolSpec) -> str:
        return f"start: %json {json.dumps(self.call_schema(tool))}"

    def parser(self, tools: tuple[ToolSpec, ...]) -> ToolCallStage:
        return ToolCallParser(self.opener, self.closer, self.args_key)

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
            listed = json.dumps([declaration(t) for t in offered])
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
                response = f"{_RESPONSE_OPEN}\n{message.text}\n{_RESPONSE_CLOSE}"
                last = out[-1] if out else None
                if last is not None and last.role == "user" and last.text.endswith(_RESPONSE_CLOSE):
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


HERMES = JsonCallFormat("hermes", "<tool_call>", "</tool_call>", "blocks", native=True)
# SmolLM2 opens its answer to results with the <tool_response> it just read, or, kept from
# that, with the call it just made again: its answer to results opens with words.
JSON_ARRAY = JsonCallFormat(
    "json_array",
    "<tool_call>",
    "</tool_call>",
    "array",
    native=False,
    text_first_after_results=True,
)
