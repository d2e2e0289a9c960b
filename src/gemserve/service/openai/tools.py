"""``tools``, ``tool_choice`` and ``parallel_tool_calls`` of a chat completion request, read
into the surface-neutral declarations."""

from __future__ import annotations

from typing import Any

from gemserve.errors import InvalidArgument
from gemserve.service.turn_input import FunctionDeclaration, ToolChoice, Tools


def read_tools(raw: list[Any] | None, tool_choice: Any, parallel: bool | None) -> Tools | None:
    functions: list[FunctionDeclaration] = []
    for i, tool in enumerate(raw or ()):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise InvalidArgument(
                f"Invalid value at '{where}.type': only function tools are supported."
            )
        unknown = sorted(set(tool) - {"type", "function"})
        if unknown:
            raise InvalidArgument(f"Unknown name {unknown[0]!r} at '{where}': Cannot find field.")
        function = tool.get("function")
        at = f"{where}.function"
        if not isinstance(function, dict):
            raise InvalidArgument(f"Missing required field '{at}'.")
        unknown = sorted(set(function) - {"name", "description", "parameters", "strict"})
        if unknown:
            raise InvalidArgument(f"Unknown name {unknown[0]!r} at '{at}': Cannot find field.")
        name = function.get("name")
        if not isinstance(name, str):
            raise InvalidArgument(f"Missing required field '{at}.name'.")
        description = function.get("description") or ""
        if not isinstance(description, str):
            raise InvalidArgument(f"Invalid value at '{at}.description': expected a string.")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidArgument(
                f"Invalid value at '{at}.parameters': a JSON Schema is an object."
            )
        functions.append(FunctionDeclaration(name, at, description, parameters))
    if not functions and tool_choice is None:
        return None
    choice = _choice(tool_choice)
    return Tools(tuple(functions), choice, parallel=parallel is not False)


def _choice(value: Any) -> ToolChoice:
    if value is None or value == "auto":
        return ToolChoice()
    if value == "none":
        return ToolChoice("none")
    if value == "required":
        return ToolChoice("any")
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise InvalidArgument("Missing required field 'tool_choice.function.name'.")
        return ToolChoice("any", (name,), "tool_choice.function.name")
    raise InvalidArgument(
        "Invalid value at 'tool_choice': expected auto, none, required or "
        '{"type": "function", "function": {"name": …}}.'
    )
