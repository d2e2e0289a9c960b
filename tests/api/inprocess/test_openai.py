"""The OpenAI-compatible surface in-process: chat completions over the shared pipeline, its
errors in OpenAI's envelope, and the client errors of service/openai/."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gemserve.engine import FinishReason
from tests.support.envelope import assert_openai_error
from tests.support.inprocess import InProcessApi
from tests.support.sse import parse_sse

BEARER = {"authorization": "Bearer inprocess-test-key"}
PNG_URL = "data:image/png;base64,eA=="
OGG = {"data": "AA", "format": "ogg"}


async def complete(api: InProcessApi, **body: Any) -> httpx.Response:
    payload = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "Hi"}]}
    payload.update(body)
    return await api.client.post("/v1beta/openai/chat/completions", json=payload, headers=BEARER)


def user(*content: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(content)}]


async def test_a_chat_completion(api: InProcessApi) -> None:
    response = await complete(
        api,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Again?"}]},
        ],
        max_tokens=9,
        stop="X",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    (choice,) = body["choices"]
    assert choice["message"]["content"] == "Hello, world"
    assert choice["finish_reason"] == "stop"
    (request,) = api.engine.requests
    assert [(m.role, m.text) for m in request.messages] == [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "Again?"),
    ]
    assert request.sampling.max_output_tokens == 9
    assert request.sampling.stop_sequences == ("X",)


async def test_a_streamed_chat_completion_ends_with_done(api: InProcessApi) -> None:
    response = await complete(api, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.text.rstrip().endswith("data: [DONE]")
    chunks = [event.data for event in parse_sse(response.text)]
    text = "".join(choice["delta"].get("content") or "" for c in chunks for choice in c["choices"])
    assert text == "Hello, world"
    assert chunks[-1]["usage"]["prompt_tokens"] == 5


async def failed_completion(api: InProcessApi) -> httpx.Response:
    """A completion when the engine fails, as a client sees it (ASGITransport would re-raise
    an exception that escaped the app; a real server answers 500 and logs it)."""
    api.engine.reason = FinishReason.ERROR
    api.engine.error = "llama_decode failed with code -1"
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gemserve.test") as client:
        return await client.post(
            "/v1beta/openai/chat/completions",
            json={"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "Hi"}]},
            headers=BEARER,
        )


async def test_an_engine_failure_is_a_500_without_the_libraries_text(api: InProcessApi) -> None:
    response = await failed_completion(api)
    assert response.status_code == 500
    assert "llama_decode" not in response.text


async def test_an_engine_failure_is_openais_500_saying_generation_failed(
    api: InProcessApi,
) -> None:
    response = await failed_completion(api)
    assert_openai_error(response, 500, "server_error", "Generation failed")


async def test_models_in_openais_shape(api: InProcessApi) -> None:
    listed = await api.client.get("/v1beta/openai/models", headers=BEARER)
    assert listed.json()["object"] == "list"
    got = await api.client.get("/v1beta/openai/models/gemini-2.5-flash", headers=BEARER)
    assert got.json()["id"] == "gemini-2.5-flash"
    missing = await api.client.get("/v1beta/openai/models/gpt-17", headers=BEARER)
    assert_openai_error(missing, 404, "not_found_error", "gpt-17")


async def test_a_missing_key_is_403_in_openais_envelope(api: InProcessApi) -> None:
    response = await api.client.post(
        "/v1beta/openai/chat/completions",
        json={"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert_openai_error(response, 403, "permission_error", "API Key")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (
            {
                "messages": [
                    {
                        "role": "system",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,eA=="},
                            }
                        ],
                    },
                    {"role": "user", "content": "Hi"},
                ]
            },
            ("Invalid value at 'messages[0].content'", "a system message is text"),
        ),
        (
            {"messages": user({"type": "text"})},
            ("Missing required field 'messages[0].content[0].text'",),
        ),
        (
            {"messages": user({"type": "image_url"})},
            ("Missing required field 'messages[0].content[0].image_url'",),
        ),
        (
            {"messages": user({"type": "input_audio"})},
            ("Missing required field 'messages[0].content[0].input_audio'",),
        ),
        (
            {
                "messages": user(
                    {"type": "input_audio", "input_audio": {"data": "AA", "format": "ogg"}}
                )
            },
            ("'messages[0].content[0].input_audio.format'", "expected wav or mp3"),
        ),
        (
            {"messages": user({"type": "file", "file": {}})},
            ("'messages[0].content[0].file'", "exactly one of file_data or file_id"),
        ),
        (
            {"messages": user({"type": "image_url", "image_url": {"url": "data:image/png,xyz"}})},
            ("'messages[0].content[0].image_url.url'", "a data URL must be base64"),
        ),
        (
            {
                "reasoning_effort": "low",
                "extra_body": {"google": {"thinking_config": {"thinking_level": "low"}}},
            },
            ("Invalid value at 'reasoning_effort'", "not both"),
        ),
        (
            {"extra_body": {"google": {"thinking_config": {"thinking_level": "extreme"}}}},
            ("'extra_body.google.thinking_config.thinking_level'", "'extreme' is not a thinking"),
        ),
        (
            {"max_tokens": 10**6},
            ("Invalid value at 'max_tokens'", "exceeds the output token limit"),
        ),
    ],
)
async def test_client_errors_name_the_field(
    api: InProcessApi, body: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    response = await complete(api, **body)
    assert_openai_error(response, 400, "invalid_request_error", *fragments)
    assert api.engine.requests == []


async def test_an_unsupported_method_is_answered_in_openais_envelope(api: InProcessApi) -> None:
    """Found by the fuzzer: routing errors on this surface were in Google's envelope."""
    for method, path in (("TRACE", "/v1beta/openai/models"), ("GET", "/v1beta/openai/embeddings")):
        response = await api.client.request(method, path, headers=api.headers)
        assert response.status_code == 405
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert method in error["message"]
        assert "status" not in error
