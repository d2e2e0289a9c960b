"""A live ``gemserve serve`` whose default model is remote (``engine = "openai"``, a config
TOML) over llama.cpp's llama-server on loopback, driven by the official SDKs: Interactions
(unary, streaming, multi-turn with ``previous_interaction_id``, cancel), the classic
``generate_content`` surface, and the OpenAI-compatible one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google import genai
from openai import OpenAI

from tests.support.contract import API_KEY, MODEL
from tests.support.llama_server import LlamaServer
from tests.support.server import LiveServer, start_server, stop_server, wait_status
from tests.support.sse import check_stream_events, check_usage

pytestmark = pytest.mark.contract

CONFIG = """
[server]
default_model = "pool"

[[models]]
id = "pool"
engine = "openai"
upstreams = ["{url}"]
display_name = "SmolLM2 on llama-server"
output_token_limit = 1024
[models.timeouts]
first_token = 120
idle = 60
health_interval = 1
"""


@pytest.fixture(scope="module")
def remote_server(
    llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("remote-pool")
    config = tmp / "gemserve.toml"
    config.write_text(CONFIG.format(url=llama_server.url))
    server = start_server(tmp, "--config", str(config))
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(remote_server: LiveServer) -> Iterator[genai.Client]:
    with genai.Client(api_key=API_KEY, http_options={"base_url": remote_server.base_url}) as c:
        yield c


def upstream_count(llama_server: LlamaServer, messages: list[dict[str, str]]) -> int:
    """The prompt tokens llama-server counts for ``messages`` on its own template."""
    response = httpx.post(
        llama_server.url + "/chat/completions/input_tokens",
        json={"messages": messages},
        timeout=30,
    )
    count: int = response.json()["input_tokens"]
    return count


def text_of(interaction: Any) -> str:
    step = interaction.steps[-1]
    assert step.type == "model_output"
    text = step.content[0].text
    assert isinstance(text, str)
    return text


def test_unary_interaction(client: genai.Client, llama_server: LlamaServer) -> None:
    prompt = "How does AI work?"
    interaction = client.interactions.create(
        model=MODEL,
        input=prompt,
        generation_config={"temperature": 0, "max_output_tokens": 24, "seed": 3},
    )
    assert interaction.status in ("completed", "incomplete")
    assert text_of(interaction).strip()
    usage = interaction.usage
    assert usage is not None
    check_usage(usage.model_dump())
    assert usage.total_input_tokens == upstream_count(
        llama_server, [{"role": "user", "content": prompt}]
    )
    assert 0 < usage.total_output_tokens <= 24


def test_streaming_matches_unary(client: genai.Client) -> None:
    config: dict[str, Any] = {"temperature": 0, "seed": 9, "max_output_tokens": 20}
    prompt = "Explain how AI works"
    events = [
        e.model_dump(mode="json")
        for e in client.interactions.create(
            model=MODEL, input=prompt, generation_config=config, stream=True
        )
    ]
    streamed = check_stream_events(events)
    deltas = [e for e in events if e["event_type"] == "step.delta"]
    assert len(deltas) > 3  # token by token
    unary = client.interactions.create(model=MODEL, input=prompt, generation_config=config)
    assert streamed.strip()
    assert streamed == text_of(unary)


def test_multi_turn_with_previous_interaction_id(
    client: genai.Client, llama_server: LlamaServer
) -> None:
    config: dict[str, Any] = {"temperature": 0, "max_output_tokens": 16}
    first = client.interactions.create(
        model=MODEL, input="My name is Ada. Say hi.", generation_config=config
    )
    second = client.interactions.create(
        model=MODEL,
        input="What is my name?",
        previous_interaction_id=first.id,
        generation_config=config,
    )
    assert second.status in ("completed", "incomplete")
    assert text_of(second).strip()
    assert second.usage is not None
    history = [
        {"role": "user", "content": "My name is Ada. Say hi."},
        {"role": "assistant", "content": text_of(first)},
        {"role": "user", "content": "What is my name?"},
    ]
    # The whole conversation went upstream: the stored history, as messages.
    assert second.usage.total_input_tokens == upstream_count(llama_server, history)
    # The second turn reused the upstream's prefix cache for the first turn's prompt.
    assert (second.usage.total_cached_tokens or 0) > 0


def test_classic_generate_content(client: genai.Client) -> None:
    config: dict[str, Any] = {"temperature": 0, "max_output_tokens": 16, "seed": 1}
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="Say hello.", config=config
    )
    assert response.text
    assert response.usage_metadata is not None
    assert (response.usage_metadata.prompt_token_count or 0) > 0
    chunks = list(
        client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="Say hello.", config=config
        )
    )
    assert "".join(c.text or "" for c in chunks) == response.text
    chat = client.chats.create(model="gemini-2.5-flash", config=config)
    assert chat.send_message("Hi, I am Bob.").text
    assert chat.send_message("Who am I?").text


def test_openai_sdk(remote_server: LiveServer) -> None:
    oai = OpenAI(api_key="anything", base_url=remote_server.base_url + "/v1beta/openai/")
    reply = oai.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=12,
        temperature=0,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0


def test_cancel_stops_the_upstream(
    client: genai.Client, remote_server: LiveServer, llama_server: LlamaServer
) -> None:
    interaction = client.interactions.create(
        model=MODEL,
        input="Write a very long story about a dragon.",
        generation_config={"temperature": 0.8, "max_output_tokens": 1000},
        background=True,
    )
    headers = {"x-goog-api-key": API_KEY}
    deadline = time.monotonic() + 30
    while not any(llama_server.slot_states()):
        assert time.monotonic() < deadline, "the upstream never started decoding"
        time.sleep(0.05)
    response = httpx.post(
        f"{remote_server.base_url}/v1beta/interactions/{interaction.id}/cancel",
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert wait_status(remote_server, interaction.id, {"cancelled"}, headers)["status"] == (
        "cancelled"
    )
    deadline = time.monotonic() + 5
    while any(llama_server.slot_states()):
        assert time.monotonic() < deadline, "llama-server kept decoding after the cancel"
        time.sleep(0.05)


def test_statsz_shows_the_pool(remote_server: LiveServer) -> None:
    stats = httpx.get(remote_server.base_url + "/statsz", timeout=10).json()
    text = str(stats)
    assert "upstream0_requests" in text
    assert "upstream0_healthy" in text
