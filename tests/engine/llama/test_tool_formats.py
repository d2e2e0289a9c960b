"""The tool-call families on the real engine: the bundled model run through a minimal chat
template of each family (tests/engine/tools/templates.py), its format read off the template.
A forced call (``any``) must parse and validate against its schema, greedy and sampled; a
history of calls and results must render through the family's template (Mistral's 9-character
ids included) and be answered. And SmolLM2's own format: the answer to a result does not echo
the ``<tool_response>`` wrapper the result came in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import jsonschema
import pytest

from gemserve.engine import (
    ChatMessage,
    Finished,
    FinishReason,
    GenerationRequest,
    TextDelta,
    ToolCall,
    ToolUse,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.engine.tools.formats import detect
from tests.engine.tools.templates import TEMPLATES
from tests.support.tool_calls import (
    ASK,
    calls_of,
    events,
    sampling,
    template_engine,
    the_forced_call,
)
from tests.support.tool_calls import FAMILY_SCHEMAS as SCHEMAS
from tests.support.tool_calls import FAMILY_TOOLS as TOOLS

pytestmark = pytest.mark.engine

FAMILIES = ["llama3", "mistral_json", "mistral_args", "mistral_call_id", "qwen3_coder"]


@pytest.fixture(scope="module", params=FAMILIES)
async def family(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, LlamaEngine]]:
    name: str = request.param
    engine = template_engine(name, TEMPLATES[name])
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
    the_forced_call(await events(engine, request), SCHEMAS)


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
