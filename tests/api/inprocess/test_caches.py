"""cachedContents in-process: create (validated and prefilled as a generate request), get,
list, update, delete, expiry and tenant isolation, and generateContent with
``cachedContent`` (the cache's contents, systemInstruction first), with every client error in
Google's envelope."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gemserve.api.context import AppContext
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi
from tests.support.scripted import ScriptedEngine

MODEL = "models/gemini-2.5-flash"
OTHER_TENANT = {"x-goog-api-key": "another-tenant-key"}
NATIVE = {"id": "reasoner", "source": "/nowhere/reasoner.gguf", "thinking": {"mode": "native"}}
CACHE_BODY: dict[str, Any] = {
    "model": MODEL,
    "displayName": "the manual",
    "contents": [{"role": "user", "parts": [{"text": "The manual says: press the red button."}]}],
    "systemInstruction": {"parts": [{"text": "Answer from the manual."}]},
    "ttl": "300s",
}


async def create(
    api: InProcessApi, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await api.client.post(
        "/v1beta/cachedContents",
        json=CACHE_BODY if body is None else body,
        headers=api.headers if headers is None else headers,
    )


async def make_cache(api: InProcessApi, **fields: Any) -> dict[str, Any]:
    response = await create(api, {**CACHE_BODY, **fields})
    assert response.status_code == 200, response.text
    resource: dict[str, Any] = response.json()
    return resource


async def generate(
    api: InProcessApi,
    body: dict[str, Any],
    model: str = "gemini-2.5-flash",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await api.client.post(
        f"/v1beta/models/{model}:generateContent",
        json=body,
        headers=api.headers if headers is None else headers,
    )


def question(text: str = "Which button?", **fields: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **fields}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ----- create and use -------------------------------------------------------------------------


async def test_create_prefills_the_cache_and_answers_the_resource(api: InProcessApi) -> None:
    before = datetime.now(UTC)
    cache = await make_cache(api)
    assert cache["name"].startswith("cachedContents/")
    assert cache["model"] == MODEL
    assert cache["displayName"] == "the manual"
    assert cache["usageMetadata"] == {"totalTokenCount": 5}  # the scripted engine's prompt
    assert "contents" not in cache  # input only, as on Gemini
    created = parse_time(cache["createTime"])
    assert created >= before - timedelta(seconds=1)
    assert cache["updateTime"] == cache["createTime"]
    ttl = parse_time(cache["expireTime"]) - created
    assert timedelta(seconds=299) < ttl <= timedelta(seconds=301)
    # The prefill: the cache as a prompt, one token, no thinking.
    (request,) = api.engine.requests
    assert [(m.role, m.text) for m in request.messages] == [
        ("system", "Answer from the manual."),
        ("user", "The manual says: press the red button."),
    ]
    assert request.sampling.max_output_tokens == 1
    assert api.engine.streams[0].finished


async def test_generate_with_cached_content_puts_the_cache_first(api: InProcessApi) -> None:
    cache = await make_cache(api)
    body = question(cachedContent=cache["name"], generationConfig={"maxOutputTokens": 7})
    response = await generate(api, body)
    assert response.status_code == 200, response.text
    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": "Hello, world"}]
    request = api.engine.requests[-1]
    assert [(m.role, m.text) for m in request.messages] == [
        ("system", "Answer from the manual."),
        ("user", "The manual says: press the red button.\nWhich button?"),
    ]
    assert request.sampling.max_output_tokens == 7


async def test_a_stream_and_a_bare_id_use_the_cache_too(api: InProcessApi) -> None:
    cache = await make_cache(api)
    bare = cache["name"].removeprefix("cachedContents/")
    response = await api.client.post(
        "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        json=question(cached_content=bare),
        headers=api.headers,
    )
    assert response.status_code == 200, response.text
    assert api.engine.requests[-1].messages[0].text == "Answer from the manual."


async def test_a_cached_model_turn_and_an_alias_of_the_same_model(api: InProcessApi) -> None:
    contents = [
        {"role": "user", "parts": [{"text": "Remember 7."}]},
        {"role": "model", "parts": [{"text": "Noted."}]},
    ]
    cache = await make_cache(api, contents=contents, systemInstruction=None)
    response = await generate(
        api, question("Which number?", cachedContent=cache["name"]), model="gemini-flash-latest"
    )
    assert response.status_code == 200, response.text
    assert [(m.role, m.text) for m in api.engine.requests[-1].messages] == [
        ("user", "Remember 7."),
        ("assistant", "Noted."),
        ("user", "Which number?"),
    ]


TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "press",
                "parameters": {"type": "OBJECT", "properties": {"colour": {"type": "STRING"}}},
            }
        ]
    }
]


async def test_cached_tools_and_tool_config_apply_to_the_request(api: InProcessApi) -> None:
    config = {"functionCallingConfig": {"mode": "ANY"}}
    cache = await make_cache(api, tools=TOOLS, toolConfig=config)
    prefill = api.engine.requests[-1].tools
    assert prefill is not None
    response = await generate(api, question(cachedContent=cache["name"]))
    assert response.status_code == 200, response.text
    used = api.engine.requests[-1].tools
    assert used is not None
    assert ([t.name for t in used.tools], used.mode) == (["press"], "any")
    assert used == prefill  # the prefix the prefill left in the slot renders the same tools


# ----- get, list, update, delete --------------------------------------------------------------


async def test_get_list_update_delete(api: InProcessApi) -> None:
    made = [await make_cache(api, displayName=f"c{i}") for i in range(3)]
    name = made[0]["name"]
    got = await api.client.get(f"/v1beta/{name}", headers=api.headers)
    assert got.status_code == 200
    assert got.json() == made[0]
    first = await api.client.get(
        "/v1beta/cachedContents", params={"pageSize": 2}, headers=api.headers
    )
    page = first.json()
    assert [c["displayName"] for c in page["cachedContents"]] == ["c2", "c1"]
    rest = await api.client.get(
        "/v1beta/cachedContents",
        params={"pageSize": 2, "pageToken": page["nextPageToken"]},
        headers=api.headers,
    )
    assert [c["displayName"] for c in rest.json()["cachedContents"]] == ["c0"]
    assert "nextPageToken" not in rest.json()

    patched = await api.client.patch(f"/v1beta/{name}", json={"ttl": "7200s"}, headers=api.headers)
    assert patched.status_code == 200, patched.text
    resource = patched.json()
    ttl = parse_time(resource["expireTime"]) - parse_time(resource["updateTime"])
    assert timedelta(seconds=7199) < ttl <= timedelta(seconds=7201)
    assert resource["createTime"] == made[0]["createTime"]
    when = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    patched = await api.client.patch(
        f"/v1beta/{name}",
        params={"updateMask": "expireTime"},
        json={"expireTime": when.isoformat().replace("+00:00", "Z")},
        headers=api.headers,
    )
    assert patched.status_code == 200, patched.text
    assert parse_time(patched.json()["expireTime"]) == when

    deleted = await api.client.delete(f"/v1beta/{name}", headers=api.headers)
    assert (deleted.status_code, deleted.json()) == (200, {})
    for response in (
        await api.client.get(f"/v1beta/{name}", headers=api.headers),
        await api.client.delete(f"/v1beta/{name}", headers=api.headers),
        await generate(api, question(cachedContent=name)),
    ):
        assert_envelope(response, 404, "NOT_FOUND", name)
    empty = await api.client.get("/v1beta/cachedContents", headers=OTHER_TENANT)
    assert empty.json() == {}


async def test_another_tenant_gets_404_everywhere(api: InProcessApi) -> None:
    name = (await make_cache(api))["name"]
    for response in (
        await api.client.get(f"/v1beta/{name}", headers=OTHER_TENANT),
        await api.client.patch(f"/v1beta/{name}", json={"ttl": "60s"}, headers=OTHER_TENANT),
        await api.client.delete(f"/v1beta/{name}", headers=OTHER_TENANT),
        await generate(api, question(cachedContent=name), headers=OTHER_TENANT),
    ):
        assert_envelope(response, 404, "NOT_FOUND")
    assert (await api.client.get(f"/v1beta/{name}", headers=api.headers)).status_code == 200


async def test_an_expired_cache_is_gone_and_swept(api: InProcessApi) -> None:
    name = (await make_cache(api, ttl="0.05s"))["name"]
    await asyncio.sleep(0.1)
    assert_envelope(await api.client.get(f"/v1beta/{name}", headers=api.headers), 404, "NOT_FOUND")
    assert_envelope(await generate(api, question(cachedContent=name)), 404, "NOT_FOUND")
    ctx: AppContext = api.app.state.ctx
    # The start-up sweep round runs in the background and may have taken it first; either
    # way the row is gone after one sweep (a second finds nothing).
    assert await ctx.caches.sweep() in (0, 1)
    database = sqlite3.connect(api.settings.data_dir / "gemserve.db")
    try:
        assert database.execute("SELECT count(*) FROM cached_contents").fetchone() == (0,)
    finally:
        database.close()


# ----- limits ---------------------------------------------------------------------------------


async def test_a_tenant_holds_at_most_max_tenant_caches(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_tenant_caches": 2})
    for _ in range(2):
        await make_cache(api)
    assert_envelope(await create(api), 429, "RESOURCE_EXHAUSTED", "max_tenant_caches")
    assert (await create(api, headers=OTHER_TENANT)).status_code == 200
    name = (await api.client.get("/v1beta/cachedContents", headers=api.headers)).json()[
        "cachedContents"
    ][0]["name"]
    await api.client.delete(f"/v1beta/{name}", headers=api.headers)
    assert (await create(api)).status_code == 200


async def test_a_cache_over_max_cache_bytes_is_a_400(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_cache_bytes": 2048})
    big = [{"role": "user", "parts": [{"text": "x" * 3000}]}]
    assert_envelope(
        await create(api, {**CACHE_BODY, "contents": big}), 400, "INVALID_ARGUMENT", "2048"
    )
    assert api.engine.requests == []  # refused before the prefill


async def test_a_ttl_over_the_maximum_is_a_400(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_cache_ttl_seconds": 600})
    assert_envelope(
        await create(api, {**CACHE_BODY, "ttl": "601s"}), 400, "INVALID_ARGUMENT", "max_cache_ttl"
    )
    name = (await make_cache(api, ttl="600s"))["name"]
    far = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await api.client.patch(
        f"/v1beta/{name}", json={"expireTime": far}, headers=api.headers
    )
    assert_envelope(response, 400, "INVALID_ARGUMENT", "expire_time")


# ----- client errors --------------------------------------------------------------------------

PAST = "2001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("change", "code", "status", "fragment"),
    [
        ({"model": None}, 400, "INVALID_ARGUMENT", "'model'"),
        ({"model": "models/no-such-model"}, 404, "NOT_FOUND", "no-such-model"),
        ({"contents": None}, 400, "INVALID_ARGUMENT", "'contents'"),
        (
            {"contents": [{"role": "robot", "parts": [{"text": "x"}]}]},
            400,
            "INVALID_ARGUMENT",
            "contents[0].role",
        ),
        ({"ttl": "300"}, 400, "INVALID_ARGUMENT", "'ttl'"),
        ({"ttl": "-5s"}, 400, "INVALID_ARGUMENT", "positive"),
        ({"ttl": 300}, 400, "INVALID_ARGUMENT", "ttl"),
        ({"ttl": None, "expireTime": PAST}, 400, "INVALID_ARGUMENT", "in the past"),
        ({"ttl": None, "expireTime": "tomorrow"}, 400, "INVALID_ARGUMENT", "RFC 3339"),
        ({"expireTime": "2999-01-01T00:00:00Z"}, 400, "INVALID_ARGUMENT", "not both"),
        ({"usageMetadata": {}}, 400, "INVALID_ARGUMENT", "usageMetadata"),
        ({"generationConfig": {}}, 400, "INVALID_ARGUMENT", "generationConfig"),
    ],
)
async def test_a_bad_create_is_a_client_error(
    api: InProcessApi, change: dict[str, Any], code: int, status: str, fragment: str
) -> None:
    body = {k: v for k, v in {**CACHE_BODY, **change}.items() if v is not None}
    assert_envelope(await create(api, body), code, status, fragment)
    assert api.engine.requests == []


async def test_media_the_model_cannot_take_fail_at_create(api: InProcessApi) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    contents = [{"parts": [{"inlineData": {"mimeType": "image/png", "data": png}}]}]
    response = await create(api, {**CACHE_BODY, "contents": contents})
    assert_envelope(response, 400, "INVALID_ARGUMENT", "contents[0].parts[0].inline_data")


async def test_a_prompt_over_the_context_fails_at_create(api: InProcessApi) -> None:
    from gemserve.errors import InvalidArgument

    api.engine.refuse = InvalidArgument("The prompt has 9000 tokens; the context holds 4096.")
    assert_envelope(await create(api), 400, "INVALID_ARGUMENT", "9000 tokens")
    assert (await api.client.get("/v1beta/cachedContents", headers=api.headers)).json() == {}


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"systemInstruction": {"parts": [{"text": "Be rude."}]}}, "system_instruction"),
        ({"system_instruction": {"parts": [{"text": "Be rude."}]}}, "system_instruction"),
        ({"tools": TOOLS}, "tools"),
        ({"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}, "tool_config"),
    ],
)
async def test_a_generate_request_cannot_override_the_cached_fields(
    api: InProcessApi, fields: dict[str, Any], fragment: str
) -> None:
    name = (await make_cache(api))["name"]
    response = await generate(api, question(cachedContent=name, **fields))
    assert_envelope(response, 400, "INVALID_ARGUMENT", fragment, "cached content")


async def test_a_cache_names_its_model(make_api: MakeApi) -> None:
    api = await make_api(models=[NATIVE], engines={"reasoner": ScriptedEngine(model_id="reasoner")})
    name = (await make_cache(api))["name"]
    response = await generate(api, question(cachedContent=name), model="reasoner")
    assert_envelope(response, 400, "INVALID_ARGUMENT", "cached_content", "same")


@pytest.mark.parametrize(
    ("reference", "code", "status"),
    [
        ("cachedContents/Not_An_Id", 400, "INVALID_ARGUMENT"),
        ("cachedContents/abcdef0123456789", 404, "NOT_FOUND"),
    ],
)
async def test_an_unknown_or_malformed_cache_reference(
    api: InProcessApi, reference: str, code: int, status: str
) -> None:
    response = await generate(api, question(cachedContent=reference))
    assert_envelope(response, code, status, "cached")


@pytest.mark.parametrize(
    ("params", "body", "fragment"),
    [
        ({}, {}, "ttl or expire_time"),
        ({"updateMask": "displayName"}, {"ttl": "60s"}, "displayName"),
        ({}, {"displayName": "renamed"}, "displayName"),
        ({}, {"ttl": "60s", "expireTime": "2999-01-01T00:00:00Z"}, "not both"),
        ({}, {"name": "cachedContents/other", "ttl": "60s"}, "'name'"),
    ],
)
async def test_a_bad_update_is_a_400(
    api: InProcessApi, params: dict[str, str], body: dict[str, Any], fragment: str
) -> None:
    name = (await make_cache(api))["name"]
    response = await api.client.patch(
        f"/v1beta/{name}", params=params, json=body, headers=api.headers
    )
    assert_envelope(response, 400, "INVALID_ARGUMENT", fragment)


@pytest.mark.parametrize("path", ["/v1beta/cachedContents/NOPE", "/v1beta/cachedContents/a/b"])
async def test_an_impossible_cache_name_is_not_found(api: InProcessApi, path: str) -> None:
    assert_envelope(await api.client.get(path, headers=api.headers), 404, "NOT_FOUND")


async def test_list_paging_errors_are_400s(api: InProcessApi) -> None:
    response = await api.client.get(
        "/v1beta/cachedContents", params={"pageSize": "many"}, headers=api.headers
    )
    assert_envelope(response, 400, "INVALID_ARGUMENT", "pageSize")


# ----- the OpenAI-compatible surface ----------------------------------------------------------


async def chat(api: InProcessApi, body: dict[str, Any]) -> httpx.Response:
    return await api.client.post(
        "/v1beta/openai/chat/completions",
        json={"model": "gemini-2.5-flash", **body},
        headers={"Authorization": f"Bearer {api.headers['x-goog-api-key']}"},
    )


async def test_openai_extra_body_google_cached_content(api: InProcessApi) -> None:
    name = (await make_cache(api))["name"]
    messages = [{"role": "user", "content": "Which button?"}]
    response = await chat(
        api, {"messages": messages, "extra_body": {"google": {"cached_content": name}}}
    )
    assert response.status_code == 200, response.text
    assert [(m.role, m.text) for m in api.engine.requests[-1].messages] == [
        ("system", "Answer from the manual."),
        ("user", "The manual says: press the red button.\nWhich button?"),
    ]
    with_system = [{"role": "system", "content": "Be rude."}, *messages]
    refused = await chat(
        api, {"messages": with_system, "extra_body": {"google": {"cached_content": name}}}
    )
    assert refused.status_code == 400
    assert "cached_content" in refused.json()["error"]["message"]
    gone = await chat(
        api,
        {
            "messages": messages,
            "extra_body": {"google": {"cached_content": "cachedContents/abcdef0123456789"}},
        },
    )
    assert gone.status_code == 404
