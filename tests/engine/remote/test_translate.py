"""A GenerationRequest as the OpenAI body each upstream kind takes, and the upstream's chunks
as engine events (pure functions: no upstream)."""

from __future__ import annotations

import base64
import io
import json
import wave
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from gemserve.config.remote import UpstreamKind
from gemserve.engine import (
    MEDIA_PLACEHOLDER,
    AudioInput,
    ChatMessage,
    Constraint,
    FinishReason,
    GenerationRequest,
    ImageInput,
    ReasoningControl,
    TextDelta,
    ThoughtDelta,
    ToolCall,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
    ToolUse,
)
from gemserve.engine.remote.stream import ChunkDecoder, StreamBroken
from gemserve.engine.remote.translate import chat_body, enum_choices, for_upstream
from gemserve.errors import InvalidArgument
from tests.support.remote import ask

TEXT = frozenset({"text"})
ALL = frozenset({"text", "image", "audio"})


def body_for(request: GenerationRequest, kind: UpstreamKind, modalities=TEXT) -> dict:  # type: ignore[no-untyped-def]
    return for_upstream(chat_body(request, "m", modalities), request, kind, "m", model_id="pool")


def test_sampling_and_stream_options() -> None:
    request = ask(max_tokens=33, temperature=0.5, seed=7, stop_sequences=("END",))
    body = body_for(request, "openai")
    assert body["max_tokens"] == 33
    assert body["temperature"] == 0.5
    assert body["seed"] == 7
    assert body["stop"] == ["END"]
    assert body["stream_options"] == {"include_usage": True}
    assert "top_k" not in body  # top_k 0: off
    sampled = GenerationRequest(
        request.messages, request.sampling.__class__(0.7, 0.9, 40, 10, repeat_penalty=1.1)
    )
    assert body_for(sampled, "llama-server")["top_k"] == 40
    assert body_for(sampled, "llama-server")["repeat_penalty"] == 1.1
    assert body_for(sampled, "vllm")["repetition_penalty"] == 1.1
    assert "top_k" not in body_for(sampled, "openai")


def test_images_and_sound_in_place() -> None:
    pixels = bytes([255, 0, 0] * 4)
    image = ImageInput(2, 2, pixels, "img")
    samples = np.linspace(-1, 1, 160, dtype=np.float32).tobytes()
    audio = AudioInput(samples, 16_000, "snd")
    message = ChatMessage(
        "user", f"Look {MEDIA_PLACEHOLDER} and hear {MEDIA_PLACEHOLDER}", (image, audio)
    )
    request = GenerationRequest((message,), ask().sampling)
    parts = body_for(request, "vllm", ALL)["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "input_audio"]
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (2, 2)
    assert decoded.convert("RGB").tobytes() == pixels
    with wave.open(io.BytesIO(base64.b64decode(parts[3]["input_audio"]["data"]))) as sound:
        assert (sound.getframerate(), sound.getnframes()) == (16_000, 160)
    with pytest.raises(InvalidArgument, match="image input"):
        body_for(request, "vllm", frozenset({"text", "audio"}))
    with pytest.raises(InvalidArgument, match="audio input"):
        body_for(request, "vllm", frozenset({"text", "image"}))


def test_tool_calls_results_and_choice() -> None:
    messages = (
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "weather", '{"city": "Oslo"}'),)),
        ChatMessage("tool", '{"temp": 3}', tool_call_id="c1", tool_name="weather"),
    )
    tools = (
        ToolSpec("weather", "Current weather", '{"type": "object"}'),
        ToolSpec("time", "", '{"type": "object"}'),
    )
    request = GenerationRequest(messages, ask().sampling, tools=ToolUse(tools, parallel=False))
    body = body_for(request, "llama-server")
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }
    assert body["messages"][2] == {
        "role": "tool",
        "content": '{"temp": 3}',
        "tool_call_id": "c1",
        "name": "weather",
    }
    assert [t["function"]["name"] for t in body["tools"]] == ["weather", "time"]
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is False
    forced = GenerationRequest(messages, ask().sampling, tools=ToolUse(tools, "any", ("time",)))
    body = body_for(forced, "vllm")
    assert body["tool_choice"] == {"type": "function", "function": {"name": "time"}}
    assert [t["function"]["name"] for t in body["tools"]] == ["time"]
    assert body_for(forced, "llama-server")["tool_choice"] == "required"  # strings only
    assert (
        body_for(GenerationRequest(messages, ask().sampling, tools=ToolUse(tools, "any")), "vllm")[
            "tool_choice"
        ]
        == "required"
    )
    none = body_for(
        GenerationRequest(messages, ask().sampling, tools=ToolUse(tools, "none")), "vllm"
    )
    assert none["tool_choice"] == "none"


def test_json_schema_and_grammars() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = ask(constraint=Constraint(json.dumps(schema), syntax="json_schema"))
    for kind in ("llama-server", "vllm", "sglang", "ollama", "openai"):
        body = body_for(request, kind)  # type: ignore[arg-type]
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema},
        }
    gbnf = ask(constraint=Constraint('root ::= "yes" | "no"', scope="output"))
    assert body_for(gbnf, "llama-server")["grammar"] == 'root ::= "yes" | "no"'
    assert body_for(gbnf, "vllm")["structured_outputs"] == {"grammar": 'root ::= "yes" | "no"'}
    assert body_for(gbnf, "sglang")["ebnf"] == 'root ::= "yes" | "no"'
    with pytest.raises(InvalidArgument, match="GBNF grammar"):
        body_for(gbnf, "ollama")


def test_enum_output_as_each_upstream_takes_it() -> None:
    grammar = 'start: "red" | "gr\\"een"'
    assert enum_choices(grammar) == ["red", 'gr"een']
    assert enum_choices("start: item+\nitem: /x/") is None
    request = ask(constraint=Constraint(grammar, syntax="lark"))
    assert body_for(request, "vllm")["structured_outputs"] == {"choice": ["red", 'gr"een']}
    assert body_for(request, "llama-server")["grammar"] == 'root ::= "red" | "gr\\x22een"'
    with pytest.raises(InvalidArgument, match=r"text/x\.enum"):
        body_for(request, "openai")
    with pytest.raises(InvalidArgument, match=r"text/x\.enum"):
        body_for(ask(constraint=Constraint("start: /a+/", syntax="lark")), "vllm")


def test_thinking_controls() -> None:
    on = ask(reasoning=ReasoningControl(budget=300))
    off = ask(reasoning=ReasoningControl(budget=0))
    assert body_for(on, "vllm")["chat_template_kwargs"] == {"enable_thinking": True}
    assert body_for(off, "sglang")["chat_template_kwargs"] == {"enable_thinking": False}
    assert body_for(on, "llama-server")["thinking_budget_tokens"] == 300
    assert "thinking_budget_tokens" not in body_for(off, "llama-server")
    assert body_for(off, "ollama")["reasoning_effort"] == "none"
    assert "chat_template_kwargs" not in body_for(ask(), "vllm")


def test_a_minimum_output_goes_where_an_upstream_takes_one() -> None:
    """A thinking level's floor on the reasoning pass (``min_output_tokens``): vLLM and
    SGLang take ``min_tokens``; llama-server, llama-cpp-python and Ollama have no such knob."""
    floor = ask()
    floor = replace(floor, sampling=replace(floor.sampling, min_output_tokens=96))
    assert body_for(floor, "vllm")["min_tokens"] == 96
    assert body_for(floor, "sglang")["min_tokens"] == 96
    for kind in ("llama-server", "llama-cpp-python", "ollama"):
        assert "min_tokens" not in body_for(floor, kind)  # type: ignore[arg-type]
    assert "min_tokens" not in body_for(ask(), "vllm")


# ----- chunks → events ---------------------------------------------------------------------


def delta(**fields: object) -> dict:  # type: ignore[type-arg]
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def finish(reason: str) -> dict:  # type: ignore[type-arg]
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def decoder(reasoning: ReasoningControl | None = None, max_tokens: int = 100) -> ChunkDecoder:
    return ChunkDecoder(reasoning, max_output_tokens=max_tokens, context_length=4096)


def test_reasoning_content_and_think_tags() -> None:
    d = decoder(ReasoningControl())
    events = [
        *d.feed(delta(reasoning_content="Let me see.")),
        *d.feed(delta(content="<thi")),
        *d.feed(delta(content="nk>more</think>\n\nAn")),
        *d.feed(delta(content="swer")),
        *d.feed(finish("stop")),
    ]
    tail, finished = d.finish()
    events += tail
    thought = "".join(e.text for e in events if isinstance(e, ThoughtDelta))
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert (thought, answer) == ("Let me see.more", "Answer")
    assert finished.reason is FinishReason.STOP
    assert finished.thought_tokens == 3  # chunks, without the upstream's count


def test_usage_and_finish_reasons() -> None:
    d = decoder(max_tokens=2)
    d.feed(delta(content="a"))
    d.feed(finish("length"))
    d.feed(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 8},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        }
    )
    _, finished = d.finish()
    assert (finished.reason, finished.prompt_tokens, finished.output_tokens) == (
        FinishReason.MAX_TOKENS,
        11,
        2,
    )
    assert finished.cached_tokens == 8
    short = decoder(max_tokens=50)
    short.feed(finish("length"))
    short.feed({"choices": [], "usage": {"prompt_tokens": 4090, "completion_tokens": 6}})
    short.feed({"choices": [], "timings": {"cache_n": 4000}})
    _, finished = short.finish()
    assert finished.reason is FinishReason.CONTEXT
    assert finished.cached_tokens == 4000  # llama-server's timings


def test_streamed_tool_calls() -> None:
    d = decoder()
    events = [
        *d.feed(delta(tool_calls=[{"index": 0, "id": "x", "function": {"name": "weather"}}])),
        *d.feed(delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}])),
        *d.feed(delta(tool_calls=[{"index": 0, "function": {"arguments": '"Oslo"}'}}])),
        *d.feed(delta(tool_calls=[{"index": 1, "function": {"name": "time", "arguments": "{}"}}])),
        *d.feed(finish("tool_calls")),
    ]
    tail, finished = d.finish()
    events += tail
    assert events == [
        ToolCallStart(0, "weather"),
        ToolCallArguments(0, '{"city": '),
        ToolCallArguments(0, '"Oslo"}'),
        ToolCallEnd(0, "weather", '{"city":"Oslo"}'),
        ToolCallStart(1, "time"),
        ToolCallArguments(1, "{}"),
        ToolCallEnd(1, "time", "{}"),
    ]
    assert finished.reason is FinishReason.STOP


def test_broken_streams() -> None:
    with pytest.raises(StreamBroken, match="mid-stream: overloaded"):
        decoder().feed({"error": {"message": "overloaded"}})
    d = decoder()
    d.feed(delta(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": "{oops"}}]))
    with pytest.raises(StreamBroken, match="not JSON"):
        d.finish()


# ----- the transport seam ------------------------------------------------------------------


async def test_a_transport_stands_in_for_the_network() -> None:
    """``transport`` replaces every upstream's HTTP transport (httpx's own seam): here a
    canned SSE body with CRLF line ends, event:/id: lines and a comment, as some servers
    write it."""
    import httpx

    from gemserve.config.remote import RemoteTimeouts
    from gemserve.engine.remote import RemoteEngine, UpstreamConfig
    from tests.support.remote import drain, text_of

    sse = (
        b": keep-alive\r\n\r\n"
        b'event: message\r\nid: 1\r\ndata: {"choices": [{"delta": {"content": "Hi"}}]}\r\n\r\n'
        b'data: {"choices": [{"delta": {"content": " there"}, "finish_reason": "stop"}]}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m", "owned_by": "vllm"}]})
        if request.url.path == "/v1/chat/completions":
            assert json.loads(request.content)["model"] == "m"
            return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
        return httpx.Response(404)

    engine = RemoteEngine(
        model_id="pool",
        upstreams=[UpstreamConfig("http://upstream.test/v1", 4)],
        timeouts=RemoteTimeouts(),
        output_token_limit=64,
        transport=httpx.MockTransport(handle),
    )
    await engine.start()
    try:
        assert engine.pool.upstreams[0].kind == "vllm"
        events, finished = await drain(await engine.generate(ask()))
        assert text_of(events) == "Hi there"
        assert finished.reason is FinishReason.STOP
        assert finished.output_tokens == 2  # no usage chunk: one token per chunk
        assert finished.estimated
    finally:
        await engine.close()


# ----- llama-cpp-python's server ------------------------------------------------------------


def test_llama_cpp_python_body() -> None:
    """Its knobs: ``top_k``, ``repeat_penalty`` always (its default is 1.1, not off), a GBNF
    ``grammar``, and a JSON Schema as ``{"type": "json_object", "schema": …}`` (it answers
    ``json_schema`` with a 422)."""
    plain = body_for(ask(), "llama-cpp-python")
    assert plain["repeat_penalty"] == 1.0
    sampled = GenerationRequest(
        ask().messages, ask().sampling.__class__(0.7, 0.9, 40, 10, repeat_penalty=1.3)
    )
    body = body_for(sampled, "llama-cpp-python")
    assert (body["top_k"], body["repeat_penalty"]) == (40, 1.3)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = ask(constraint=Constraint(json.dumps(schema), syntax="json_schema"))
    assert body_for(request, "llama-cpp-python")["response_format"] == {
        "type": "json_object",
        "schema": schema,
    }
    gbnf = ask(constraint=Constraint('root ::= "yes" | "no"', scope="output"))
    assert body_for(gbnf, "llama-cpp-python")["grammar"] == 'root ::= "yes" | "no"'
    enum = ask(constraint=Constraint('start: "red" | "blue"', syntax="lark"))
    assert body_for(enum, "llama-cpp-python")["grammar"] == 'root ::= "red" | "blue"'
    thinking = body_for(ask(reasoning=ReasoningControl(budget=300)), "llama-cpp-python")
    assert "chat_template_kwargs" not in thinking  # it takes none per request


def test_a_name_repeated_in_every_chunk_is_one_name() -> None:
    """llama-cpp-python streams a forced call with the function's name in every chunk."""
    d = decoder()
    head = {"index": 0, "id": "call_1", "type": "function"}
    events = [
        *d.feed(delta(tool_calls=[{**head, "function": {"name": "get_weather", "arguments": ""}}])),
        *d.feed(
            delta(tool_calls=[{**head, "function": {"name": "get_weather", "arguments": '{"c'}}])
        ),
        *d.feed(
            delta(tool_calls=[{**head, "function": {"name": "get_weather", "arguments": '": 1}'}}])
        ),
        *d.feed(finish("tool_calls")),
    ]
    tail, _ = d.finish()
    events += tail
    assert events == [
        ToolCallStart(0, "get_weather"),
        ToolCallArguments(0, '{"c'),
        ToolCallArguments(0, '": 1}'),
        ToolCallEnd(0, "get_weather", '{"c":1}'),
    ]


def test_a_stream_without_usage_has_estimated_counts() -> None:
    d = ChunkDecoder(None, max_output_tokens=100, context_length=4096, prompt_estimate=42)
    d.feed(delta(content="Hello"))
    d.feed(delta(content=" world"))
    d.feed(finish("stop"))
    _, finished = d.finish()
    assert (finished.prompt_tokens, finished.output_tokens) == (42, 2)
    assert finished.estimated
    exact = ChunkDecoder(None, max_output_tokens=100, context_length=4096, prompt_estimate=42)
    exact.feed(finish("stop"))
    exact.feed({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 0}})
    _, finished = exact.finish()
    assert (finished.prompt_tokens, finished.estimated) == (9, False)
