"""A live ``gemserve serve`` whose default model is remote (``engine = "openai"``, a config
TOML), driven by the official SDKs: Interactions (unary, streaming, multi-turn with
``previous_interaction_id``, cancel), the classic ``generate_content`` surface, and the
OpenAI-compatible one. Every test runs over two real upstreams on loopback, two
implementations of the OpenAI API: llama.cpp's llama-server and llama-cpp-python's own server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import _interactions
from google.genai import errors as genai_errors
from openai import BadRequestError, OpenAI

from gemserve.engine.remote.refusal import context_overflow
from tests.support.contract import API_KEY, MODEL
from tests.support.llama_cpp_server import LlamaCppServer
from tests.support.llama_server import LlamaServer
from tests.support.remote_server import pool_extra, remote_model, start_remote_server
from tests.support.server import LiveServer, stop_server, wait_status
from tests.support.sse import check_stream_events, check_usage

pytestmark = pytest.mark.contract

# What every upstream's entry shares (its own fields: ``Upstream.fields``).
TIMEOUTS = {"first_token": 120, "idle": 60, "health_interval": 1}
HEADERS = {"x-goog-api-key": API_KEY}
ESTIMATED_HEADER = "x-gemserve-usage-estimated"
CONTEXT = 4096  # both upstreams' context (their fixtures' default)


@dataclass(frozen=True)
class Upstream:
    """A real upstream under test, and what it can report."""

    name: str
    server: LlamaServer | LlamaCppServer
    fields: dict[str, Any]  # its own [[models]] fields
    counts_exactly: bool  # it counts a chat prompt on its own template (else: estimated)
    reports_cache: bool  # its usage says how much of the prompt came from its cache
    # A prompt sent again decodes as it did the first time. llama-cpp-python's does not at
    # temperature 0: with the whole prompt cached it decodes the last prompt token alone,
    # whose logits differ a little from the batch's, and a near tie can flip.
    repeats_exactly: bool = True

    @property
    def url(self) -> str:
        return self.server.url

    def decoding(self) -> bool:
        return self.server.decoding()

    def before_a_repeat(self) -> None:
        """Put the next request on the footing of the last one: a different prompt in
        between, so neither finds its whole prompt cached."""
        if not self.repeats_exactly:
            httpx.post(
                self.url + "/chat/completions",
                json={
                    "messages": [{"role": "user", "content": "Something else."}],
                    "max_tokens": 1,
                },
                timeout=120,
            ).raise_for_status()


@pytest.fixture(scope="module", params=["llama-server", "llama-cpp-python"])
def upstream(request: pytest.FixtureRequest) -> Upstream:
    if request.param == "llama-server":
        return Upstream("llama-server", request.getfixturevalue("llama_server"), {}, True, True)
    # One request at a time (it decodes one), and its context (it does not say it).
    return Upstream(
        "llama-cpp-python",
        request.getfixturevalue("llama_cpp_server"),
        {"max_in_flight": 1, "context_length": 4096},
        counts_exactly=False,
        reports_cache=False,
        repeats_exactly=False,
    )


@pytest.fixture(scope="module")
def remote_server(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    model = remote_model(
        "pool",
        upstream.url,
        display_name=f"SmolLM2 on {upstream.name}",
        output_token_limit=1024,
        **upstream.fields,
        timeouts=TIMEOUTS,
    )
    server = start_remote_server(tmp_path_factory.mktemp("remote-pool"), model)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(remote_server: LiveServer) -> Iterator[genai.Client]:
    with genai.Client(api_key=API_KEY, http_options={"base_url": remote_server.base_url}) as c:
        yield c


def upstream_count(upstream: Upstream, messages: list[dict[str, str]]) -> int:
    """The prompt tokens llama-server counts for ``messages`` on its own template."""
    assert upstream.counts_exactly
    response = httpx.post(
        upstream.url + "/chat/completions/input_tokens", json={"messages": messages}, timeout=30
    )
    count: int = response.json()["input_tokens"]
    return count


def text_of(interaction: Any) -> str:
    step = interaction.steps[-1]
    assert step.type == "model_output"
    text = step.content[0].text
    assert isinstance(text, str)
    return text


def extra_of(model: Any) -> dict[str, Any]:
    """The fields an SDK object kept beyond its schema."""
    return dict(model.model_extra or {})


def flagged(usage: dict[str, Any], upstream: Upstream) -> None:
    """``estimated: true`` where the upstream cannot count, absent where it can."""
    if upstream.counts_exactly:
        assert "estimated" not in usage, usage
    else:
        assert usage.get("estimated") is True, usage


def header_flag(headers: Any) -> str | None:
    lowered = {str(k).lower(): v for k, v in dict(headers or {}).items()}
    value = lowered.get(ESTIMATED_HEADER)
    return None if value is None else str(value)


def test_unary_interaction(client: genai.Client, upstream: Upstream) -> None:
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
    assert 0 < usage.total_output_tokens <= 24
    flagged(extra_of(usage), upstream)
    if upstream.counts_exactly:
        assert usage.total_input_tokens == upstream_count(
            upstream, [{"role": "user", "content": prompt}]
        )


def test_streaming_matches_unary(client: genai.Client, upstream: Upstream) -> None:
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
    flagged(events[-1]["interaction"]["usage"], upstream)
    upstream.before_a_repeat()
    unary = client.interactions.create(model=MODEL, input=prompt, generation_config=config)
    assert streamed.strip()
    assert streamed == text_of(unary)


def test_multi_turn_with_previous_interaction_id(client: genai.Client, upstream: Upstream) -> None:
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
    assert second.usage.total_input_tokens > first.usage.total_input_tokens  # type: ignore[union-attr]
    if upstream.counts_exactly:
        history = [
            {"role": "user", "content": "My name is Ada. Say hi."},
            {"role": "assistant", "content": text_of(first)},
            {"role": "user", "content": "What is my name?"},
        ]
        # The whole conversation went upstream: the stored history, as messages.
        assert second.usage.total_input_tokens == upstream_count(upstream, history)


def test_prefix_cache_is_reported(client: genai.Client, upstream: Upstream) -> None:
    if not upstream.reports_cache:
        pytest.skip(
            f"{upstream.name} sends no usage in a stream, so no cached-token count "
            "(it does reuse the prefix)"
        )
    config: dict[str, Any] = {"temperature": 0, "max_output_tokens": 16}
    first = client.interactions.create(
        model=MODEL, input="My name is Grace. Say hi.", generation_config=config
    )
    second = client.interactions.create(
        model=MODEL,
        input="What is my name?",
        previous_interaction_id=first.id,
        generation_config=config,
    )
    assert second.usage is not None
    # The second turn reused the upstream's prefix cache for the first turn's prompt.
    assert (second.usage.total_cached_tokens or 0) > 0


def test_classic_generate_content(client: genai.Client, upstream: Upstream) -> None:
    config: dict[str, Any] = {"temperature": 0, "max_output_tokens": 16, "seed": 1}
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="Say hello.", config=config
    )
    assert response.text
    assert response.usage_metadata is not None
    assert (response.usage_metadata.prompt_token_count or 0) > 0
    upstream.before_a_repeat()
    chunks = list(
        client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="Say hello.", config=config
        )
    )
    assert "".join(c.text or "" for c in chunks) == response.text
    chat = client.chats.create(model="gemini-2.5-flash", config=config)
    assert chat.send_message("Hi, I am Bob.").text
    assert chat.send_message("Who am I?").text


def test_openai_sdk(remote_server: LiveServer, upstream: Upstream) -> None:
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
    flagged(extra_of(reply.usage), upstream)


def test_usage_estimate_is_flagged_on_every_surface(
    client: genai.Client, remote_server: LiveServer, upstream: Upstream
) -> None:
    """Where the upstream cannot count (no usage in its stream, no tokenizer for its chat
    template), every usage says ``estimated: true`` and unary responses carry the
    X-Gemserve-Usage-Estimated header; where it can, neither is there."""
    expected_header = None if upstream.counts_exactly else "true"
    prompt = "Say hello."
    config: dict[str, Any] = {"temperature": 0, "max_output_tokens": 8}
    # Interactions: unary, stored (GET), and streamed; the SDK keeps the extra field.
    interaction = client.interactions.create(model=MODEL, input=prompt, generation_config=config)
    assert interaction.usage is not None
    flagged(extra_of(interaction.usage), upstream)
    stored = client.interactions.get(interaction.id)
    assert stored.usage is not None
    flagged(extra_of(stored.usage), upstream)
    raw = httpx.post(
        remote_server.base_url + "/v1beta/interactions",
        json={"model": MODEL, "input": prompt, "generation_config": config},
        headers=HEADERS,
        timeout=120,
    )
    assert header_flag(raw.headers) == expected_header
    # Classic: the SDK drops fields it does not know, so the header tells it.
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert response.usage_metadata is not None
    assert response.sdk_http_response is not None
    assert header_flag(response.sdk_http_response.headers) == expected_header
    raw = httpx.post(
        f"{remote_server.base_url}/v1beta/models/{MODEL}:generateContent",
        json={"contents": [{"parts": [{"text": prompt}]}], "generationConfig": config},
        headers=HEADERS,
        timeout=120,
    )
    flagged(raw.json()["usageMetadata"], upstream)
    with httpx.stream(
        "POST",
        f"{remote_server.base_url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
        json={"contents": [{"parts": [{"text": prompt}]}], "generationConfig": config},
        headers=HEADERS,
        timeout=120,
    ) as stream:
        chunks = [
            orjson.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")
        ]
    flagged(chunks[-1]["usageMetadata"], upstream)
    # countTokens: the upstream's count on its template, or an estimate.
    counted = client.models.count_tokens(model=MODEL, contents=prompt)
    assert (counted.total_tokens or 0) > 0
    assert counted.sdk_http_response is not None
    assert header_flag(counted.sdk_http_response.headers) == expected_header
    raw = httpx.post(
        f"{remote_server.base_url}/v1beta/models/{MODEL}:countTokens",
        json={"contents": [{"parts": [{"text": prompt}]}]},
        headers=HEADERS,
        timeout=120,
    )
    flagged(raw.json(), upstream)
    if upstream.counts_exactly:
        assert counted.total_tokens == upstream_count(
            upstream, [{"role": "user", "content": prompt}]
        )
    # OpenAI: unary (with its headers) and the streamed usage chunk.
    oai = OpenAI(api_key="anything", base_url=remote_server.base_url + "/v1beta/openai/")
    messages: Any = [{"role": "user", "content": prompt}]
    unary = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=8, temperature=0
    )
    assert header_flag(unary.headers) == expected_header
    completion = unary.parse()
    assert completion.usage is not None
    flagged(extra_of(completion.usage), upstream)
    streamed = list(
        oai.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert streamed[-1].usage is not None
    flagged(extra_of(streamed[-1].usage), upstream)


def test_cancel_stops_the_upstream(
    client: genai.Client, remote_server: LiveServer, upstream: Upstream
) -> None:
    interaction = client.interactions.create(
        model=MODEL,
        input="Write a very long story about a dragon.",
        generation_config={"temperature": 0.8, "max_output_tokens": 1000},
        background=True,
    )
    deadline = time.monotonic() + 30
    while not upstream.decoding():
        assert time.monotonic() < deadline, "the upstream never started decoding"
        time.sleep(0.05)
    response = httpx.post(
        f"{remote_server.base_url}/v1beta/interactions/{interaction.id}/cancel",
        headers=HEADERS,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert wait_status(remote_server, interaction.id, {"cancelled"}, HEADERS)["status"] == (
        "cancelled"
    )
    deadline = time.monotonic() + 5
    while upstream.decoding():
        assert time.monotonic() < deadline, f"{upstream.name} kept decoding after the cancel"
        time.sleep(0.05)


def test_statsz_shows_the_pool(remote_server: LiveServer) -> None:
    stats = httpx.get(remote_server.base_url + "/statsz", timeout=10).json()
    text = str(stats)
    assert "upstream0_requests" in text
    assert "upstream0_healthy" in text


def filler(words: int) -> str:
    """A prompt of ``words`` words, a token each on SmolLM2's tokenizer."""
    return " ".join(["a"] * words)


def upstream_prompt_tokens(upstream: Upstream, text: str) -> int:
    """The prompt tokens the upstream itself counts for ``text`` as the one user message
    gemserve sends: llama-server's ``input_tokens``; llama-cpp-python's usage of an
    unstreamed one-token answer (its only count on its chat template), or the count in its
    400 when the prompt does not fit."""
    messages = [{"role": "user", "content": text}]
    if upstream.counts_exactly:
        return upstream_count(upstream, messages)
    response = httpx.post(
        upstream.url + "/chat/completions",
        json={"messages": messages, "max_tokens": 1},
        timeout=120,
    )
    if response.status_code == 400:
        overflow = context_overflow(response.json()["error"]["message"])
        assert overflow is not None, response.text
        return overflow.prompt_tokens
    response.raise_for_status()
    count: int = response.json()["usage"]["prompt_tokens"]
    return count


def prompt_of(upstream: Upstream, tokens: int) -> str:
    """A prompt the upstream counts as exactly ``tokens`` tokens."""
    words = tokens - (upstream_prompt_tokens(upstream, filler(16)) - 16)
    for _ in range(3):
        counted = upstream_prompt_tokens(upstream, filler(words))
        if counted == tokens:
            return filler(words)
        words += tokens - counted
    raise AssertionError(f"no filler of {tokens} tokens on {upstream.name}")


def gemini_error(response: httpx.Response) -> str:
    """The message of a 400 INVALID_ARGUMENT in the Gemini envelope (the whole body: no
    stream was started)."""
    body = response.read()
    assert response.status_code == 400, body
    assert response.headers["content-type"].startswith("application/json")
    error = orjson.loads(body)["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    message: str = error["message"]
    return message


def test_a_prompt_over_the_context_is_a_400_before_anything_streams(
    client: genai.Client, remote_server: LiveServer, upstream: Upstream
) -> None:
    """On every surface, unary and streamed, a prompt over the upstream's context is a 400
    in that surface's envelope with both counts, before any byte of an answer. llama-server
    answers such a request with a 400; llama-cpp-python's server only cuts the stream after
    its headers, so gemserve asks it again unstreamed. Neither counts as the upstream's
    failure: it is not ejected and the request is not retried."""
    text = filler(2 * CONTEXT)
    before = pool_extra(remote_server)
    config: dict[str, Any] = {"temperature": 0, "max_output_tokens": 8}

    def refused(message: str) -> None:
        assert "tokens long, but model 'pool' has a context of 4096 tokens" in message, message

    # Interactions: the SDK, then a streamed create (a JSON 400, not an SSE stream).
    with pytest.raises(_interactions.BadRequestError) as interactions_error:
        client.interactions.create(model=MODEL, input=text, generation_config=config)
    refused(interactions_error.value.body["error"]["message"])
    with httpx.stream(
        "POST",
        remote_server.base_url + "/v1beta/interactions",
        json={"model": MODEL, "input": text, "generation_config": config, "stream": True},
        headers=HEADERS,
        timeout=120,
    ) as streamed:
        refused(gemini_error(streamed))
    # Classic: generateContent (the SDK), streamGenerateContent.
    with pytest.raises(genai_errors.ClientError) as classic_error:
        client.models.generate_content(model=MODEL, contents=text, config=config)
    assert (classic_error.value.code, classic_error.value.status) == (400, "INVALID_ARGUMENT")
    refused(str(classic_error.value.message))
    with httpx.stream(
        "POST",
        f"{remote_server.base_url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
        json={"contents": [{"parts": [{"text": text}]}], "generationConfig": config},
        headers=HEADERS,
        timeout=120,
    ) as streamed:
        refused(gemini_error(streamed))
    # OpenAI: its own envelope, unary and streamed.
    oai = OpenAI(api_key="anything", base_url=remote_server.base_url + "/v1beta/openai/")
    messages: Any = [{"role": "user", "content": text}]
    for stream in (False, True):
        with pytest.raises(BadRequestError) as openai_error:
            oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, stream=stream)
        assert openai_error.value.status_code == 400
        body: Any = openai_error.value.body
        assert body["type"] == "invalid_request_error", body
        refused(body["message"])
    after = pool_extra(remote_server)
    for key in ("upstream0_ejections", "retries_before_first_token", "requests_failed"):
        assert after[key] == before[key], key
    assert after["upstream0_healthy"] == 1.0
    # The upstream answers the next request at once.
    interaction = client.interactions.create(model=MODEL, input="Hi", generation_config=config)
    assert interaction.status in ("completed", "incomplete")


def test_output_past_the_context_ends_the_answer_at_the_context(
    client: genai.Client, upstream: Upstream
) -> None:
    """A prompt that fits with 4 tokens to spare and max_output_tokens far past them: not a
    400 (no false refusal near the limit), and the answer stops at the context, ``incomplete``
    (llama-server stops its slot there; llama-cpp-python cuts max_tokens to fit)."""
    room = 4
    text = prompt_of(upstream, CONTEXT - room)
    interaction = client.interactions.create(
        model=MODEL, input=text, generation_config={"temperature": 0, "max_output_tokens": 200}
    )
    assert interaction.status == "incomplete", interaction.status
    usage = interaction.usage
    assert usage is not None
    assert 0 < usage.total_output_tokens <= room
    if upstream.counts_exactly:
        assert usage.total_input_tokens == CONTEXT - room
