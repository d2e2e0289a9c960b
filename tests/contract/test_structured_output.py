"""JSON output through every client: the Python SDK (classic ``response.parsed`` with a
pydantic model, Interactions in both forms, streamed), the ``openai`` SDK's ``parse``, the JS
SDK and curl. Every answer must validate against its schema."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import jsonschema
import openai
import pydantic
import pytest
from google import genai
from google.genai import types

from tests.support.contract import API_KEY, MODEL, run_js_example
from tests.support.server import LiveServer

pytestmark = pytest.mark.contract


class Recipe(pydantic.BaseModel):
    name: str
    minutes: int
    tags: list[str]


SCHEMA = Recipe.model_json_schema()
ASK = "Give me a recipe for pancakes."


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> genai.Client:
    return genai.Client(
        api_key=API_KEY, http_options=types.HttpOptions(base_url=live_server.base_url)
    )


def test_classic_response_parsed_with_a_pydantic_model(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=Recipe, max_output_tokens=120
    )
    response = client.models.generate_content(model=MODEL, contents=ASK, config=config)
    assert isinstance(response.parsed, Recipe)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


def test_classic_stream_with_a_json_schema_joins_to_valid_json(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=SCHEMA, max_output_tokens=120
    )
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=ASK, config=config))
    jsonschema.validate(json.loads("".join(c.text or "" for c in chunks)), SCHEMA)


@pytest.mark.parametrize(
    "form",
    [
        {"response_format": {"type": "text", "mime_type": "application/json", "schema": SCHEMA}},
        {"response_format": SCHEMA, "response_mime_type": "application/json"},
    ],
    ids=["typed", "legacy"],
)
def test_interactions_both_forms(client: genai.Client, form: dict[str, Any]) -> None:
    interaction = client.interactions.create(
        model=MODEL, input=ASK, generation_config={"max_output_tokens": 120}, **form
    )
    assert interaction.status == "completed"
    jsonschema.validate(json.loads(interaction.steps[-1].content[0].text), SCHEMA)


def test_interactions_stream_joins_to_valid_json(client: genai.Client) -> None:
    stream = client.interactions.create(
        model=MODEL,
        input=ASK,
        stream=True,
        response_format={"type": "text", "mime_type": "application/json", "schema": SCHEMA},
        generation_config={"max_output_tokens": 120},
    )
    text = "".join(
        event.delta.text
        for event in stream
        if event.event_type == "step.delta" and event.delta.type == "text"
    )
    jsonschema.validate(json.loads(text), SCHEMA)


def test_openai_parse(live_server: LiveServer) -> None:
    oai = openai.OpenAI(api_key=API_KEY, base_url=f"{live_server.base_url}/v1beta/openai/")
    completion = oai.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": ASK}],
        response_format=Recipe,
        max_tokens=120,
    )
    assert isinstance(completion.choices[0].message.parsed, Recipe)


def test_an_unenforceable_schema_is_a_400_naming_the_keyword(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json",
        response_json_schema={"type": "object", "not": {"required": ["a"]}},
    )
    with pytest.raises(genai.errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents=ASK, config=config)
    assert info.value.code == 400
    assert "generation_config.response_json_schema" in str(info.value.message)
    assert '"not"' in str(info.value.message)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_interactions_legacy_form(live_server: LiveServer) -> None:
    body = {
        "model": MODEL,
        "input": ASK,
        "response_mime_type": "application/json",
        "response_format": SCHEMA,
        "generation_config": {"max_output_tokens": 120},
    }
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", f"{live_server.base_url}/v1beta/interactions",
         "-H", f"x-goog-api-key: {API_KEY}", "-H", "Content-Type: application/json",
         "-d", json.dumps(body)],
        capture_output=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    interaction = json.loads(out)
    jsonschema.validate(json.loads(interaction["steps"][-1]["content"][0]["text"]), SCHEMA)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_json_output(live_server: LiveServer) -> None:
    seen = run_js_example(live_server.base_url, "structured_output.mjs", json.dumps(SCHEMA))
    for text in (seen["classic"], seen["interaction"]):
        jsonschema.validate(json.loads(text), SCHEMA)
