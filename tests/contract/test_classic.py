"""The classic surface (``models.generate_content`` and its family) against a live gemserve,
driven by the official Python SDK, the JS SDK (``js/classic.mjs``) and curl."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.support.contract import API_KEY, MODEL, run_js_example
from tests.support.envelope import assert_error_body
from tests.support.server import LiveServer
from tests.support.tokenizer import Tokenizer

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> genai.Client:
    return genai.Client(
        api_key=API_KEY, http_options=types.HttpOptions(base_url=live_server.base_url)
    )


def short(max_tokens: int = 16, **config: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(temperature=0.0, max_output_tokens=max_tokens, **config)


def test_generate_content_answers_with_usage(client: genai.Client, tokenizer: Tokenizer) -> None:
    response = client.models.generate_content(
        model=MODEL, contents="Name a colour.", config=short()
    )
    assert response.text
    candidate = response.candidates[0]
    assert candidate.finish_reason in (types.FinishReason.STOP, types.FinishReason.MAX_TOKENS)
    assert candidate.content.role == "model"
    usage = response.usage_metadata
    assert usage.prompt_token_count == tokenizer.prompt_tokens("Name a colour.")
    assert 0 < usage.candidates_token_count <= 16
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.prompt_tokens_details[0].modality == types.MediaModality.TEXT
    assert response.model_version == MODEL
    assert response.response_id


def test_a_system_instruction_is_part_of_the_prompt(
    client: genai.Client, tokenizer: Tokenizer
) -> None:
    system = "Answer in one word."
    response = client.models.generate_content(
        model=MODEL,
        contents="Name a colour.",
        config=short(system_instruction=system, top_k=20, top_p=0.9, seed=7),
    )
    expected = tokenizer.prompt_tokens("Name a colour.", system=system)
    assert response.usage_metadata.prompt_token_count == expected


def test_the_stream_joins_to_the_whole_answer(client: genai.Client) -> None:
    config = short(24)
    whole = client.models.generate_content(model=MODEL, contents="Count to five.", config=config)
    chunks = list(
        client.models.generate_content_stream(model=MODEL, contents="Count to five.", config=config)
    )
    assert len(chunks) > 2
    assert "".join(c.text or "" for c in chunks) == whole.text
    *body, last = chunks
    assert all(c.candidates[0].finish_reason is None for c in body)
    assert last.candidates[0].finish_reason == whole.candidates[0].finish_reason
    assert last.usage_metadata.candidates_token_count == whole.usage_metadata.candidates_token_count


def test_a_chat_sends_its_history_every_turn(client: genai.Client) -> None:
    chat = client.chats.create(model=MODEL, config=short(12))
    first = chat.send_message("My name is Ana.")
    second = chat.send_message("What is my name?")
    assert first.text
    assert second.text
    assert len(chat.get_history()) == 4
    # The second prompt holds the first turn, question and answer.
    assert second.usage_metadata.prompt_token_count > (
        first.usage_metadata.prompt_token_count + first.usage_metadata.candidates_token_count
    )


def test_thoughts_come_back_with_include_thoughts_and_their_signature_round_trips(
    client: genai.Client,
) -> None:
    thinking = types.ThinkingConfig(include_thoughts=True, thinking_level=types.ThinkingLevel.LOW)
    chat = client.chats.create(model=MODEL, config=short(12, thinking_config=thinking))
    response = chat.send_message("How many legs do two cats have?")
    parts = response.candidates[0].content.parts
    assert parts[0].thought is True
    assert parts[0].text
    answer = parts[1]
    assert not answer.thought
    assert answer.thought_signature
    assert response.usage_metadata.thoughts_token_count > 0
    # The history carries the signature back; the server opens it (a changed one is a 400).
    again = chat.send_message("And three cats?")
    assert again.text is not None
    history = chat.get_history()
    tampered = history[1].model_copy(deep=True)
    signed = next(p for p in tampered.parts if p.thought_signature)
    signed.thought_signature = signed.thought_signature[:-4] + b"AAAA"
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.generate_content(
            model=MODEL, contents=[history[0], tampered, history[2]], config=short(4)
        )
    assert info.value.code == 400
    assert "contents[1].parts[1].thought_signature" in str(info.value.message)


def test_thoughts_stay_hidden_without_include_thoughts(client: genai.Client) -> None:
    thinking = types.ThinkingConfig(thinking_budget=16)
    response = client.models.generate_content(
        model=MODEL, contents="Why is the sky blue?", config=short(8, thinking_config=thinking)
    )
    assert not any(p.thought for p in response.candidates[0].content.parts or [])
    assert 0 < response.usage_metadata.thoughts_token_count <= 16


def test_an_uploaded_document_is_read(client: genai.Client, tmp_path: Any) -> None:
    path = tmp_path / "note.txt"
    path.write_text("The secret word is pelican.\n")
    uploaded = client.files.upload(file=path, config={"mime_type": "text/plain"})
    response = client.models.generate_content(
        model=MODEL, contents=[uploaded, "What is the secret word?"], config=short(12)
    )
    tokens_without = client.models.generate_content(
        model=MODEL, contents="What is the secret word?", config=short(1)
    ).usage_metadata.prompt_token_count
    assert response.usage_metadata.prompt_token_count > tokens_without
    by_modality = {d.modality: d.token_count for d in response.usage_metadata.prompt_tokens_details}
    assert by_modality[types.MediaModality.DOCUMENT] > 0


@pytest.mark.parametrize(
    ("contents", "config", "code", "fragment"),
    [
        ("hi", {"candidate_count": 99}, 400, "generation_config.candidate_count"),
        ("hi", {"tools": [{"google_search": {}}]}, 400, "google_search"),
        (
            "hi",
            {"thinking_config": {"thinking_budget": 8, "thinking_level": "LOW"}},
            400,
            "not both",
        ),
        ("hi", {"response_mime_type": "text/csv"}, 400, "response_mime_type"),
        (
            [types.Part.from_bytes(data=b"\x89PNG", mime_type="image/png")],
            {},
            400,
            "'contents[0].parts[0].inline_data': model",
        ),
    ],
)
def test_bad_requests_are_400s_naming_the_field(
    client: genai.Client, contents: Any, config: dict[str, Any], code: int, fragment: str
) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents=contents, config=config)
    assert info.value.code == code
    assert info.value.status == "INVALID_ARGUMENT"
    assert fragment in str(info.value.message)


def test_an_unknown_model_is_a_404(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.generate_content(model="no-such-model", contents="hi")
    assert info.value.code == 404


def test_an_unknown_method_is_a_404(live_server: LiveServer) -> None:
    response = httpx.post(f"{live_server.base_url}/v1beta/models/{MODEL}:fly", json={})
    assert response.status_code == 404
    assert_error_body(response.json(), 404, "NOT_FOUND", ":fly")


def test_closing_a_stream_cancels_the_generation(
    client: genai.Client, live_server: LiveServer
) -> None:
    def cancelled() -> float:
        stats = httpx.get(f"{live_server.base_url}/statsz").json()
        return float(sum(m["requests_cancelled"] for m in stats.values()))

    before = cancelled()
    stream = client.models.generate_content_stream(
        model=MODEL, contents="Write a long story about the sea.", config=short(400)
    )
    next(iter(stream))
    stream.close()  # type: ignore[attr-defined]
    deadline = 200
    while cancelled() == before and deadline:
        deadline -= 1
        httpx.get(f"{live_server.base_url}/healthz")
    assert cancelled() == before + 1


# ----- curl: the SSE framing the SDKs require ------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_stream_is_bare_data_blocks(live_server: LiveServer) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Say hi."}]}],
        "generationConfig": {"maxOutputTokens": 8, "temperature": 0},
    }
    out = subprocess.run(
        [
            "curl", "-sN", "-X", "POST",
            f"{live_server.base_url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
            "-H", f"x-goog-api-key: {API_KEY}", "-H", "Content-Type: application/json",
            "-d", json.dumps(body),
        ],
        capture_output=True, timeout=120, check=True,
    ).stdout.decode()  # fmt: skip
    blocks = [b for b in out.split("\r\n\r\n") if b]
    assert blocks, out
    assert all(b.startswith("data: {") for b in blocks), out
    assert "event:" not in out
    assert "[DONE]" not in out
    chunks = [json.loads(b.removeprefix("data: ")) for b in blocks]
    assert chunks[-1]["candidates"][0]["finishReason"] in ("STOP", "MAX_TOKENS")
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] >= 1


# ----- the JS SDK ----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_generate_stream_and_chat(live_server: LiveServer) -> None:
    seen = run_js_example(live_server.base_url, "classic.mjs")
    assert seen["text"]
    assert seen["finishReason"] in ("STOP", "MAX_TOKENS")
    assert seen["promptTokens"] > 0
    assert seen["streamed"] == seen["text"]
    assert seen["chunks"] > 2
    assert seen["chatHistory"] == 4
    assert seen["thoughtParts"] >= 1
    assert seen["signature"]
    assert seen["badStatus"] == 400
    assert "candidate_count" in seen["badMessage"]
