"""Several answers to one request (classic ``candidateCount``, OpenAI ``n``), in-process:
each candidate is its own engine request on the same prompt, with seed + i when a seed is
given; the response lists them by index and counts the prompt once. (Whether the engine
shares the prompt's KV cache between them: tests/engine/llama/test_kv_reuse.py.)"""

from __future__ import annotations

import json
from typing import Any

from tests.support.envelope import assert_envelope, assert_openai_error
from tests.support.inprocess import InProcessApi

BEARER = {"Authorization": "Bearer k"}


async def classic(api: InProcessApi, config: dict[str, Any], stream: bool = False) -> Any:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": config}
    return await api.client.post(
        f"/v1beta/models/gemini-2.5-flash:{method}", json=body, headers=api.headers
    )


async def test_candidate_count_gives_that_many_candidates(api: InProcessApi) -> None:
    response = await classic(api, {"candidateCount": 3, "seed": 7})
    body = response.json()
    assert response.status_code == 200, body
    assert [c["index"] for c in body["candidates"]] == [0, 1, 2]
    assert all(c["content"]["parts"][0]["text"] == "Hello, world" for c in body["candidates"])
    assert [r.sampling.seed for r in api.engine.requests] == [7, 8, 9]
    usage = body["usageMetadata"]
    assert usage["promptTokenCount"] == 5  # once, not per candidate
    assert usage["candidatesTokenCount"] == 9


async def test_streamed_candidates_carry_their_index(api: InProcessApi) -> None:
    response = await classic(api, {"candidateCount": 2}, stream=True)
    chunks = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    texts: dict[int, str] = {}
    for chunk in chunks:
        (candidate,) = chunk["candidates"]
        for part in candidate.get("content", {}).get("parts", []):
            texts[candidate["index"]] = texts.get(candidate["index"], "") + part["text"]
    assert texts == {0: "Hello, world", 1: "Hello, world"}
    assert "usageMetadata" in chunks[-1]
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 6
    assert sum("usageMetadata" in c for c in chunks) == 1


async def test_too_many_candidates_is_400(api: InProcessApi) -> None:
    response = await classic(api, {"candidateCount": 9})
    assert_envelope(response, 400, "INVALID_ARGUMENT", "candidate_count", "limit is 8")
    assert api.engine.requests == []


async def test_openai_n_gives_choices(api: InProcessApi) -> None:
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "Hi"}], "n": 2}
    response = await api.client.post("/v1beta/openai/chat/completions", json=body, headers=BEARER)
    data = response.json()
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert data["usage"]["completion_tokens"] == 6
    assert data["usage"]["prompt_tokens"] == 5


async def test_openai_n_streams_each_choice(api: InProcessApi) -> None:
    body = {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": "Hi"}],
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await api.client.post("/v1beta/openai/chat/completions", json=body, headers=BEARER)
    chunks = [
        json.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    texts: dict[int, str] = {}
    finishes = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (
                choice["delta"].get("content") or ""
            )
            if choice["finish_reason"]:
                finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "Hello, world", 1: "Hello, world"}
    assert finishes == {0: "stop", 1: "stop"}
    assert chunks[-1]["usage"]["completion_tokens"] == 6


async def test_openai_too_many_choices_is_400(api: InProcessApi) -> None:
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "Hi"}], "n": 9}
    response = await api.client.post("/v1beta/openai/chat/completions", json=body, headers=BEARER)
    assert_openai_error(response, 400, "invalid_request_error", "'n'")
