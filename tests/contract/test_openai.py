"""The OpenAI-compatible surface (``/v1beta/openai/``) against a live gemserve, driven by the
official ``openai`` Python SDK exactly as Gemini's OpenAI-compatibility docs use it."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import openai
import pytest

from tests.support.contract import API_KEY, MODEL
from tests.support.server import LiveServer
from tests.support.tokenizer import Tokenizer

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=f"{live_server.base_url}/v1beta/openai/")


def ask(client: openai.OpenAI, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 12,
        "temperature": 0,
    }
    params.update(extra)
    return client.chat.completions.create(**params)


def test_a_completion_answers_with_usage(client: openai.OpenAI, tokenizer: Tokenizer) -> None:
    completion = ask(client)
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    usage = completion.usage
    assert usage.prompt_tokens == tokenizer.prompt_tokens("Name a colour.")
    assert 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_system_and_developer_messages_are_the_system_instruction(
    client: openai.OpenAI, tokenizer: Tokenizer
) -> None:
    completion = ask(
        client,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Name a colour."},
        ],
    )
    expected = tokenizer.prompt_tokens("Name a colour.", system="Be brief.\nAnswer in English.")
    assert completion.usage.prompt_tokens == expected


def test_the_stream_joins_to_the_whole_answer_and_ends_with_usage(
    client: openai.OpenAI,
) -> None:
    whole = ask(client, max_tokens=16)
    chunks = list(ask(client, max_tokens=16, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_the_raw_stream_ends_with_done(live_server: LiveServer) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4,
        "stream": True,
    }
    response = httpx.post(
        f"{live_server.base_url}/v1beta/openai/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    blocks = [b for b in response.text.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    assert blocks[-1] == "data: [DONE]"


def test_reasoning_effort_thinks_and_returns_the_thought(client: openai.OpenAI) -> None:
    completion = ask(client, reasoning_effort="low", max_tokens=8)
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0
    assert (completion.choices[0].message.model_extra or {}).get("reasoning_content")
    hidden = ask(
        client,
        max_tokens=8,
        extra_body={"extra_body": {"google": {"thinking_config": {"thinking_budget": 16,
                                                                    "include_thoughts": False}}}},
    )  # fmt: skip
    assert 0 < hidden.usage.completion_tokens_details.reasoning_tokens <= 16
    assert "reasoning_content" not in (hidden.choices[0].message.model_extra or {})


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert MODEL in ids
    assert client.models.retrieve(MODEL).id == MODEL


@pytest.mark.parametrize(
    ("extra", "status", "fragment"),
    [
        ({"n": 99}, 400, "'n'"),
        ({"tools": [{"type": "code_interpreter"}]}, 400, "'tools[0].type'"),
        ({"stop": ["x"] * 99}, 400, "'stop'"),
        ({"max_tokens": 10**9}, 400, "'max_tokens'"),
        ({"model": "no-such-model"}, 404, "no-such-model"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {
                                "type": "image_url",
                                "image_url": {
                                    "url": "data:image/png;base64,"
                                    + base64.b64encode(b"\x89PNG").decode()
                                },
                            },
                        ],
                    }
                ]
            },
            400,
            "messages[0].content[1].image_url",
        ),
    ],
)
def test_errors_use_openais_envelope(
    client: openai.OpenAI, extra: dict[str, Any], status: int, fragment: str
) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, **extra)
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}  # the SDK unwraps "error"
    assert fragment in body["message"]
