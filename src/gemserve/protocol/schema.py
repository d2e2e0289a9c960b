"""One schema layer for every surface: tool parameters and JSON output, in either dialect,
become JSON Schema (draft 2020-12) here, and nowhere else.

Gemini speaks two dialects. ``parameters``/``responseSchema`` are Google's OpenAPI subset
(``"type": "OBJECT"``, ``nullable``, ``propertyOrdering``, snake_case or camelCase keys);
``parametersJsonSchema``/``responseJsonSchema`` (and the Interactions and OpenAI surfaces)
are JSON Schema. A keyword the subset does not define is a 400 that names it with a JSON
pointer, never silently dropped; JSON Schema is checked for shape and size here and compiled
(which names any keyword the constraint engine cannot enforce) by the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gemserve.errors import InvalidArgument

JsonSchema = dict[str, Any]

# Google's Schema fields (both casings) → JSON Schema's names.
_OPENAPI_KEYS = {
    "type": "type",
    "format": "format",
    "title": "title",
    "description": "description",
    "nullable": "nullable",
    "enum": "enum",
    "items": "items",
    "properties": "properties",
    "required": "required",
    "anyOf": "anyOf",
    "any_of": "anyOf",
    "propertyOrdering": "propertyOrdering",
    "property_ordering": "propertyOrdering",
    "minItems": "minItems",
    "min_items": "minItems",
    "maxItems": "maxItems",
    "max_items": "maxItems",
    "minProperties": "minProperties",
    "min_properties": "minProperties",
    "maxProperties": "maxProperties",
    "max_properties": "maxProperties",
    "minLength": "minLength",
    "min_length": "minLength",
    "maxLength": "maxLength",
    "max_length": "maxLength",
    "pattern": "pattern",
    "minimum": "minimum",
    "maximum": "maximum",
    "default": "default",
    "example": "examples",
}
_OPENAPI_TYPES = {
    "STRING": "string",
    "NUMBER": "number",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
    "ARRAY": "array",
    "OBJECT": "object",
    "NULL": "null",
}
# Formats that refine a type (int32, float, enum) rather than constrain text: dropped.
_TYPE_ONLY_FORMATS = frozenset({"int32", "int64", "float", "double", "enum"})


def openapi_to_json_schema(schema: Any, where: str, *, max_depth: int = 32) -> JsonSchema:
    """Google's OpenAPI-subset Schema as JSON Schema. Objects take only their declared
    properties (``additionalProperties: false``), as Gemini's own generation does."""
    return _convert(schema, where, "", max_depth)


def _convert(schema: Any, where: str, pointer: str, depth: int) -> JsonSchema:
    if depth <= 0:
        raise InvalidArgument(f"Invalid value at '{where}': the schema nests too deeply.")
    if not isinstance(schema, Mapping):
        raise InvalidArgument(
            f"Invalid value at '{where}' ({pointer or '/'}): a schema is an object."
        )
    out: JsonSchema = {}
    nullable = False
    ordering: list[str] | None = None
    for key, value in schema.items():
        name = _OPENAPI_KEYS.get(key)
        here = f"{pointer}/{key}"
        if name is None:
            raise InvalidArgument(
                f"Invalid value at '{where}' ({here}): unknown schema field {key!r}."
            )
        if value is None:
            continue
        if name == "type":
            mapped = _OPENAPI_TYPES.get(str(value).upper())
            if mapped is None:
                if str(value).upper() == "TYPE_UNSPECIFIED":
                    continue
                raise InvalidArgument(
                    f"Invalid value at '{where}' ({here}): unknown type {value!r}."
                )
            out["type"] = mapped
        elif name == "nullable":
            nullable = value is True
        elif name == "format":
            if value not in _TYPE_ONLY_FORMATS:
                out["format"] = value
        elif name == "items":
            out["items"] = _convert(value, where, here, depth - 1)
        elif name == "properties":
            if not isinstance(value, Mapping):
                raise InvalidArgument(f"Invalid value at '{where}' ({here}): expected an object.")
            out["properties"] = {
                prop: _convert(sub, where, f"{here}/{prop}", depth - 1)
                for prop, sub in value.items()
            }
        elif name == "anyOf":
            if not isinstance(value, list) or not value:
                raise InvalidArgument(
                    f"Invalid value at '{where}' ({here}): expected a non-empty list."
                )
            out["anyOf"] = [
                _convert(sub, where, f"{here}/{i}", depth - 1) for i, sub in enumerate(value)
            ]
        elif name == "propertyOrdering":
            ordering = [str(v) for v in value]
        elif name == "examples":
            out["examples"] = [value]
        elif name in (
            "minItems",
            "maxItems",
            "minProperties",
            "maxProperties",
            "minLength",
            "maxLength",
        ):
            out[name] = _count(value, where, here)
        else:
            out[name] = value
    if out.get("type") == "object":
        out.setdefault("properties", {})
        out["additionalProperties"] = False
        if ordering is not None:
            props = out["properties"]
            unknown = [p for p in ordering if p not in props]
            if unknown:
                raise InvalidArgument(
                    f"Invalid value at '{where}' ({pointer}/propertyOrdering): {unknown[0]!r} "
                    "is not a property."
                )
            out["properties"] = {
                p: props[p] for p in [*ordering, *(p for p in props if p not in ordering)]
            }
    if nullable:
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _count(value: Any, where: str, pointer: str) -> int:
    """Google's int64 fields arrive as strings ("1") or numbers."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"Invalid value at '{where}' ({pointer}): expected an integer."
        ) from None
    if count < 0 or isinstance(value, bool):
        raise InvalidArgument(f"Invalid value at '{where}' ({pointer}): expected an integer ≥ 0.")
    return count


def check_json_schema(schema: Any, where: str, *, max_bytes: int) -> JsonSchema:
    """A JSON Schema as sent: an object (``true`` means any JSON), within the size limit."""
    if schema is True:
        return {}
    if not isinstance(schema, dict):
        raise InvalidArgument(f"Invalid value at '{where}': a JSON Schema is an object.")
    size = len(orjson.dumps(schema))
    if size > max_bytes:
        raise InvalidArgument(
            f"Invalid value at '{where}': the schema is {size} bytes; the limit is {max_bytes}."
        )
    return schema
