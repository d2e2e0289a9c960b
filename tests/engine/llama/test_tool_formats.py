"""The tool-call families on the real engine: the bundled model run through a minimal chat
template of each family (tests/engine/tools/templates.py), its format read off the template.
A forced call (``any``) must parse and validate against its schema, greedy and sampled; a
history of calls and results must render through the family's template (Mistral's 9-character
ids included) and be answered. And SmolLM2's own format: the answer to a result does not echo
the ``<tool_response>`` wrapper the result came in."""

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
from gemserve.engine.tools.formats import detect
from tests.engine.tools.templates import TEMPLATES
from tests.support.llama import default_spec

pytestmark = pytest.mark.engine

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
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
FAMILIES = ["llama3", "mistral_json", "mistral_args", "mistral_call_id", "qwen3_coder"]


def sampling(temperature: float, seed: int | None = None, tokens: int = 160) -> SamplingParams:
    return SamplingParams(
        temperature=temperature,
        top_p=0.95,
        top_k=40,
        max_output_tokens=tokens,
        repeat_penalty=1.1,
        seed=seed,
    )


async def events(engine: LlamaEngine, request: GenerationRequest) -> list[EngineEvent]:
    stream = await engine.generate(request)
    return [event async for event in stream]


def calls_of(got: list[EngineEvent]) -> list[ToolCallEnd]:
    """The completed calls, after checking that each one's argument pieces join to it."""
    pieces: dict[int, str] = {}
    started: dict[int, str] = {}
    for event in got:
        if isinstance(event, ToolCallStart):
            started[event.index] = event.name
        elif isinstance(event, ToolCallArguments):
            pieces[event.index] = pieces.get(event.index, "") + event.text
    ends = [e for e in got if isinstance(e, ToolCallEnd)]
    for end in ends:
        assert started[end.index] == end.name
        assert pieces[end.index] == end.arguments
    return ends


@pytest.fixture(scope="module", params=FAMILIES)
async def family(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, LlamaEngine]]:
    name: str = request.param
    spec = default_spec()
    engine = LlamaEngine(
        model_id=name,
        gguf_path=spec.gguf_path(),
        context_length=1024,
        output_token_limit=512,
        slots=2,
        batch_tokens=256,
        threads=2,
        max_queued=8,
        chat_template=TEMPLATES[name],
    )
    await engine.start()
    yield name, engine
    await engine.close()


@pytest.mark.parametrize(("temperature", "seed"), [(0.0, None), (0.8, 1), (1.2, 2), (1.2, 3)])
async def test_forced_calls_validate_against_their_schema(
    family: tuple[str, LlamaEngine], temperature: float, seed: int | None
) -> None:
    name, engine = family
    assert detect(TEMPLATES[name]).name == name  # the engine reads it off the template
    request = GenerationRequest(
        ASK, sampling(temperature, seed), tools=ToolUse(TOOLS, "any", parallel=False)
    )
    got = await events(engine, request)
    finished = got[-1]
    assert isinstance(finished, Finished)
    assert finished.reason is FinishReason.STOP, got
    (call,) = calls_of(got)
    jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
    assert not [e for e in got if isinstance(e, TextDelta) and e.text.strip()]


async def test_a_history_of_calls_and_results_renders_and_is_answered(
    family: tuple[str, LlamaEngine],
) -> None:
    _, engine = family
    history = (
        *ASK,
        ChatMessage(
            "assistant",
            "",
            tool_calls=(ToolCall("call_0f1e2d3c4b5a", "get_weather", '{"city": "Paris"}'),),
        ),
        ChatMessage("tool", '{"sky": "sunny", "c": 21}', tool_call_id="call_0f1e2d3c4b5a"),
    )
    request = GenerationRequest(history, sampling(0.0, tokens=48), tools=ToolUse(TOOLS))
    got = await events(engine, request)
    assert isinstance(got[-1], Finished)
    assert got[-1].reason in (FinishReason.STOP, FinishReason.MAX_TOKENS), got
    for call in calls_of(got):
        jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])


ANSWERED = (
    *ASK,
    ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city": "Paris"}'),)),
    ChatMessage("tool", '{"sky": "sunny"}', tool_call_id="c1", tool_name="get_weather"),
)


@pytest.mark.parametrize("declared", [True, False], ids=["tools", "no_tools"])
@pytest.mark.parametrize(("temperature", "seed"), [(0.0, None), (0.7, 1), (0.7, 2), (1.0, 3)])
async def test_the_answer_to_a_result_does_not_echo_its_wrapper(
    engine: LlamaEngine, temperature: float, seed: int | None, declared: bool
) -> None:
    """SmolLM2 (json_array: results come back as <tool_response> text) tends to begin its
    answer with the wrapper it just read; the answer's grammar rules it out, also when the
    results come without their declarations."""
    tools = ToolUse(TOOLS) if declared else None
    request = GenerationRequest(ANSWERED, sampling(temperature, seed, 64), tools=tools)
    got = await events(engine, request)
    text = "".join(e.text for e in got if isinstance(e, TextDelta))
    assert "<tool_response>" not in text
    assert "</tool_response>" not in text
    for call in calls_of(got):
        jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
