"""JSON output requests on the three surfaces, in-process: each form becomes the same JSON
Schema constraint on the engine request, and each malformed form is a 400 naming the field.
(Whether the engine keeps to the schema: tests/engine/llama/test_json_output.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.envelope import assert_envelope, assert_openai_error
from tests.support.inprocess import InProcessApi, MakeApi

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
BEARER = {"Authorization": "Bearer k"}


def constraint_schema(api: InProcessApi) -> Any:
    constraint = api.engine.requests[-1].constraint
    assert constraint is not None
    assert constraint.syntax == "json_schema"
    assert constraint.scope == "answer"
    return json.loads(constraint.grammar)


async def classic(api: InProcessApi, config: dict[str, Any]) -> Any:
    return await api.client.post(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        json={"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": config},
        headers=api.headers,
    )


async def chat(api: InProcessApi, response_format: Any) -> Any:
    return await api.client.post(
        "/v1beta/openai/chat/completions",
        json={
            "model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "Hi"}],
            "response_format": response_format,
        },
        headers=BEARER,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"response_format": {"type": "text", "mime_type": "application/json", "schema": SCHEMA}},
        {"response_format": [{"type": "text", "mime_type": "application/json", "schema": SCHEMA}]},
        {"response_format": SCHEMA, "response_mime_type": "application/json"},
    ],
)
async def test_both_interactions_forms_become_the_schema(
    api: InProcessApi, body: dict[str, Any]
) -> None:
    response = await api.create(**body)
    assert response.status_code == 200, response.text
    assert constraint_schema(api) == SCHEMA


async def test_json_mime_alone_is_any_json_and_text_is_no_constraint(api: InProcessApi) -> None:
    assert (await api.create(response_mime_type="application/json")).status_code == 200
    assert constraint_schema(api) == {}
    assert (await api.create(response_format={"type": "text"})).status_code == 200
    assert api.engine.requests[-1].constraint is None


async def test_classic_schemas_in_both_dialects(api: InProcessApi) -> None:
    ok = await classic(api, {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA})
    assert ok.status_code == 200, ok.text
    assert constraint_schema(api) == SCHEMA
    google = {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}, "required": ["a"]}
    ok = await classic(api, {"response_mime_type": "application/json", "response_schema": google})
    assert ok.status_code == 200, ok.text
    assert constraint_schema(api) == {**SCHEMA, "additionalProperties": False}


async def test_openai_json_object_and_json_schema(api: InProcessApi) -> None:
    assert (await chat(api, {"type": "json_object"})).status_code == 200
    assert constraint_schema(api) == {"type": "object"}
    spec = {"name": "a", "schema": SCHEMA, "strict": True}
    assert (await chat(api, {"type": "json_schema", "json_schema": spec})).status_code == 200
    assert constraint_schema(api) == SCHEMA
    assert (await chat(api, {"type": "text"})).status_code == 200
    assert api.engine.requests[-1].constraint is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"response_format": SCHEMA}, "needs response_mime_type application/json"),
        ({"response_format": {"type": "image"}}, "'response_format.type': image output"),
        ({"response_format": [{"type": "video"}]}, "'response_format[0].type'"),
        ({"response_format": [7]}, "'response_format[0].type'"),
        (
            {"response_format": {"type": "text", "mime_type": "text/csv"}},
            "'response_format.mime_type'",
        ),
        ({"response_format": {"type": "text", "extra": 1}}, "Unknown name 'extra'"),
        (
            {"response_format": {"type": "text", "mime_type": "application/json", "schema": 3}},
            "'response_format.schema': a JSON Schema is an object",
        ),
        ({"response_mime_type": "text/csv"}, "'response_mime_type'"),
    ],
)
async def test_interactions_errors_name_the_field(
    api: InProcessApi, body: dict[str, Any], fragment: str
) -> None:
    assert_envelope(await api.create(**body), 400, "INVALID_ARGUMENT", fragment)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"responseJsonSchema": SCHEMA}, "needs application/json"),
        (
            {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA,
             "responseSchema": {"type": "OBJECT"}},
            "not both",
        ),
        (
            {"responseMimeType": "application/json",
             "responseSchema": {"type": "OBJECT", "properties": {"a": {"oneOf": []}}}},
            "(/properties/a/oneOf): unknown schema field 'oneOf'",
        ),
        ({"responseMimeType": "text/x.enum"}, "'generation_config.response_mime_type'"),
        (
            {"responseMimeType": "text/x.enum",
             "responseSchema": {"type": "STRING", "enum": []}},
            "'generation_config.response_schema'",
        ),
        ({"responseMimeType": "text/html"}, "'generation_config.response_mime_type'"),
    ],
)  # fmt: skip
async def test_classic_errors_name_the_field(
    api: InProcessApi, config: dict[str, Any], fragment: str
) -> None:
    assert_envelope(await classic(api, config), 400, "INVALID_ARGUMENT", fragment)


@pytest.mark.parametrize(
    ("response_format", "fragment"),
    [
        ({"type": "yaml"}, "'response_format.type'"),
        ({"type": "json_schema"}, "'response_format.json_schema'"),
        ({"type": "json_schema", "json_schema": {"schema": SCHEMA, "x": 1}}, "Unknown name 'x'"),
    ],
)
async def test_openai_errors_name_the_field(
    api: InProcessApi, response_format: Any, fragment: str
) -> None:
    assert_openai_error(await chat(api, response_format), 400, "invalid_request_error", fragment)


async def test_a_schema_over_the_limit_is_refused(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_schema_bytes": 64})
    big = {"type": "object", "description": "x" * 100}
    response = await api.create(response_mime_type="application/json", response_format=big)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "the limit is 64")


async def test_a_model_with_a_grammar_of_its_own_takes_no_schema(make_api: MakeApi) -> None:
    model = {"id": "yesno", "source": "/nowhere/yesno.gguf", "grammar": 'root ::= "yes" | "no"'}
    api = await make_api(models=[model])
    response = await api.create(model="yesno", response_mime_type="application/json")
    assert_envelope(response, 400, "INVALID_ARGUMENT", "has a grammar of its own")


async def test_classic_enum_output_is_a_choice_of_its_values(api: InProcessApi) -> None:
    config = {
        "responseMimeType": "text/x.enum",
        "responseSchema": {"type": "STRING", "enum": ["red", "green"]},
    }
    response = await classic(api, config)
    assert response.status_code == 200, response.text
    constraint = api.engine.requests[-1].constraint
    assert constraint is not None
    assert constraint.syntax == "lark"
    assert constraint.grammar == 'start: "red" | "green"'
