"""The schema layer: Google's OpenAPI subset to JSON Schema, and the checks on JSON Schema."""

from __future__ import annotations

from typing import Any

import pytest

from gemserve.errors import InvalidArgument
from gemserve.protocol.schema import check_json_schema, openapi_to_json_schema

# What google-genai 3.3.0 sends for a pydantic model (response_schema=Recipe).
RECIPE = {
    "properties": {
        "name": {"title": "Name", "type": "STRING"},
        "minutes": {"nullable": True, "title": "Minutes", "type": "INTEGER"},
        "tags": {"items": {"type": "STRING"}, "title": "Tags", "type": "ARRAY"},
    },
    "propertyOrdering": ["name", "minutes", "tags"],
    "required": ["name", "tags"],
    "title": "Recipe",
    "type": "OBJECT",
}


def test_a_pydantic_models_schema_becomes_json_schema() -> None:
    assert openapi_to_json_schema(RECIPE, "response_schema") == {
        "type": "object",
        "title": "Recipe",
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "minutes": {"title": "Minutes", "type": ["integer", "null"]},
            "tags": {"items": {"type": "string"}, "title": "Tags", "type": "array"},
        },
        "required": ["name", "tags"],
        "additionalProperties": False,
    }


def test_property_ordering_orders_the_properties_in_either_casing() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {"b": {"type": "STRING"}, "a": {"type": "STRING"}, "c": {"type": "STRING"}},
        "property_ordering": ["a", "b"],
    }
    assert list(openapi_to_json_schema(schema, "s")["properties"]) == ["a", "b", "c"]


def test_nullable_enums_any_of_and_counts() -> None:
    schema: dict[str, Any] = {
        "anyOf": [
            {"type": "STRING", "enum": ["x", "y"], "nullable": True, "format": "enum"},
            {"type": "ARRAY", "items": {"type": "NUMBER", "format": "float"}, "minItems": "1"},
        ],
    }
    assert openapi_to_json_schema(schema, "s") == {
        "anyOf": [
            {"type": ["string", "null"], "enum": ["x", "y", None]},
            {"type": "array", "items": {"type": "number"}, "minItems": 1},
        ]
    }


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "OBJECT", "properties": {"a": {"type": "STRING", "oneOf": []}}},
         "(/properties/a/oneOf): unknown schema field 'oneOf'"),
        ({"type": "TUPLE"}, "(/type): unknown type 'TUPLE'"),
        ({"type": "OBJECT", "properties": {}, "propertyOrdering": ["z"]},
         "(/propertyOrdering): 'z' is not a property"),
        ({"type": "ARRAY", "minItems": "many"}, "(/minItems): expected an integer"),
        ([], "(/): a schema is an object"),
    ],
)  # fmt: skip
def test_what_the_subset_does_not_define_is_a_400_with_a_pointer(
    schema: Any, fragment: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        openapi_to_json_schema(schema, "tools[0].function_declarations[0].parameters")
    assert info.value.message.startswith(
        "Invalid value at 'tools[0].function_declarations[0].parameters'"
    )
    assert fragment in info.value.message


def test_a_deep_schema_is_refused() -> None:
    schema: dict[str, Any] = {"type": "STRING"}
    for _ in range(40):
        schema = {"type": "ARRAY", "items": schema}
    with pytest.raises(InvalidArgument, match="nests too deeply"):
        openapi_to_json_schema(schema, "s")


def test_json_schema_is_checked_for_shape_and_size() -> None:
    assert check_json_schema(True, "s", max_bytes=100) == {}
    assert check_json_schema({"type": "string"}, "s", max_bytes=100) == {"type": "string"}
    with pytest.raises(InvalidArgument, match="is an object"):
        check_json_schema("string", "s", max_bytes=100)
    with pytest.raises(InvalidArgument, match="the limit is 10"):
        check_json_schema({"type": "string"}, "s", max_bytes=10)
