"""``tools`` and ``generation_config.tool_choice`` of an Interactions request, read into the
surface-neutral declarations. Built-in tools this server does not run get a 400 that names
the tool and says why."""

from __future__ import annotations

from typing import Any

from gemserve.errors import InvalidArgument
from gemserve.service.turn_input import FunctionDeclaration, ToolChoice, ToolMode, Tools

MODES: tuple[ToolMode, ...] = ("auto", "any", "none", "validated")

# Built-in tools: each needs a service behind it that a self-hosted server does not have.
BUILT_IN = {
    "google_search": "it searches the web with Google Search",
    "url_context": "it fetches web pages, and this server makes no outbound requests",
    "code_execution": "it runs model-written code in a sandbox this server does not have",
    "file_search": "it searches File Search stores, which this server does not keep",
    "google_maps": "it queries Google Maps",
    "computer_use": "it drives a browser environment this server does not have",
    "mcp_server": "calling MCP servers is not implemented yet; declare the functions instead",
    "retrieval": "it searches Vertex AI retrieval stores",
}


def read_tools(raw: list[Any] | None, tool_choice: Any) -> Tools | None:
    functions: list[FunctionDeclaration] = []
    for i, tool in enumerate(raw or ()):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidArgument(f"Invalid value at '{where}': a tool is an object.")
        kind = tool.get("type")
        if kind in BUILT_IN:
            raise InvalidArgument(
                f"Invalid value at '{where}.type': the built-in tool {kind!r} is not available "
                f"on this server: {BUILT_IN[kind]}."
            )
        if kind != "function":
            raise InvalidArgument(
                f"Invalid value at '{where}.type': expected 'function' or a built-in tool type."
            )
        unknown = sorted(set(tool) - {"type", "name", "description", "parameters"})
        if unknown:
            raise InvalidArgument(f"Unknown name {unknown[0]!r} at '{where}': Cannot find field.")
        name = tool.get("name")
        if not isinstance(name, str):
            raise InvalidArgument(f"Missing required field '{where}.name'.")
        description = tool.get("description") or ""
        if not isinstance(description, str):
            raise InvalidArgument(f"Invalid value at '{where}.description': expected a string.")
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidArgument(
                f"Invalid value at '{where}.parameters': a JSON Schema is an object."
            )
        functions.append(FunctionDeclaration(name, where, description, parameters))
    choice = read_tool_choice(tool_choice)
    if not functions and tool_choice is None:
        return None
    return Tools(tuple(functions), choice)


def read_tool_choice(value: Any, where: str = "generation_config.tool_choice") -> ToolChoice:
    if value is None:
        return ToolChoice()
    if isinstance(value, str):
        return ToolChoice(_mode(value, where))
    if isinstance(value, dict) and set(value) == {"allowed_tools"}:
        allowed = value["allowed_tools"]
        inner = f"{where}.allowed_tools"
        if not isinstance(allowed, dict) or set(allowed) - {"mode", "tools"}:
            raise InvalidArgument(
                f'Invalid value at \'{inner}\': expected {{"mode": …, "tools": [names]}}.'
            )
        names = allowed.get("tools")
        if names is not None and (
            not isinstance(names, list) or not all(isinstance(n, str) for n in names)
        ):
            raise InvalidArgument(f"Invalid value at '{inner}.tools': a list of function names.")
        mode = _mode(allowed.get("mode", "auto"), f"{inner}.mode")
        return ToolChoice(mode, tuple(names) if names is not None else None, f"{inner}.tools")
    raise InvalidArgument(
        f"Invalid value at '{where}': expected one of auto, any, none, validated, or "
        '{"allowed_tools": {"mode": …, "tools": [names]}}.'
    )


def _mode(value: Any, where: str) -> ToolMode:
    for mode in MODES:
        if value == mode:
            return mode
    raise InvalidArgument(
        f"Invalid value at '{where}': {value!r}; expected one of auto, any, none, validated."
    )
