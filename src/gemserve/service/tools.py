"""Function calling, surface-neutral: the declared tools checked and handed to the engine,
and the calls and results of a conversation checked to pair up.

Every error names the field the client sent (``tools[2].parameters``,
``input[3].call_id``), whichever surface it came through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from gemserve.config import Limits
from gemserve.engine import ToolSpec, ToolUse
from gemserve.errors import InvalidArgument
from gemserve.protocol.schema import check_json_schema
from gemserve.service.turn_input import (
    FunctionCallPart,
    FunctionResultPart,
    Message,
    Tools,
)

# Gemini's rule for function names.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")


def tool_use(tools: Tools | None, limits: Limits) -> ToolUse | None:
    """The engine's view of the request's tools, after checking names, schemas and limits.

    A parameters schema for an object that does not say ``additionalProperties`` gets
    ``false``: a call carries the declared arguments only (Gemini's own behaviour)."""
    if tools is None or not tools.functions:
        if tools is not None and tools.choice.allowed:
            raise InvalidArgument(
                f"Invalid value at '{tools.choice.where}': no functions are declared."
            )
        return None
    functions = tools.functions
    if len(functions) > limits.max_tools:
        raise InvalidArgument(
            f"Invalid value at 'tools': {len(functions)} functions are declared; the limit is "
            f"{limits.max_tools}."
        )
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    total = 0
    for function in functions:
        if not _NAME.match(function.name):
            raise InvalidArgument(
                f"Invalid value at '{function.where}.name': a function name starts with a "
                "letter or an underscore and has at most 128 letters, digits, _ . : or -."
            )
        if function.name in seen:
            raise InvalidArgument(
                f"Invalid value at '{function.where}.name': {function.name!r} is declared twice."
            )
        seen.add(function.name)
        where = f"{function.where}.{function.parameters_field}"
        schema: dict[str, Any] = (
            {"type": "object", "properties": {}}
            if function.parameters is None
            else dict(
                check_json_schema(function.parameters, where, max_bytes=limits.max_schema_bytes)
            )
        )
        if schema.get("type") == "object" and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        text = json.dumps(schema)
        total += len(text)
        if total > limits.max_schema_bytes:
            raise InvalidArgument(
                f"Invalid value at 'tools': the parameter schemas are more than "
                f"{limits.max_schema_bytes} bytes together; that is the limit."
            )
        specs.append(ToolSpec(function.name, function.description, text))
    # An empty list is the field left unset, as on Gemini: every declared function.
    allowed = tools.choice.allowed or None
    if allowed is not None:
        for i, name in enumerate(allowed):
            if name not in seen:
                at = tools.choice.where if len(allowed) == 1 else f"{tools.choice.where}[{i}]"
                raise InvalidArgument(
                    f"Invalid value at '{at}': {name!r} is not a declared function."
                )
    return ToolUse(tuple(specs), tools.choice.mode, allowed, parallel=tools.parallel)


def tool_where(tools: Tools | None, name: str | None) -> str:
    """The field to blame for an engine's refusal of a tool's schema."""
    if tools is not None:
        for function in tools.functions:
            if function.name == name:
                return f"{function.where}.{function.parameters_field}"
    return "tools"


def pair_calls(messages: Sequence[Message]) -> list[Message]:
    """Check that each result answers a call made before it, and that a model turn's calls
    are all answered before the conversation goes on; a result without ``name`` or
    ``call_id`` gets it from its call."""
    out: list[Message] = []
    open_calls: list[FunctionCallPart] = []
    for message in _turns(messages):
        if message.role == "model":
            _require_answered(open_calls)
            open_calls = [p for p in message.parts if isinstance(p, FunctionCallPart)]
            out.append(message)
            continue
        parts = []
        for part in message.parts:
            if isinstance(part, FunctionResultPart):
                call = _match(part, open_calls)
                open_calls.remove(call)
                part = FunctionResultPart(
                    call.id, call.name, part.result, part.where, part.is_error
                )
            parts.append(part)
        _require_answered(open_calls)
        open_calls = []
        out.append(Message(message.role, tuple(parts)))
    return out


def _turns(messages: Sequence[Message]) -> list[Message]:
    """Consecutive messages of one role form one turn (parallel calls are several steps)."""
    turns: list[Message] = []
    for message in messages:
        if turns and turns[-1].role == message.role:
            turns[-1] = Message(message.role, turns[-1].parts + message.parts)
        else:
            turns.append(message)
    return turns


def _match(result: FunctionResultPart, open_calls: list[FunctionCallPart]) -> FunctionCallPart:
    for call in open_calls:
        if result.call_id is not None and call.id is not None:
            if call.id == result.call_id:
                return call
        elif result.name is not None and call.name == result.name:
            return call
    key = "call_id" if result.call_id is not None else "name"
    value = result.call_id if result.call_id is not None else result.name
    if value is None:
        raise InvalidArgument(
            f"Missing required field '{result.where}.call_id': a function result names the "
            "call it answers."
        )
    raise InvalidArgument(
        f"Invalid value at '{result.where}.{key}': {value!r} answers no call of the model's "
        "turn just before it (or that call was answered already)."
    )


def _require_answered(open_calls: list[FunctionCallPart]) -> None:
    if open_calls:
        call = open_calls[0]
        named = f"{call.name!r}" + (f" (id {call.id!r})" if call.id else "")
        raise InvalidArgument(
            f"Invalid value at '{call.where}': the call to {named} has no function result; "
            "send a result for every call of a model turn before continuing."
        )
