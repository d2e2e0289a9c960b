"""Tool calls on the real engine: the grammar holds every call to a declared tool and its
schema (greedy and sampled), the parser reads what the model wrote, ``none`` keeps the call
marker out, and a schema llguidance cannot enforce is refused naming its tool. Both formats:
the bundled model's own (SmolLM2's JSON array) and Hermes-style, through a template that
renders ``tools`` itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest

from gemserve.engine import (
    ChatMessage,
    EngineEvent,
    Finished,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    ToolCall,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
    ToolUse,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.errors import InvalidConstraint
from tests.support.llama import default_spec

pytestmark = pytest.mark.engine

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tz": {"type": "string", "maxLength": 30}},
    "required": ["tz"],
    "additionalProperties": False,
}
TOOLS = (
    ToolSpec("get_weather", "The weather in a city", json.dumps(WEATHER_SCHEMA)),
    ToolSpec("get_time", "The time in a time zone", json.dumps(TIME_SCHEMA)),
)
SCHEMAS = {"get_weather": WEATHER_SCHEMA, "get_time": TIME_SCHEMA}
ASK = (ChatMessage("user", "What is the weather in Paris?"),)

# A Hermes-style template (as Qwen's): it renders the tools, the calls and the results.
HERMES_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}\n"
    'Call them as <tool_call>\n{"name": …, "arguments": …}\n</tool_call><|im_end|>\n'
    "{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n"
    "</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>\n{{ c.function | tojson }}\n</tool_call>"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def sampling(temperature: float, seed: int | None = None) -> SamplingParams:
    return SamplingParams(
        temperature=temperature,
        top_p=0.95,
        top_k=40,
        max_output_tokens=96,
        repeat_penalty=1.1,
        seed=seed,
    )


async def events(engine: LlamaEngine, request: GenerationRequest) -> list[EngineEvent]:
    stream = await engine.generate(request)
    return [event async for event in stream]


def calls_of(events: list[EngineEvent]) -> list[ToolCallEnd]:
    """The completed calls, after checking that each one's argument pieces join to it."""
    pieces: dict[int, str] = {}
    started: dict[int, str] = {}
    for event in events:
        if isinstance(event, ToolCallStart):
            started[event.index] = event.name
        elif isinstance(event, ToolCallArguments):
            pieces[event.index] = pieces.get(event.index, "") + event.text
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    for end in ends:
        assert started[end.index] == end.name
        assert json.loads(pieces[end.index]) == json.loads(end.arguments)
    return ends


@pytest.fixture(scope="module")
async def hermes_engine() -> AsyncIterator[LlamaEngine]:
    spec = default_spec()
    engine = LlamaEngine(
        model_id="hermes",
        gguf_path=spec.gguf_path(),
        context_length=1024,
        output_token_limit=512,
        slots=2,
        batch_tokens=256,
        threads=2,
        max_queued=8,
        chat_template=HERMES_TEMPLATE,
        tool_format="hermes",
    )
    await engine.start()
    yield engine
    await engine.close()


@pytest.mark.parametrize(("temperature", "seed"), [(0.0, None), (0.8, 1), (1.2, 2), (1.2, 3)])
@pytest.mark.parametrize("fmt", ["json_array", "hermes"])
async def test_forced_calls_validate_against_their_schema(
    engine: LlamaEngine,
    hermes_engine: LlamaEngine,
    fmt: str,
    temperature: float,
    seed: int | None,
) -> None:
    chosen = engine if fmt == "json_array" else hermes_engine
    request = GenerationRequest(
        ASK, sampling(temperature, seed), tools=ToolUse(TOOLS, "any", parallel=False)
    )
    got = await events(chosen, request)
    finished = got[-1]
    assert isinstance(finished, Finished)
    assert finished.reason is FinishReason.STOP, got
    (call,) = calls_of(got)
    jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
    # The call block is no text: nothing of the marker reaches a text delta.
    assert not [e for e in got if isinstance(e, TextDelta) and e.text.strip()]


async def test_allowed_names_limit_the_call(engine: LlamaEngine) -> None:
    tools = ToolUse(TOOLS, "any", allowed=("get_time",))
    (call, *_) = calls_of(await events(engine, GenerationRequest(ASK, sampling(0.0), tools=tools)))
    assert call.name == "get_time"


async def test_without_tools_the_model_writes_no_call(engine: LlamaEngine) -> None:
    """So the forced tests measure the grammar, not the model's habits."""
    got = await events(engine, GenerationRequest(ASK, sampling(0.0)))
    assert "<tool_call>" not in "".join(e.text for e in got if isinstance(e, TextDelta))


async def test_none_keeps_tools_out_and_writes_text(engine: LlamaEngine) -> None:
    got = await events(
        engine, GenerationRequest(ASK, sampling(0.8, 4), tools=ToolUse(TOOLS, "none"))
    )
    text = "".join(e.text for e in got if isinstance(e, TextDelta))
    assert text.strip()
    assert "<tool_call>" not in text
    assert not calls_of(got)


async def test_auto_is_free_text_or_valid_calls(engine: LlamaEngine) -> None:
    for seed in range(3):
        got = await events(
            engine, GenerationRequest(ASK, sampling(1.0, seed), tools=ToolUse(TOOLS, "auto"))
        )
        for call in calls_of(got):
            jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
        text = "".join(e.text for e in got if isinstance(e, TextDelta))
        assert "<tool_call>" not in text


async def test_history_with_calls_and_results_renders(engine: LlamaEngine) -> None:
    history = (
        *ASK,
        ChatMessage(
            "assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city": "Paris"}'),)
        ),
        ChatMessage("tool", '{"sky": "sunny", "c": 21}', tool_call_id="c1"),
    )
    got = await events(engine, GenerationRequest(history, sampling(0.0), tools=ToolUse(TOOLS)))
    assert isinstance(got[-1], Finished)
    assert got[-1].reason is FinishReason.STOP


async def test_a_schema_llguidance_cannot_enforce_names_its_tool(engine: LlamaEngine) -> None:
    bad = ToolSpec(
        "lookbehind",
        "",
        json.dumps(
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=a)b"}}}
        ),
    )
    with pytest.raises(InvalidConstraint) as info:
        await engine.generate(
            GenerationRequest(ASK, sampling(0.0), tools=ToolUse((*TOOLS, bad), "any"))
        )
    assert info.value.tool == "lookbehind"
