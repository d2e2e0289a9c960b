"""``tools`` and ``toolConfig`` of a generateContent request, read into the surface-neutral
declarations. Keys come camelCase or snake_case at any depth (the Python SDK mixes them).
``parameters`` is Google's OpenAPI subset; ``parametersJsonSchema`` is JSON Schema."""

from __future__ import annotations

from typing import Any

from gemserve.errors import InvalidArgument
from gemserve.protocol.schema import openapi_to_json_schema
from gemserve.service.turn_input import FunctionDeclaration, ToolChoice, ToolMode, Tools

MODES: dict[str, ToolMode] = {
    "AUTO": "auto",
    "MODE_UNSPECIFIED": "auto",
    "ANY": "any",
    "NONE": "none",
    "VALIDATED": "validated",
}

# Built-in tools: each needs a service behind it that a self-hosted server does not have.
BUILT_IN = {
    "google_search": "it searches the web with Google Search",
    "google_search_retrieval": "it searches the web with Google Search",
    "enterprise_web_search": "it searches the web",
    "url_context": "it fetches web pages, and this server makes no outbound requests",
    "code_execution": "it runs model-written code in a sandbox this server does not have",
    "file_search": "it searches File Search stores, which this server does not keep",
    "google_maps": "it queries Google Maps",
    "computer_use": "it drives a browser environment this server does not have",
    "retrieval": "it searches Vertex AI retrieval stores",
}

_DECLARATION_FIELDS = {
    "name",
    "description",
    "parameters",
    "parameters_json_schema",
    "response",
    "response_json_schema",
    "behavior",
}


def snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _fields(value: dict[str, Any]) -> dict[str, Any]:
    """An object's keys in snake_case (the wire may use either casing)."""
    return {snake(k): v for k, v in value.items()}


def read_tools(raw: list[Any] | None, tool_config: Any) -> Tools | None:
    functions: list[FunctionDeclaration] = []
    for i, tool in enumerate(raw or ()):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidArgument(f"Invalid value at '{where}': a tool is an object.")
        for key, value in _fields(tool).items():
            if key in BUILT_IN:
                raise InvalidArgument(
                    f"Invalid value at '{where}.{key}': the built-in tool {key!r} is not "
                    f"available on this server: {BUILT_IN[key]}."
                )
            if key != "function_declarations":
                raise InvalidArgument(f"Unknown name {key!r} at '{where}': Cannot find field.")
            if not isinstance(value, list):
                raise InvalidArgument(f"Invalid value at '{where}.function_declarations'.")
            for j, declaration in enumerate(value):
                functions.append(_declaration(declaration, f"{where}.function_declarations[{j}]"))
    choice = read_tool_config(tool_config)
    if not functions and tool_config is None:
        return None
    return Tools(tuple(functions), choice)


def _declaration(raw: Any, where: str) -> FunctionDeclaration:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"Invalid value at '{where}': a function declaration is an object.")
    fields = _fields(raw)
    unknown = sorted(set(fields) - _DECLARATION_FIELDS)
    if unknown:
        raise InvalidArgument(f"Unknown name {unknown[0]!r} at '{where}': Cannot find field.")
    name = fields.get("name")
    if not isinstance(name, str):
        raise InvalidArgument(f"Missing required field '{where}.name'.")
    description = fields.get("description") or ""
    if not isinstance(description, str):
        raise InvalidArgument(f"Invalid value at '{where}.description': expected a string.")
    openapi, json_schema = fields.get("parameters"), fields.get("parameters_json_schema")
    if openapi is not None and json_schema is not None:
        raise InvalidArgument(
            f"Invalid value at '{where}': set parameters or parameters_json_schema, not both."
        )
    if json_schema is not None:
        if not isinstance(json_schema, dict):
            raise InvalidArgument(
                f"Invalid value at '{where}.parameters_json_schema': a JSON Schema is an object."
            )
        return FunctionDeclaration(name, where, description, json_schema, "parameters_json_schema")
    parameters = None
    if openapi is not None:
        parameters = openapi_to_json_schema(openapi, f"{where}.parameters")
    return FunctionDeclaration(name, where, description, parameters)


def read_tool_config(raw: Any) -> ToolChoice:
    if raw is None:
        return ToolChoice()
    where = "tool_config"
    if not isinstance(raw, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object.")
    fields = _fields(raw)
    unknown = sorted(set(fields) - {"function_calling_config", "retrieval_config"})
    if unknown:
        raise InvalidArgument(f"Unknown name {unknown[0]!r} at '{where}': Cannot find field.")
    config = fields.get("function_calling_config")
    if config is None:
        return ToolChoice()
    where = f"{where}.function_calling_config"
    if not isinstance(config, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object.")
    config = _fields(config)
    unknown = sorted(set(config) - {"mode", "allowed_function_names"})
    if unknown:
        raise InvalidArgument(f"Unknown name {unknown[0]!r} at '{where}': Cannot find field.")
    mode_name = config.get("mode", "AUTO")
    mode = MODES.get(mode_name) if isinstance(mode_name, str) else None
    if mode is None:
        raise InvalidArgument(
            f"Invalid value at '{where}.mode': {mode_name!r}; expected one of AUTO, ANY, NONE, "
            "VALIDATED."
        )
    names = config.get("allowed_function_names")
    if names is None:
        return ToolChoice(mode)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidArgument(
            f"Invalid value at '{where}.allowed_function_names': a list of function names."
        )
    if mode not in ("any", "validated"):
        raise InvalidArgument(
            f"Invalid value at '{where}.allowed_function_names': it needs mode ANY or VALIDATED."
        )
    return ToolChoice(mode, tuple(names), f"{where}.allowed_function_names")
