"""The remote engine against a second real upstream: llama-cpp-python's own OpenAI-compatible
server (``python -m llama_cpp.server``) on the bundled model, on loopback. It differs from
llama-server where it matters to gemserve: it is told apart by its /openapi.json, decodes one
request at a time behind a lock that its model list takes too, streams no usage, takes a JSON
Schema as ``json_object``, forces a named tool with a grammar and repeats the name in every
chunk, and has no /slots (``decoding`` asks its lock)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import jsonschema
import pytest

from gemserve.engine import (
    FinishReason,
    TextDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
    ToolUse,
)
from gemserve.engine.remote import RemoteEngine
from tests.support import upstream_checks
from tests.support.llama_cpp_server import LlamaCppServer
from tests.support.remote import ask, drain, remote_engine, text_of

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
async def upstream(llama_cpp_server: LlamaCppServer) -> AsyncIterator[RemoteEngine]:
    engine = remote_engine(
        [llama_cpp_server.url],
        cap=1,
        timeouts={"first_token": 60, "idle": 60},
        context_length=4096,
    )
    await engine.start()
    yield engine
    await engine.close()


async def test_discovers_the_upstream(upstream: RemoteEngine) -> None:
    (only,) = upstream.pool.upstreams
    assert only.kind == "llama-cpp-python"  # from its /openapi.json: /v1/models says "me"
    assert only.model is not None
    assert only.model.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert await only.client.health(only.kind)


async def test_streams_text_with_estimated_usage(upstream: RemoteEngine) -> None:
    request = ask("Name three colours.", max_tokens=24)
    counted = await upstream.count_prompt(request)
    assert counted.estimated  # no tokenizer for its chat template
    events, finished = await drain(await upstream.generate(request))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3  # token by token, not one block
    assert text_of(events).strip()
    assert finished.reason in (FinishReason.STOP, FinishReason.MAX_TOKENS)
    assert finished.estimated  # it streams no usage
    assert finished.prompt_tokens == counted.tokens
    assert 0 < finished.output_tokens <= 24
    if finished.reason is FinishReason.MAX_TOKENS:
        assert finished.output_tokens == 24  # a chunk a token


async def test_health_checks_leave_a_running_answer_alone(
    upstream: RemoteEngine, llama_cpp_server: LlamaCppServer
) -> None:
    """Its model list waits for (or cuts short) the answer being decoded; the health probe
    goes to /openapi.json instead, so the answer runs to its end and the upstream stays in."""
    dropped = llama_cpp_server.log().count("Disconnected from client")
    request = ask("Count from one to fifty.", max_tokens=120)
    stream = await upstream.generate(request)
    events = []
    async for event in stream:
        events.append(event)
        if len(events) == 3:
            started = time.monotonic()
            await upstream.pool.check_health()
            assert time.monotonic() - started < 2  # answered while the model is busy
    finished = events[-1]
    assert finished.reason in (FinishReason.STOP, FinishReason.MAX_TOKENS)  # type: ignore[union-attr]
    assert upstream.pool.upstreams[0].healthy
    assert llama_cpp_server.log().count("Disconnected from client") == dropped


async def test_cancel_stops_the_upstream_decoding(
    upstream: RemoteEngine, llama_cpp_server: LlamaCppServer
) -> None:
    await upstream_checks.cancel_stops_the_upstream(
        upstream, llama_cpp_server.decoding, "llama-cpp-python"
    )
    # What it printed as it stopped: the client went away.
    assert "Disconnected from client" in llama_cpp_server.log()


async def test_json_schema_output_validates(upstream: RemoteEngine) -> None:
    await upstream_checks.json_schema_output_validates(upstream)


async def test_enum_output_is_one_of_the_values(upstream: RemoteEngine) -> None:
    await upstream_checks.enum_output_is_one_of_the_values(upstream)


async def test_a_named_tool_is_called(upstream: RemoteEngine) -> None:
    """One tool in mode ANY goes as a named ``tool_choice``, which llama-cpp-python forces
    with a grammar of the tool's schema: a call, streamed with the name in every chunk,
    arrives as one call to that name with arguments that match the schema."""
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
        "additionalProperties": False,
    }
    tools = ToolUse(
        (ToolSpec("get_weather", "The weather in a city", json.dumps(schema)),), mode="any"
    )
    request = ask("What is the weather in Paris?", max_tokens=40, tools=tools)
    events, finished = await drain(await upstream.generate(request))
    assert finished.reason is FinishReason.STOP
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather")]
    assert [e.name for e in ends] == ["get_weather"]
    jsonschema.validate(json.loads(ends[0].arguments), schema)


async def test_think_tags_become_thoughts(upstream: RemoteEngine) -> None:
    """It has no reasoning parser: the ``<think>…</think>`` in the content is parsed into a
    thought by gemserve."""
    await upstream_checks.think_tags_become_thoughts(upstream)
