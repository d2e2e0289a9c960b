"""Mistral's ``[TOOL_CALLS]`` formats, as the templates in llama.cpp's models/templates show
them. Each template renders ``[AVAILABLE_TOOLS]…[/AVAILABLE_TOOLS]``, the calls and the
``[TOOL_RESULTS]…[/TOOL_RESULTS]`` results itself; three ways of writing a call:

- ``mistral_json`` (Mistral Nemo, Small 3.1: tokenizers v3 to v7): one JSON array,
  ``[TOOL_CALLS][{"name": …, "arguments": {…}, "id": "<9 alphanumerics>"}, …]``.
- ``mistral_args`` (Devstral Small 2507, Ministral 3, Magistral): one
  ``[TOOL_CALLS]name[ARGS]{…}`` per call, back to back.
- ``mistral_call_id`` (Mistral Small 3.2): ``[TOOL_CALLS]name[CALL_ID]<id>[ARGS]{…}``.

The templates refuse call ids that are not 9 alphanumeric characters (or take their last
9), while gemserve's ids are longer: rendering maps each id to 9 characters of its hash, the
same for a call and its result (an id that already fits is kept), so the prompt of a
conversation is the same text every turn (the prefix cache holds). The ids the model writes
are dropped: the turn pipeline gives each call its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gemserve.engine.base import ChatMessage, ToolSpec, ToolUse
from gemserve.engine.tools.base import ToolCallStage, ToolFormat, template_tools
from gemserve.engine.tools.json_calls import JsonCallFormat
from gemserve.engine.tools.lark import PLAIN, Markers, json_rule, literal
from gemserve.engine.tools.mistral_parser import NameArgsParser
from gemserve.engine.tools.parser import ToolCallParser

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
RESULT_MARKERS = ("[TOOL_RESULTS", "[/TOOL_RESULTS")
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID = re.compile(r"[A-Za-z0-9]{9}")
ID_PATTERN = "^[a-zA-Z0-9]{9}$"


def mistral_id(call_id: str) -> str:
    """A call id as Mistral's templates take it: 9 alphanumeric characters."""
    if _ID.fullmatch(call_id):
        return call_id
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    out = []
    for _ in range(9):
        number, digit = divmod(number, len(_ALNUM))
        out.append(_ALNUM[digit])
    return "".join(out)


def with_mistral_ids(messages: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    out = []
    for message in messages:
        if message.tool_calls:
            calls = tuple(replace(c, id=mistral_id(c.id)) for c in message.tool_calls)
            message = replace(message, tool_calls=calls)
        elif message.role == "tool":
            message = replace(message, tool_call_id=mistral_id(message.tool_call_id or ""))
        out.append(message)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class MistralJsonFormat(JsonCallFormat):
    """``[TOOL_CALLS][{…, "id": …}]``."""

    def render(
        self, messages: Sequence[ChatMessage], tools: ToolUse | None
    ) -> tuple[tuple[ChatMessage, ...], dict[str, Any]]:
        return with_mistral_ids(messages), template_tools(tools)

    def call_schema(self, tool: ToolSpec) -> dict[str, Any]:
        schema = JsonCallFormat.call_schema(self, tool)
        schema["properties"]["id"] = {"type": "string", "pattern": ID_PATTERN}
        schema["required"] = ["name", self.args_key, "id"]
        return schema

    def body_rules(
        self, tools: tuple[ToolSpec, ...], *, parallel: bool, mark: Markers = PLAIN
    ) -> str:
        more = ' ("," SP? call)*' if parallel else ""
        rules = [f'calls_body: SP? "[" call{more} "]"', *self.call_rules(tools), 'SP: " "']
        return "\n".join(rules)

    def parser(self, tools: tuple[ToolSpec, ...]) -> ToolCallStage:
        return ToolCallParser(self.opener, "", self.args_key)


@dataclass(frozen=True, slots=True)
class MistralArgsFormat(ToolFormat):
    """``[TOOL_CALLS]name[ARGS]{…}``, with ``[CALL_ID]id`` before ``[ARGS]`` if ``call_id``."""

    name: str
    call_id: bool
    opener: str = TOOL_CALLS
    result_markers: tuple[str, ...] = RESULT_MARKERS

    def render(
        self, messages: Sequence[ChatMessage], tools: ToolUse | None
    ) -> tuple[tuple[ChatMessage, ...], dict[str, Any]]:
        return with_mistral_ids(messages), template_tools(tools)

    def markers(self) -> tuple[str, ...]:
        return (self.opener, ARGS, CALL_ID) if self.call_id else (self.opener, ARGS)

    def call_rule(self, i: int, tool: ToolSpec, mark: Markers = PLAIN) -> str:
        call_id = f" {mark(CALL_ID)} /[a-zA-Z0-9]{{9}}/" if self.call_id else ""
        arguments = json_rule(json.loads(tool.parameters))
        return f"call_{i}: {literal(tool.name)}{call_id} {mark(ARGS)} {arguments}"

    def body_rules(
        self, tools: tuple[ToolSpec, ...], *, parallel: bool, mark: Markers = PLAIN
    ) -> str:
        more = f" ({mark(self.opener)} call)*" if parallel else ""
        rules = [
            f"calls_body: call{more}",
            "call: " + " | ".join(f"call_{i}" for i in range(len(tools))),
            *(self.call_rule(i, tool, mark) for i, tool in enumerate(tools)),
        ]
        return "\n".join(rules)

    def tool_grammar(self, tool: ToolSpec) -> str:
        return f"start: call_0\n{self.call_rule(0, tool)}"

    def parser(self, tools: tuple[ToolSpec, ...]) -> ToolCallStage:
        return NameArgsParser(self.opener, ARGS, CALL_ID if self.call_id else None)


MISTRAL_JSON = MistralJsonFormat(
    "mistral_json", TOOL_CALLS, "", "array", native=True, result_markers=RESULT_MARKERS
)
MISTRAL_ARGS = MistralArgsFormat("mistral_args", call_id=False)
MISTRAL_CALL_ID = MistralArgsFormat("mistral_call_id", call_id=True)
