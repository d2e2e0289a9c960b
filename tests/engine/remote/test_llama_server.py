"""The remote engine against a real upstream: llama.cpp's llama-server (the llama.cpp gemserve
pins, built by bench/build_llama_server.sh) on the bundled model, on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import jsonschema
import pytest

from gemserve.engine import (
    FinishReason,
    TextDelta,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
    ToolUse,
)
from gemserve.engine.remote import RemoteEngine
from tests.support import upstream_checks
from tests.support.llama_server import LlamaServer
from tests.support.remote import ask, drain, remote_engine, text_of

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
async def upstream(llama_server: LlamaServer) -> AsyncIterator[RemoteEngine]:
    engine = remote_engine([llama_server.url], timeouts={"first_token": 60, "idle": 60})
    await engine.start()
    yield engine
    await engine.close()


async def test_discovers_the_upstream(upstream: RemoteEngine) -> None:
    (only,) = upstream.pool.upstreams
    assert only.kind == "llama-server"
    assert only.model is not None
    assert only.model.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    caps = upstream.capabilities()
    assert caps.context_length == 4096  # the slot's context, from /props
    assert caps.input_modalities == frozenset({"text"})


async def test_streams_text_with_usage(upstream: RemoteEngine) -> None:
    request = ask("Name three colours.", max_tokens=24)
    counted = await upstream.count_prompt(request)
    stream = await upstream.generate(request)
    events, finished = await drain(stream)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3  # token by token, not one block
    assert text_of(events).strip()
    assert finished.reason in (FinishReason.STOP, FinishReason.MAX_TOKENS)
    assert finished.prompt_tokens == counted.tokens == stream.prompt_tokens
    assert 0 < finished.output_tokens <= 24
    if finished.reason is FinishReason.MAX_TOKENS:
        assert finished.output_tokens == 24
    # The same prompt again: llama-server reuses its prefix cache, and says so.
    _, again = await drain(await upstream.generate(request))
    assert again.cached_tokens > 0
    assert await upstream.tokenize("Hello world") == await upstream.tokenize("Hello world")


async def test_cancel_stops_the_upstream_decoding(
    upstream: RemoteEngine, llama_server: LlamaServer
) -> None:
    await upstream_checks.cancel_stops_the_upstream(upstream, llama_server.decoding, "llama-server")


async def test_closing_the_iterator_stops_the_upstream(
    upstream: RemoteEngine, llama_server: LlamaServer
) -> None:
    stream = await upstream.generate(ask("Count from one to a thousand.", max_tokens=2000))
    iterator = stream.__aiter__()
    await anext(iterator)
    await iterator.aclose()  # the client went away
    await upstream_checks.stops_decoding(
        llama_server.decoding, "llama-server to stop decoding after the close"
    )


async def test_json_schema_output_validates(upstream: RemoteEngine) -> None:
    await upstream_checks.json_schema_output_validates(upstream)


async def test_enum_output_is_one_of_the_values(upstream: RemoteEngine) -> None:
    await upstream_checks.enum_output_is_one_of_the_values(upstream)


async def test_tools_reach_llama_server(upstream: RemoteEngine) -> None:
    """Tools go as OpenAI ``tools`` and ``tool_choice``. llama-server holds a model to a call
    only where it knows the chat template's tool format; SmolLM2's template has none, so it
    answers in text (a streamed call's events are tested against the fake upstream). Any
    call it does make must be complete and valid."""
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
    }
    tools = ToolUse(
        (ToolSpec("get_weather", "The weather in a city", json.dumps(schema)),), mode="any"
    )
    request = ask("What is the weather in Paris?", max_tokens=40, tools=tools)
    events, finished = await drain(await upstream.generate(request))
    assert finished.reason in (FinishReason.STOP, FinishReason.MAX_TOKENS)
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert len(starts) == len(ends)
    for end in ends:
        jsonschema.validate(json.loads(end.arguments), schema)
    if not ends:
        assert text_of(events).strip()
    assert all(not isinstance(e, ToolCallArguments) or starts for e in events)


async def test_think_tags_become_thoughts(upstream: RemoteEngine) -> None:
    """Whether llama-server leaves the thought in the content or splits it into
    reasoning_content, it is parsed out."""
    await upstream_checks.think_tags_become_thoughts(upstream)
