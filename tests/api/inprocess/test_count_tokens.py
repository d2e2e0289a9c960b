"""``models/{model}:countTokens`` in-process: the turn prepared as generateContent prepares
it (the same messages reach the engine's counter), both request forms, and its client errors
in Google's envelope."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gemserve.engine import ReasoningControl
from gemserve.errors import Unavailable
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi
from tests.support.scripted import ScriptedEngine

NATIVE = {"id": "reasoner", "source": "/nowhere/reasoner.gguf", "thinking": {"mode": "native"}}
HI = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


async def post(
    api: InProcessApi, body: Any, method: str = "countTokens", model: str = "gemini-2.5-flash"
) -> httpx.Response:
    return await api.client.post(f"/v1/models/{model}:{method}", json=body, headers=api.headers)


async def test_count_tokens_answers_the_prompt_generate_content_would_prefill(
    api: InProcessApi,
) -> None:
    body = {
        "contents": [{"parts": [{"text": "Hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
    }
    counted = await post(api, {"generateContentRequest": {"model": "models/x", **body}})
    assert counted.status_code == 200, counted.text
    assert counted.json() == {
        "totalTokens": 5,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5}],
    }
    generated = await post(api, body, "generateContent")
    assert generated.json()["usageMetadata"]["promptTokenCount"] == 5
    (count_request,) = api.engine.counted
    (generate_request,) = api.engine.requests
    assert count_request.messages == generate_request.messages
    assert count_request.sampling == generate_request.sampling
    assert api.engine.streams == api.engine.streams[:1]  # counting generated nothing


async def test_the_sdks_form_is_contents_alone(api: InProcessApi) -> None:
    response = await post(api, HI)
    assert response.status_code == 200, response.text
    assert response.json()["totalTokens"] == 5
    (request,) = api.engine.counted
    assert [(m.role, m.text) for m in request.messages] == [("user", "Hi")]
    assert api.engine.requests == []


async def test_a_native_thinker_is_counted_with_its_reasoning_control(make_api: MakeApi) -> None:
    """The template renders differently with thinking on: the count must see what the
    generation sees."""
    engine = ScriptedEngine(model_id="reasoner")
    api = await make_api(models=[NATIVE], engines={"reasoner": engine})
    assert (await post(api, HI, model="reasoner")).status_code == 200
    (request,) = engine.counted
    assert isinstance(request.reasoning, ReasoningControl)


async def test_a_two_pass_thinking_budget_counts_the_reasoning_pass_prompt(
    api: InProcessApi,
) -> None:
    body = {**HI, "generationConfig": {"thinkingConfig": {"thinkingBudget": 16}}}
    assert (await post(api, {"generateContentRequest": body})).status_code == 200
    (request,) = api.engine.counted
    assert request.messages[-1].text.startswith("Hi\n\nBefore answering")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({}, ("Missing required field 'contents'",)),
        ([], ("must be a JSON object",)),
        ({"contents": "hi"}, ("Invalid value at 'contents'",)),
        ({"contents": [{"parts": [{"txt": "hi"}]}]}, ("'txt'",)),
        ({"contents": [{"role": "robot", "parts": [{"text": "hi"}]}]}, ("'contents[0].role'",)),
        ({**HI, "generateContentRequest": HI}, ("not both",)),
        ({"generateContentRequest": {}}, ("Missing required field 'contents'",)),
        ({"generateContentRequest": "x"}, ("'generate_content_request'",)),
        ({**HI, "systemInstruction": {"parts": [{"text": "x"}]}}, ("'systemInstruction'",)),
        (
            {"generateContentRequest": {**HI, "generationConfig": {"topK": 0.5}}},
            ("generation_config.top_k",),
        ),
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "eA=="}}]}]},
            ("'contents[0].parts[0].inline_data'",),
        ),
    ],
)
async def test_client_errors_are_400s_naming_the_field(
    api: InProcessApi, body: Any, fragments: tuple[str, ...]
) -> None:
    response = await post(api, body)
    assert_envelope(response, 400, "INVALID_ARGUMENT", *fragments)
    assert api.engine.counted == []


async def test_an_unknown_model_is_a_404_and_a_loading_one_a_503(api: InProcessApi) -> None:
    assert_envelope(await post(api, HI, model="no-such-model"), 404, "NOT_FOUND", "no-such-model")
    api.engine.loaded = False
    assert_envelope(await post(api, HI), 503, "UNAVAILABLE")


async def test_an_engine_refusal_is_answered_in_the_envelope(api: InProcessApi) -> None:
    api.engine.refuse = Unavailable("Model is still loading; retry shortly.")
    assert_envelope(await post(api, HI), 503, "UNAVAILABLE", "still loading")
