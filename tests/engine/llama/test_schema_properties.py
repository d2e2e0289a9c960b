"""Property tests for JSON output: random JSON Schemas from a bounded generator.

- Sampled on the real engine (temperature 1, no truncation, a seed per example), every answer
  that ends with STOP parses and validates with ``jsonschema``: the constraint is a guarantee.
- Without decoding: every valid instance of a schema, drawn by ``instances`` and written as a
  model writes JSON under gemserve's layout (properties in declaration order, raw UTF-8, ", "
  and ": "), is accepted by the llguidance matcher to its end: the constraint does not forbid
  what the schema allows. (``hypothesis-jsonschema`` 0.23.1, the latest, fails inside
  Hypothesis 6.170's internals on any object schema: ``'many' object has no attribute
  'more'``; the generator's schemas are simple enough to draw instances for directly.)

The generator covers objects (properties of string, integer, number, boolean, enum, arrays of
those, nested objects, anyOf of two), ``required`` subsets, minimum/maximum,
minLength/maxLength, minItems/maxItems and ``additionalProperties: false``. Number bounds are
integers: decimal bounds and a few number spellings hit llguidance 1.9.1 false rejections,
pinned below by strict xfails so that an llguidance upgrade that fixes them shows up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import llguidance
import pytest

from gemserve.engine import (
    ChatMessage,
    Constraint,
    FinishReason,
    GenerationRequest,
    SamplingParams,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.engine.llama.guidance import json_grammar, validate
from gemserve.engine.llama.native import LoadedModel
from tests.support.generation import thought_and_answer
from tests.support.llama import default_spec

hypothesis = pytest.importorskip("hypothesis")  # the dev extra; skip, not fail, without it
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.engine

Schema = dict[str, Any]

NAMES = ("name", "id", "score", "tags", "ok", "kind", "size", "note", "when", "city", "count")
WORDS = ("red", "green", "blue", "cat", "dog", "yes", "no", "small", "large", "café")


# ----- the schema generator ----------------------------------------------------------------


@st.composite
def _bounds(draw: st.DrawFn, low: int, high: int) -> tuple[int | None, int | None]:
    """An optional lower and an optional upper bound, lower ≤ upper, within [low, high]."""
    lower = draw(st.none() | st.integers(low, high))
    upper = draw(st.none() | st.integers(lower if lower is not None else low, high))
    return lower, upper


def _with(schema: Schema, **bounds: int | None) -> Schema:
    return {**schema, **{k: v for k, v in bounds.items() if v is not None}}


@st.composite
def string_schemas(draw: st.DrawFn) -> Schema:
    """maxLength is always set (≤ 10): answers sampled at temperature 1 then end in budget."""
    lower = draw(st.none() | st.integers(0, 4))
    upper = draw(st.integers(max(lower or 0, 1), 10))
    return _with({"type": "string"}, minLength=lower, maxLength=upper)


@st.composite
def integer_schemas(draw: st.DrawFn) -> Schema:
    lower, upper = draw(_bounds(-1000, 1000))
    return _with({"type": "integer"}, minimum=lower, maximum=upper)


@st.composite
def number_schemas(draw: st.DrawFn) -> Schema:
    """Integer bounds, never equal and no maximum of 0 (decimal bounds, equal bounds and
    ``maximum: 0`` meet llguidance false rejections: the xfails at the end)."""
    lower, upper = draw(_bounds(-1000, 1000))
    if upper is not None and (upper == lower or upper == 0):
        upper += 1
    return _with({"type": "number"}, minimum=lower, maximum=upper)


def enum_schemas() -> st.SearchStrategy[Schema]:
    return st.lists(st.sampled_from(WORDS), min_size=1, max_size=4, unique=True).map(
        lambda values: {"enum": values}
    )


def scalar_schemas() -> st.SearchStrategy[Schema]:
    return st.one_of(
        string_schemas(),
        integer_schemas(),
        number_schemas(),
        st.just({"type": "boolean"}),
        enum_schemas(),
    )


@st.composite
def array_schemas(draw: st.DrawFn) -> Schema:
    lower = draw(st.none() | st.integers(0, 2))
    upper = draw(st.integers(max(lower or 0, 1), 3))
    return _with({"type": "array", "items": draw(scalar_schemas())}, minItems=lower, maxItems=upper)


def any_of_schemas() -> st.SearchStrategy[Schema]:
    return st.tuples(scalar_schemas(), scalar_schemas()).map(lambda pair: {"anyOf": list(pair)})


@st.composite
def object_schemas(draw: st.DrawFn, depth: int) -> Schema:
    """An object with 1-3 properties; ``depth`` > 1 allows objects among them."""
    leaves = st.one_of(scalar_schemas(), array_schemas(), any_of_schemas())
    values = leaves if depth <= 1 else st.one_of(leaves, object_schemas(depth - 1))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    properties = {name: draw(values) for name in names}
    schema: Schema = {"type": "object", "properties": properties}
    required = [name for name in names if draw(st.booleans())]
    if required:
        schema["required"] = required
    if draw(st.booleans()):
        schema["additionalProperties"] = False
    return schema


def schemas() -> st.SearchStrategy[Schema]:
    """A response schema: an object nested 1 to 3 levels deep."""
    return st.integers(1, 3).flatmap(object_schemas)


@pytest.fixture(scope="module")
def guidance_tokenizer() -> Iterator[Any]:
    """llguidance's view of the bundled model's vocabulary."""
    model = LoadedModel(default_spec().gguf_path())
    yield model.guidance_tokenizer()
    model.free()


def _matcher(tokenizer: Any, schema: Schema) -> Any:
    grammar = json_grammar(json.dumps(schema), leading_whitespace=False, opening_tag=None)
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return matcher


def _accepts(tokenizer: Any, schema: Schema, text: str) -> bool:
    matcher = _matcher(tokenizer, schema)
    return bool(matcher.consume_tokens(tokenizer.tokenize_str(text)) and matcher.is_accepting())


def test_the_generator_only_writes_schemas_that_compile(guidance_tokenizer: Any) -> None:
    """A sanity check of the generator itself, over many schemas (no decoding)."""

    @settings(max_examples=200, deadline=None, database=None)
    @given(schemas())
    def compiles(schema: Schema) -> None:
        jsonschema.Draft202012Validator.check_schema(schema)
        grammar = json_grammar(json.dumps(schema), leading_whitespace=False, opening_tag=None)
        assert validate(guidance_tokenizer, grammar) is None, schema

    compiles()


# ----- sampled on the real engine ------------------------------------------------------------

SAMPLES_PER_SCHEMA = 3  # side by side: the fixture's engine has 4 slots
MAX_OUTPUT_TOKENS = 100
_finished: dict[str, int] = {"stop": 0, "total": 0}


def _request(schema: Schema, seed: int) -> GenerationRequest:
    ask = f"Reply with a JSON value for this JSON Schema, nothing else:\n{json.dumps(schema)}"
    sampling = SamplingParams(
        temperature=1.0, top_p=1.0, top_k=0, max_output_tokens=MAX_OUTPUT_TOKENS, seed=seed
    )
    constraint = Constraint(json.dumps(schema), syntax="json_schema")
    return GenerationRequest((ChatMessage("user", ask),), sampling, constraint=constraint)


@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(schema=schemas(), seed=st.integers(0, 2**31 - 1 - SAMPLES_PER_SCHEMA))
async def test_every_sampled_output_validates(
    engine: LlamaEngine, schema: Schema, seed: int
) -> None:
    results = await asyncio.gather(
        *(thought_and_answer(engine, _request(schema, seed + i)) for i in range(SAMPLES_PER_SCHEMA))
    )
    for _, answer, finished in results:
        _finished["total"] += 1
        if finished.reason is not FinishReason.STOP:
            continue  # cut at MAX_OUTPUT_TOKENS: a prefix, not an answer
        _finished["stop"] += 1
        jsonschema.validate(json.loads(answer), schema)


def test_most_sampled_outputs_finished() -> None:
    """The property above is not vacuous: most answers ended on their own (STOP), within
    MAX_OUTPUT_TOKENS, so they were checked. Runs after it (file order)."""
    if _finished["total"] == 0:
        pytest.skip("the sampling property did not run in this session")
    assert _finished["stop"] >= _finished["total"] // 2, _finished


# ----- the matcher alone ---------------------------------------------------------------------

# Characters a string may hold here: not U+007F, which llguidance 1.9.1 accepts only escaped
# (xfail below), and not U+40000 and up: SmolLM2's vocabulary has no token for the UTF-8 lead
# bytes F1 and F2 (U+40000-U+BFFFF), so the model cannot write them at all.
CHARACTERS = st.characters(
    max_codepoint=0x3FFFF, exclude_categories=("Cs",), exclude_characters="\x7f"
)


def _text(min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    return st.text(CHARACTERS, min_size=min_size, max_size=max_size)


def instances(schema: Schema) -> st.SearchStrategy[Any]:
    """Valid instances of a schema from the generator above (every keyword it writes)."""
    if "anyOf" in schema:
        return st.one_of(*(instances(branch) for branch in schema["anyOf"]))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low, high = schema.get("minimum"), schema.get("maximum")
        decimals = st.decimals(low, high, places=3, allow_nan=False, allow_infinity=False)
        return st.integers(low, high) | decimals.map(float)
    if kind == "string":
        return _text(schema.get("minLength", 0), schema["maxLength"])
    if kind == "array":
        return st.lists(
            instances(schema["items"]),
            min_size=schema.get("minItems", 0),
            max_size=schema.get("maxItems", 3),
        )
    return _object_instances(schema)


@st.composite
def _object_instances(draw: st.DrawFn, schema: Schema) -> dict[str, Any]:
    """Declared properties in their order (gemserve's layout), required ones always, then
    (unless ``additionalProperties: false``) a few undeclared ones with any JSON value."""
    required = set(schema.get("required", ()))
    value: dict[str, Any] = {}
    for name, sub in schema["properties"].items():
        if name in required or draw(st.booleans()):
            value[name] = draw(instances(sub))
    if schema.get("additionalProperties", True) is not False:
        scalars = st.none() | st.booleans() | st.integers() | _text(max_size=8)
        extra = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=4)
        names = _text(max_size=6).filter(lambda name: name not in schema["properties"])
        value.update(draw(st.dictionaries(names, extra, max_size=2)))
    return value


def _spellings_llguidance_refuses(value: Any) -> bool:
    """Floats Python writes as -0.0 or with an exponent (3.8e+19, beyond a one-sided bound):
    valid, but refused under numeric bounds by llguidance 1.9.1 (the xfails below)."""
    if isinstance(value, float):
        text = json.dumps(value)
        return text == "-0.0" or "e" in text
    if isinstance(value, list):
        return any(_spellings_llguidance_refuses(v) for v in value)
    if isinstance(value, dict):
        return any(_spellings_llguidance_refuses(v) for v in value.values())
    return False


@settings(max_examples=150, deadline=None, database=None)
@given(schema=schemas(), data=st.data())
def test_the_matcher_accepts_every_valid_instance(
    guidance_tokenizer: Any, schema: Schema, data: st.DataObject
) -> None:
    """Written as a model writes it under gemserve's layout: declared properties in order,
    raw UTF-8 (``ensure_ascii=False``: llguidance allows only the escapes JSON requires)."""
    instance = data.draw(instances(schema), label="instance")
    assume(not _spellings_llguidance_refuses(instance))
    jsonschema.validate(instance, schema)  # the strategy itself is right
    text = json.dumps(instance, ensure_ascii=False)
    assert _accepts(guidance_tokenizer, schema, text), text


# Valid instances llguidance 1.9.1 refuses (found by this file and by
# bench/bench_schema_suite.py). Each is a false rejection, never a false acceptance: the model
# is steered to another spelling of a valid value. An llguidance that accepts one fails here.
KNOWN_FALSE_REJECTIONS = [
    ({"type": "number", "maximum": 2.25}, "2.2", "a decimal prefix of a decimal bound"),
    ({"type": "number", "maximum": 7.1}, "7.10", "a bound written with a trailing zero"),
    ({"type": "number", "maximum": 5}, "-0.50", "a negative fraction with a trailing zero"),
    ({"type": "number", "maximum": 5}, "-0.0", "negative zero under a bound"),
    ({"type": "number", "minimum": 0}, "1e-05", "an exponent under a bound"),
    ({"type": "number", "minimum": 256}, "3.8e+19", "a large exponent under a bound"),
    ({"type": "number", "minimum": 12, "maximum": 12}, "12.0", "an integral float, equal bounds"),
    ({"type": "number", "maximum": 0}, "0.0", "0.0 under a maximum of 0"),
    ({"type": "integer"}, "1.0", "an integral float for an integer (JSON Schema: valid)"),
    ({"type": "string"}, '"\\u00e9"', "a \\u escape that JSON does not require"),
    ({"type": "string"}, '"\\/"', "the escaped solidus"),
    ({"type": "string"}, '"\x7f"', "a raw U+007F (only its escape passes)"),
    ({"properties": {"a": {}, "b": {}}}, '{"b": 1, "a": 2}', "properties out of order"),
]


@pytest.mark.parametrize(
    ("schema", "text"),
    [pytest.param(s, t, id=why) for s, t, why in KNOWN_FALSE_REJECTIONS],
)
def test_known_false_rejections(guidance_tokenizer: Any, schema: Schema, text: str) -> None:
    jsonschema.validate(json.loads(text), schema)  # valid JSON, valid for the schema
    if _accepts(guidance_tokenizer, schema, text):
        pytest.fail(
            "llguidance now accepts this valid spelling: drop it from KNOWN_FALSE_REJECTIONS "
            "(and from the generator's exclusions)"
        )
    pytest.xfail("llguidance 1.9.1 refuses this valid spelling (a false rejection)")
