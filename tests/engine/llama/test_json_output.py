"""JSON output on the real engine: a JSON Schema constraint (llguidance) holds greedy and
sampled answers to the schema, leaves a native thought free, and names what it cannot
enforce before admission."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from gemserve.engine import (
    ChatMessage,
    Constraint,
    FinishReason,
    GenerationRequest,
    ReasoningControl,
    SamplingParams,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.errors import InvalidArgument
from tests.support.generation import thought_and_answer

pytestmark = pytest.mark.engine

RECIPE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "minutes": {"type": "integer", "minimum": 1, "maximum": 600},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
        "vegan": {"type": "boolean"},
    },
    "required": ["name", "minutes", "tags", "vegan"],
    "additionalProperties": False,
}
ASK = (ChatMessage("user", "Give me a recipe for pancakes as JSON."),)


def json_constraint(schema: dict[str, Any], scope: str = "answer") -> Constraint:
    return Constraint(json.dumps(schema), scope=scope, syntax="json_schema")  # type: ignore[arg-type]


def sampling(temperature: float, seed: int | None = None) -> SamplingParams:
    return SamplingParams(
        temperature=temperature,
        top_p=0.95,
        top_k=40,
        max_output_tokens=160,
        repeat_penalty=1.15,
        seed=seed,
    )


@pytest.mark.parametrize(("temperature", "seed"), [(0.0, None), (0.8, 1), (1.2, 2), (1.2, 3)])
async def test_every_answer_validates_against_the_schema(
    engine: LlamaEngine, temperature: float, seed: int | None
) -> None:
    request = GenerationRequest(
        ASK, sampling(temperature, seed), constraint=json_constraint(RECIPE)
    )
    _, answer, finished = await thought_and_answer(engine, request)
    assert finished.reason is FinishReason.STOP, answer
    jsonschema.validate(json.loads(answer), RECIPE)


async def test_without_the_schema_the_model_does_not_write_this_json(engine: LlamaEngine) -> None:
    """So the test above measures the constraint, not the model's habits."""
    _, answer, _ = await thought_and_answer(engine, GenerationRequest(ASK, sampling(0.0)))
    with pytest.raises((ValueError, jsonschema.ValidationError)):
        jsonschema.validate(json.loads(answer), RECIPE)


async def test_with_thinking_off_the_answer_is_json_from_its_first_token(
    engine: LlamaEngine,
) -> None:
    schema = {"type": "object", "properties": {"paws": {"type": "integer"}}, "required": ["paws"]}
    control = ReasoningControl(budget=0)  # thinking off: the prompt closes the thought
    _, answer, finished = await thought_and_answer(
        engine,
        GenerationRequest(
            (ChatMessage("user", "How many paws do two dogs have?"),),
            sampling(0.0),
            reasoning=control,
            constraint=json_constraint(schema),
        ),
    )
    assert finished.reason is FinishReason.STOP
    assert isinstance(json.loads(answer)["paws"], int)


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "object", "not": {"required": ["a"]}}, '"not"'),
        ({"type": "string", "pattern": "(?<=a)b"}, "look-around"),
    ],
)
async def test_what_cannot_be_enforced_is_refused_before_admission(
    engine: LlamaEngine, schema: dict[str, Any], fragment: str
) -> None:
    before = engine.stats().requests_finished
    with pytest.raises(InvalidArgument) as info:
        await engine.generate(
            GenerationRequest(ASK, sampling(0.0), constraint=json_constraint(schema))
        )
    assert info.value.message.startswith("The JSON Schema cannot be enforced")
    assert fragment in info.value.message
    assert engine.stats().requests_finished == before


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_an_enum_answer_is_exactly_one_of_its_values(engine: LlamaEngine, seed: int) -> None:
    """``text/x.enum``: an llguidance choice of literals, without quotes."""
    constraint = Constraint('start: "red" | "green" | "blue"', syntax="lark")
    _, answer, finished = await thought_and_answer(
        engine,
        GenerationRequest(
            (ChatMessage("user", "What color is the sky?"),),
            sampling(1.0, seed),
            constraint=constraint,
        ),
    )
    assert finished.reason is FinishReason.STOP
    assert answer in ("red", "green", "blue")
