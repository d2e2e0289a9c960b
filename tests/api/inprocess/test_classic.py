"""generateContent and streamGenerateContent in-process: the shared pipeline under the classic
surface, its paths in error messages (``contents[1].parts[0]``), and its own client errors
(service/classic/)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gemserve.engine import FinishReason
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi
from tests.support.scripted import ScriptedEngine
from tests.support.sse import parse_sse

NATIVE = {"id": "reasoner", "source": "/nowhere/reasoner.gguf", "thinking": {"mode": "native"}}


async def generate(
    api: InProcessApi, body: dict[str, Any], model: str = "gemini-2.5-flash", method: str = ""
) -> httpx.Response:
    method = method or "generateContent"
    return await api.client.post(f"/v1beta/models/{model}:{method}", json=body, headers=api.headers)


def contents(*parts: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"contents": [{"role": role, "parts": list(parts)}]}


async def test_generate_content_answers_in_one_candidate(api: InProcessApi) -> None:
    body = {
        **contents({"text": "Hi"}),
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 9, "topK": 20.0},
    }
    response = await generate(api, body)
    assert response.status_code == 200, response.text
    data = response.json()
    (candidate,) = data["candidates"]
    assert candidate["content"] == {"role": "model", "parts": [{"text": "Hello, world"}]}
    assert candidate["finishReason"] == "STOP"
    assert data["modelVersion"] == "gemini-2.5-flash"
    assert data["usageMetadata"]["promptTokenCount"] == 5
    assert data["usageMetadata"]["candidatesTokenCount"] == 3
    (request,) = api.engine.requests
    assert [(m.role, m.text) for m in request.messages] == [("system", "Be brief."), ("user", "Hi")]
    assert (request.sampling.max_output_tokens, request.sampling.top_k) == (9, 20)


async def test_stream_generate_content_sends_bare_data_frames(api: InProcessApi) -> None:
    response = await generate(api, contents({"text": "Hi"}), method="streamGenerateContent")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event:" not in response.text
    assert "id:" not in response.text
    chunks = [event.data for event in parse_sse(response.text)]
    text = "".join(
        part.get("text", "")
        for chunk in chunks
        for candidate in chunk.get("candidates", [])
        for part in candidate["content"].get("parts", [])
    )
    assert text == "Hello, world"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_a_conversation_is_sent_whole_and_nothing_is_stored(api: InProcessApi) -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "My name is Ada."}]},
            {"role": "model", "parts": [{"text": "Hi Ada."}]},
            {"parts": [{"text": "Name?"}]},
        ]
    }
    assert (await generate(api, body)).status_code == 200
    assert [(m.role, m.text) for m in api.engine.requests[0].messages] == [
        ("user", "My name is Ada."),
        ("assistant", "Hi Ada."),
        ("user", "Name?"),
    ]


async def failed_generation(api: InProcessApi) -> httpx.Response:
    """generateContent when the engine fails, as a client sees it (ASGITransport would
    re-raise an exception that escaped the app; a real server answers 500 and logs it)."""
    api.engine.reason = FinishReason.ERROR
    api.engine.error = "llama_decode failed with code -1"
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gemserve.test") as client:
        return await client.post(
            "/v1beta/models/gemini-2.5-flash:generateContent",
            json=contents({"text": "Hi"}),
            headers=api.headers,
        )


async def test_an_engine_failure_is_a_500_without_the_libraries_text(api: InProcessApi) -> None:
    message = assert_envelope(await failed_generation(api), 500, "INTERNAL")
    assert "llama_decode" not in message


async def test_an_engine_failure_says_generation_failed(api: InProcessApi) -> None:
    assert_envelope(await failed_generation(api), 500, "INTERNAL", "Generation failed")


async def test_the_thought_signature_comes_back_on_the_answer_and_restores_it(
    make_api: MakeApi,
) -> None:
    engine = ScriptedEngine(["Four."], thoughts=["2 × 2"])
    api = await make_api(models=[NATIVE], engines={"reasoner": engine})
    first = await generate(
        api,
        {**contents({"text": "Two dogs?"}), "generationConfig": {"thinkingConfig": {}}},
        model="reasoner",
    )
    parts = first.json()["candidates"][0]["content"]["parts"]
    assert parts[-1]["text"] == "Four."
    signature = parts[-1]["thoughtSignature"]
    body: dict[str, Any] = {
        "contents": [
            {"role": "user", "parts": [{"text": "Two dogs?"}]},
            {"role": "model", "parts": [{"text": "Four.", "thoughtSignature": signature}]},
            {"role": "user", "parts": [{"text": "Three?"}]},
        ]
    }
    assert (await generate(api, body, model="reasoner")).status_code == 200
    assert engine.requests[-1].messages[1].text == "<think>\n2 × 2\n</think>\n\nFour."
    body["contents"][1]["parts"][0]["thoughtSignature"] = "bm90IGEgc2lnbmF0dXJl"
    assert_envelope(
        await generate(api, body, model="reasoner"),
        400,
        "INVALID_ARGUMENT",
        "Invalid value at 'contents[1].parts[0].thought_signature'",
    )


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (
            contents({"text": "Hi", "inlineData": {"mimeType": "text/plain", "data": "aGk="}}),
            ("Invalid value at 'contents[0].parts[0]'", "not text and inline_data"),
        ),
        (
            contents({"inlineData": {"data": "aGk="}}),
            ("Missing required field 'contents[0].parts[0].inline_data.mime_type'",),
        ),
        (
            contents({"fileData": {"mimeType": "text/plain"}}),
            ("Missing required field 'contents[0].parts[0].file_data.file_uri'",),
        ),
        (
            {
                **contents({"text": "Hi"}),
                "systemInstruction": {
                    "parts": [{"inlineData": {"mimeType": "text/plain", "data": "aGk="}}]
                },
            },
            ("Invalid value at 'system_instruction.parts[0]'", "a system instruction is text"),
        ),
        (
            {
                **contents({"text": "Hi"}),
                "generationConfig": {"thinkingConfig": {"thinkingLevel": "EXTREME"}},
            },
            ("generation_config.thinking_config.thinking_level", "'EXTREME' is not one of"),
        ),
        (
            {
                **contents({"text": "Hi"}),
                "generationConfig": {
                    "thinkingConfig": {"thinkingLevel": "LOW", "thinkingBudget": 100}
                },
            },
            ("generation_config.thinking_config'", "not both"),
        ),
        (
            contents({"text": "Hi"}, role="assistant"),
            ("Invalid value at 'contents[0].role'", "expected 'user' or 'model'"),
        ),
        (
            {**contents({"text": "Hi"}), "generationConfig": {"maxOutputTokens": 10**6}},
            ("Invalid value at 'generation_config.max_output_tokens'",),
        ),
    ],
)
async def test_client_errors_name_the_part(
    api: InProcessApi, body: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    assert_envelope(await generate(api, body), 400, "INVALID_ARGUMENT", *fragments)
    assert api.engine.requests == []


async def test_a_media_part_is_named_by_its_path(api: InProcessApi) -> None:
    body = contents(
        {"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": "eA=="}}
    )
    assert_envelope(
        await generate(api, body),
        400,
        "INVALID_ARGUMENT",
        "Invalid value at 'contents[0].parts[1].inline_data'",
        "cannot take image input",
    )


async def test_unknown_methods_and_models(api: InProcessApi) -> None:
    body = contents({"text": "Hi"})
    assert_envelope(await generate(api, body, method="fly"), 404, "NOT_FOUND")
    assert_envelope(await generate(api, body, model="gpt-17"), 404, "NOT_FOUND", "gpt-17")
