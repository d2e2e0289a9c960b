"""What the real engine's tool-call tests share: the weather and time tools, the question
that calls for one, an engine on the bundled model with a given chat template, and the calls
read back out of a request's events (each checked against the pieces it streamed in), and
what a forced call must be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from gemserve.engine import (
    ChatMessage,
    EngineEvent,
    Finished,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
)
from gemserve.engine.llama import LlamaEngine
from tests.support.llama import default_spec

Schema = dict[str, Any]

WEATHER_SCHEMA: Schema = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME_SCHEMA: Schema = {
    "type": "object",
    "properties": {"tz": {"type": "string", "maxLength": 30}},
    "required": ["tz"],
    "additionalProperties": False,
}
ASK = (ChatMessage("user", "What is the weather in Paris?"),)


def weather_and_time(
    weather: Schema = WEATHER_SCHEMA,
) -> tuple[tuple[ToolSpec, ...], dict[str, Schema]]:
    """The two tools (``weather`` as get_weather's parameters) and each one's schema by name,
    to validate the calls against."""
    tools = (
        ToolSpec("get_weather", "The weather in a city", json.dumps(weather)),
        ToolSpec("get_time", "The time in a time zone", json.dumps(TIME_SCHEMA)),
    )
    return tools, {"get_weather": weather, "get_time": TIME_SCHEMA}


# The tool-call families' tools (tests/engine/llama/test_tool_formats.py and, on a copy of the
# model whose control tokens are the markers, test_specials.py): get_weather takes a bounded
# integer too, so the arguments' grammar has a number to hold.
FAMILY_TOOLS, FAMILY_SCHEMAS = weather_and_time(
    {
        **WEATHER_SCHEMA,
        "properties": {
            **WEATHER_SCHEMA["properties"],
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
        },
    }
)


def sampling(temperature: float, seed: int | None = None, tokens: int = 160) -> SamplingParams:
    return SamplingParams(
        temperature=temperature,
        top_p=0.95,
        top_k=40,
        max_output_tokens=tokens,
        repeat_penalty=1.1,
        seed=seed,
    )


def template_engine(
    model_id: str,
    chat_template: str | None,
    tool_format: str | None = None,
    *,
    gguf: Path | None = None,
) -> LlamaEngine:
    """The bundled model (or ``gguf``), not started, through ``chat_template`` (None: the
    GGUF's own); its tool format is read off the template unless ``tool_format`` names it."""
    return LlamaEngine(
        model_id=model_id,
        gguf_path=gguf or default_spec().gguf_path(),
        context_length=1024,
        output_token_limit=512,
        slots=2,
        batch_tokens=256,
        threads=2,
        max_queued=8,
        chat_template=chat_template,
        tool_format=tool_format,
    )


async def events(engine: LlamaEngine, request: GenerationRequest) -> list[EngineEvent]:
    stream = await engine.generate(request)
    return [event async for event in stream]


def calls_of(got: list[EngineEvent], *, exact: bool = True) -> list[ToolCallEnd]:
    """The completed calls, after checking that each one's start names it and its argument
    pieces join to its arguments: to the letter, or (``exact=False``) to the same JSON."""
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
        if exact:
            assert pieces[end.index] == end.arguments
        else:
            assert json.loads(pieces[end.index]) == json.loads(end.arguments)
    return ends


def the_forced_call(
    got: list[EngineEvent], schemas: dict[str, Schema], *, exact: bool = True
) -> ToolCallEnd:
    """The one call of an answer forced to call (``any``, not parallel): the answer ends
    STOP, the call's arguments validate against its tool's schema, and no text was written
    (nothing of the call's markers reaches a text delta)."""
    finished = got[-1]
    assert isinstance(finished, Finished)
    assert finished.reason is FinishReason.STOP, got
    (call,) = calls_of(got, exact=exact)
    jsonschema.validate(json.loads(call.arguments), schemas[call.name])
    assert not [e for e in got if isinstance(e, TextDelta) and e.text.strip()]
    return call
