"""Log probabilities on the classic and OpenAI surfaces, in-process: the request's knobs
reach the engine as ``SamplingParams.logprobs``, each answer token's ``TokenLogprob`` becomes
the surface's shape (``avgLogprobs``/``logprobsResult``, ``choices[].logprobs``), and bad
combinations are 400s. (The real values: tests/engine/llama/test_logprobs.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.envelope import assert_envelope, assert_openai_error
from tests.support.inprocess import InProcessApi

BEARER = {"Authorization": "Bearer k"}


async def classic(api: InProcessApi, config: dict[str, Any], stream: bool = False) -> Any:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": config}
    return await api.client.post(
        f"/v1beta/models/gemini-2.5-flash:{method}", json=body, headers=api.headers
    )


async def chat(api: InProcessApi, **extra: Any) -> Any:
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "Hi"}], **extra}
    return await api.client.post("/v1beta/openai/chat/completions", json=body, headers=BEARER)


async def test_classic_logprobs_result(api: InProcessApi) -> None:
    response = await classic(api, {"responseLogprobs": True, "logprobs": 2})
    (candidate,) = response.json()["candidates"]
    assert api.engine.requests[-1].sampling.logprobs == 2
    assert candidate["avgLogprobs"] == pytest.approx(-0.5)
    result = candidate["logprobsResult"]
    assert [c["token"] for c in result["chosenCandidates"]] == ["Hello", ", ", "world"]
    assert result["topCandidates"][0]["candidates"] == [
        {"token": "alt0", "logProbability": -1.0},
        {"token": "alt1", "logProbability": -2.0},
    ]


async def test_classic_streamed_chunks_carry_their_tokens(api: InProcessApi) -> None:
    response = await classic(api, {"responseLogprobs": True}, stream=True)
    chunks = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    chosen = [
        c["token"]
        for chunk in chunks
        for c in chunk["candidates"][0].get("logprobsResult", {}).get("chosenCandidates", [])
    ]
    assert chosen == ["Hello", ", ", "world"]


async def test_without_response_logprobs_there_are_none(api: InProcessApi) -> None:
    (candidate,) = (await classic(api, {})).json()["candidates"]
    assert "logprobsResult" not in candidate
    assert api.engine.requests[-1].sampling.logprobs is None


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"logprobs": 2}, "needs response_logprobs"),
        ({"responseLogprobs": True, "logprobs": 21}, "generation_config.logprobs"),
    ],
)
async def test_classic_bad_logprobs_are_400(
    api: InProcessApi, config: dict[str, Any], fragment: str
) -> None:
    assert_envelope(await classic(api, config), 400, "INVALID_ARGUMENT", fragment)


async def test_openai_logprobs(api: InProcessApi) -> None:
    response = await chat(api, logprobs=True, top_logprobs=1)
    choice = response.json()["choices"][0]
    content = choice["logprobs"]["content"]
    assert [c["token"] for c in content] == ["Hello", ", ", "world"]
    assert content[0]["bytes"] == list(b"Hello")
    assert content[0]["top_logprobs"] == [
        {"token": "alt0", "logprob": -1.0, "bytes": [97, 108, 116, 48]}
    ]


async def test_openai_streamed_logprobs(api: InProcessApi) -> None:
    response = await chat(api, logprobs=True, stream=True)
    tokens = []
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                for entry in (choice.get("logprobs") or {}).get("content", []):
                    tokens.append(entry["token"])
    assert tokens == ["Hello", ", ", "world"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"top_logprobs": 2}, "'top_logprobs'"),
        ({"logprobs": True, "top_logprobs": 30}, "'top_logprobs'"),
    ],
)
async def test_openai_bad_logprobs_are_400(
    api: InProcessApi, extra: dict[str, Any], fragment: str
) -> None:
    assert_openai_error(await chat(api, **extra), 400, "invalid_request_error", fragment)
