"""Tool calls on the real engine: the grammar holds every call to a declared tool and its
schema (greedy and sampled), the parser reads what the model wrote, ``none`` keeps the call
marker out, and a schema llguidance cannot enforce is refused naming its tool. Both formats:
the bundled model's own (SmolLM2's JSON array) and Hermes-style, through a template that
renders ``tools`` itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

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
    ToolCallEnd,
    ToolSpec,
    ToolUse,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.errors import InvalidConstraint
from tests.support import tool_calls
from tests.support.tool_calls import (
    ASK,
    events,
    template_engine,
    the_forced_call,
    weather_and_time,
)

pytestmark = pytest.mark.engine

TOOLS, SCHEMAS = weather_and_time()

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
    return tool_calls.sampling(temperature, seed, tokens=96)


def calls_of(got: list[EngineEvent]) -> list[ToolCallEnd]:
    """The completed calls; their argument pieces must join to the same JSON."""
    return tool_calls.calls_of(got, exact=False)


@pytest.fixture(scope="module")
async def hermes_engine() -> AsyncIterator[LlamaEngine]:
    engine = template_engine("hermes", HERMES_TEMPLATE, tool_format="hermes")
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
    the_forced_call(await events(chosen, request), SCHEMAS, exact=False)


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
