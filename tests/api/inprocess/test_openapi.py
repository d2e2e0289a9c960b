"""The OpenAPI document: valid 3.1, the same routes as the app, and every example request of
the README and of the user's guide valid against it."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate
from referencing import Registry, Resource
from starlette.routing import Match, Route

from gemserve.api.openapi import OPERATIONS, openapi_document
from tests.support.guide import CURL_EXAMPLES
from tests.support.inprocess import InProcessApi
from tests.support.paths import ROOT

SAMPLE = {"version": "v1beta", "model": "gemini-2.5-flash", "id": "abc123"}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)


def api_routes(api: InProcessApi) -> list[Route]:
    return [route for route in api.app.routes if isinstance(route, Route)]


def matches(route: Route, method: str, path: str) -> bool:
    scope = {"type": "http", "method": method.upper(), "path": path}
    match, _ = route.matches(scope)
    return match is Match.FULL


async def test_it_is_served_without_a_key_and_is_valid_openapi_3_1(api: InProcessApi) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    validate(document)


async def test_every_operation_is_a_route_and_every_route_an_operation(
    api: InProcessApi,
) -> None:
    routes = api_routes(api)
    orphans = [
        (op.method, op.path)
        for op in OPERATIONS
        if not any(matches(route, op.method, concrete(op.path)) for route in routes)
    ]
    assert not orphans, f"documented but not served: {orphans}"
    undocumented = [
        (method, route.path)
        for route in routes
        for method in sorted((route.methods or set()) - {"HEAD"})
        if not any(
            op.method.upper() == method and matches(route, method, concrete(op.path))
            for op in OPERATIONS
        )
    ]
    assert not undocumented, f"served but not documented: {undocumented}"


def request_schema(method: str, path: str) -> dict[str, Any]:
    """The request body schema of the operation a concrete URL path reaches."""
    for op in OPERATIONS:
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(op.path)) + "$"
        if op.method == method and re.match(pattern, path) and op.body is not None:
            body = openapi_document()["paths"][op.path][op.method]["requestBody"]
            schema: dict[str, Any] = body["content"]["application/json"]["schema"]
            return schema
    raise AssertionError(f"no documented operation takes a body at {method} {path}")


def check(method: str, url: str, body: Any) -> None:
    document = openapi_document()
    registry: Registry[Any] = Registry().with_resource(
        "urn:gemserve",
        Resource.from_contents(
            {**document, "$schema": "https://json-schema.org/draft/2020-12/schema"}
        ),
    )
    schema = {
        **request_schema(method, url.split("?")[0]),
        "$schema": "https://json-schema.org/draft/2020-12/schema",
    }
    schema = json.loads(json.dumps(schema).replace('"#/components', '"urn:gemserve#/components'))
    jsonschema.Draft202012Validator(schema, registry=registry).validate(body)


def curl_requests(text: str) -> list[tuple[str, str, Any]]:
    """(method, path, JSON body) of every ``curl … -d '{…}'`` in ``text``."""
    found = []
    for command in re.findall(r"curl [^`]*?-d '[^']*'", text, flags=re.S):
        words = shlex.split(command.replace("\\\n", " "))
        url = next(w for w in words if w.startswith(("http://", "https://")))
        path = re.sub(r"^https?://[^/]+", "", url)
        body = json.loads(words[words.index("-d") + 1])
        found.append(("post", path, body))
    return found


@pytest.mark.parametrize("name", sorted(CURL_EXAMPLES))
def test_the_guides_curl_examples_validate(name: str) -> None:
    (method, path, body), *_ = curl_requests(CURL_EXAMPLES[name])
    check(method, path, body)


def test_the_readmes_example_requests_validate() -> None:
    requests = curl_requests((ROOT / "README.md").read_text())
    assert requests, "the README has curl examples"
    for method, path, body in requests:
        check(method, path, body)


def test_both_casings_and_unknown_fields() -> None:
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    contents = [{"role": "user", "parts": [{"text": "hi"}]}]
    check("post", path, {"contents": contents, "generationConfig": {"maxOutputTokens": 5}})
    check("post", path, {"contents": contents, "generation_config": {"max_output_tokens": 5}})
    with pytest.raises(jsonschema.ValidationError):
        check("post", path, {"contents": contents, "generationConfig": {"maxOutputTokenz": 5}})
