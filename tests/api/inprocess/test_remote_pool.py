"""The whole app with a remote model (``engine = "openai"``) as the default, in-process, over
fake upstreams on loopback: the Interactions and classic surfaces, stored conversations, and
an upstream failing mid-answer (a failed interaction, stored whole; the next one completes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gemserve.app import remote_engine
from gemserve.config import ModelRegistry
from tests.support.fake_upstream import FakeUpstream
from tests.support.inprocess import InProcessApi, MakeApi, sse_data

MODEL = "gemini-3-flash-preview"


@pytest.fixture
async def fakes() -> AsyncIterator[list[FakeUpstream]]:
    upstreams = [await FakeUpstream().start(), await FakeUpstream().start()]
    yield upstreams
    for upstream in upstreams:
        await upstream.stop()


@pytest.fixture
async def pool_api(make_api: MakeApi, fakes: list[FakeUpstream]) -> InProcessApi:
    entry: dict[str, Any] = {
        "id": "pool",
        "engine": "openai",
        "upstreams": [f.url for f in fakes],
        "timeouts": {"health_interval": 0.2, "idle": 2},
    }
    settings: dict[str, Any] = {"models": [entry], "default_model": "pool"}
    spec = ModelRegistry.from_config([entry], {}, "pool").resolve("pool").spec
    engine = remote_engine(spec, None)  # type: ignore[arg-type]
    return await make_api(engines={"pool": engine}, **settings)  # type: ignore[dict-item]


async def test_interactions_on_a_remote_model(
    pool_api: InProcessApi, fakes: list[FakeUpstream]
) -> None:
    first = (await pool_api.create(model=MODEL, input="Hi there")).json()
    assert first["status"] == "completed", first
    assert first["steps"][-1]["content"][0]["text"] == "Hello world"
    assert first["usage"]["total_input_tokens"] == 7
    events = sse_data(
        await pool_api.create(
            model=MODEL, input="And then?", previous_interaction_id=first["id"], stream=True
        )
    )
    assert events[-1]["interaction"]["status"] == "completed"
    # The second turn carried the first one's history to the same upstream.
    (served,) = [f for f in fakes if len(f.requests) == 2]
    messages = served.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "Hello world"


async def test_classic_generate_content_on_a_remote_model(pool_api: InProcessApi) -> None:
    response = await pool_api.client.post(
        f"/v1beta/models/{MODEL}:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        headers=pool_api.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["candidates"][0]["content"]["parts"][0]["text"] == "Hello world"
    assert body["candidates"][0]["finishReason"] == "STOP"


async def test_an_upstream_dying_mid_answer_fails_the_interaction(
    pool_api: InProcessApi, fakes: list[FakeUpstream]
) -> None:
    for fake in fakes:
        fake.queue(["die_mid"])
    body = (await pool_api.create(model=MODEL, input="Hi")).json()
    assert body["status"] == "failed", body
    assert body["errors"][0]["code"] == "INTERNAL"
    stored = (await pool_api.get(body["id"])).json()
    assert stored["status"] == "failed"
    # Stored as the client saw it: the partial answer, and the error.
    assert stored["steps"][-1] == body["steps"][-1]
    assert stored["errors"] == body["errors"]
    # The next request goes to the upstream that is still alive.
    (dead,) = [f for f in fakes if f.chats]
    alive = next(f for f in fakes if f is not dead)
    alive.script.clear()
    again = (await pool_api.create(model=MODEL, input="Hi")).json()
    assert again["status"] == "completed", again
    assert again["steps"][-1]["content"][0]["text"] == "Hello world"
    assert (dead.chats, alive.chats) == (1, 1)


async def test_every_upstream_busy_is_a_429(
    pool_api: InProcessApi, fakes: list[FakeUpstream]
) -> None:
    for fake in fakes:
        fake.queue(["503"])
    response = await pool_api.create(model=MODEL, input="Hi")
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


async def test_estimated_usage_is_flagged_on_every_surface(
    pool_api: InProcessApi, fakes: list[FakeUpstream]
) -> None:
    """The fake upstreams have no tokenizer endpoint and, with ``no_usage``, stream no usage
    (as llama-cpp-python's server): every usage says ``estimated: true``, unary responses
    carry the header; an answer with the upstream's own usage has neither."""
    header = "x-gemserve-usage-estimated"
    for fake in fakes:
        fake.default = "no_usage"
    unary = await pool_api.create(model=MODEL, input="Hi there")
    assert unary.json()["usage"]["estimated"] is True
    assert unary.headers[header] == "true"
    stored = (await pool_api.get(unary.json()["id"])).json()
    assert stored["usage"]["estimated"] is True
    events = sse_data(await pool_api.create(model=MODEL, input="Hi there", stream=True))
    assert events[-1]["interaction"]["usage"]["estimated"] is True
    contents = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    classic = await pool_api.client.post(
        f"/v1beta/models/{MODEL}:generateContent", json=contents, headers=pool_api.headers
    )
    assert classic.json()["usageMetadata"]["estimated"] is True
    assert classic.headers[header] == "true"
    counted = await pool_api.client.post(
        f"/v1beta/models/{MODEL}:countTokens", json=contents, headers=pool_api.headers
    )
    assert counted.json()["estimated"] is True
    assert counted.json()["totalTokens"] > 0
    assert counted.headers[header] == "true"
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    openai = await pool_api.client.post(
        "/v1beta/openai/chat/completions", json=chat, headers=pool_api.headers
    )
    assert openai.json()["usage"]["estimated"] is True
    assert openai.headers[header] == "true"
    for fake in fakes:
        fake.default = "ok"
    exact = await pool_api.create(model=MODEL, input="Hi there")
    assert "estimated" not in exact.json()["usage"]
    assert header not in exact.headers
    classic = await pool_api.client.post(
        f"/v1beta/models/{MODEL}:generateContent", json=contents, headers=pool_api.headers
    )
    assert "estimated" not in classic.json()["usageMetadata"]
    assert header not in classic.headers
