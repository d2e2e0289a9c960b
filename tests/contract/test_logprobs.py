"""Log probabilities and several candidates through the real clients: google-genai's
``response_logprobs``/``logprobs`` and ``candidate_count``, the ``openai`` SDK's
``logprobs``/``top_logprobs`` and ``n``."""

from __future__ import annotations

import openai
import pytest
from google import genai
from google.genai import types

from tests.support.contract import API_KEY, MODEL
from tests.support.server import LiveServer

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> genai.Client:
    return genai.Client(
        api_key=API_KEY, http_options=types.HttpOptions(base_url=live_server.base_url)
    )


@pytest.fixture(scope="module")
def oai(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=f"{live_server.base_url}/v1beta/openai/")


def test_python_sdk_logprobs_result(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_logprobs=True, logprobs=2, max_output_tokens=12, temperature=0
    )
    response = client.models.generate_content(model=MODEL, contents="Say hi.", config=config)
    (candidate,) = response.candidates or []
    result = candidate.logprobs_result
    assert result is not None
    chosen = result.chosen_candidates or []
    assert chosen
    assert all((c.log_probability or 0.0) <= 0.0 for c in chosen)
    assert all(len(top.candidates or []) == 2 for top in result.top_candidates or [])
    assert candidate.avg_logprobs is not None


def test_python_sdk_candidate_count(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        candidate_count=3, max_output_tokens=16, temperature=1.0, seed=5
    )
    response = client.models.generate_content(model=MODEL, contents="Name a fruit.", config=config)
    candidates = response.candidates or []
    assert [c.index for c in candidates] == [0, 1, 2]
    assert all(c.content and c.content.parts and c.content.parts[0].text for c in candidates)


def test_openai_logprobs_and_n(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=12,
        logprobs=True,
        top_logprobs=2,
        n=2,
    )
    assert [c.index for c in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert choice.logprobs is not None
        content = choice.logprobs.content or []
        assert content
        assert all(len(entry.top_logprobs) == 2 for entry in content)
