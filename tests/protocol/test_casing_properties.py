"""Property tests of the request models' two key casings (``WireModel``).

Random valid bodies of the Interactions create request (and its ``input`` steps, parsed by
``parse_input``), ``generateContent`` and ``embedContent`` are parsed once; the model is dumped
with field names (snake_case) and with aliases (lowerCamelCase), and a body is rebuilt choosing
the casing of every key at random, at every depth (free-form values, e.g. ``labels`` or
function arguments, are the same in both dumps, so are never re-cased). Checked: the parsed
model is identical whichever casing each key used; a key in neither casing, put into any
object that is a model, is refused with ``InvalidArgument`` naming it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from gemserve.errors import InvalidArgument
from gemserve.protocol.classic.embed import EmbedContentRequest
from gemserve.protocol.classic.request import GenerateContentRequest
from gemserve.protocol.interactions.request import CreateInteraction, parse_input

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

words = st.text(st.sampled_from("abcxyz _-é"), min_size=1, max_size=8)
free_keys = st.text(st.sampled_from("ab_cD"), min_size=1, max_size=6)  # snake and camel alike
free_json = st.recursive(
    st.none() | st.booleans() | st.integers(-100, 100) | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(free_keys, inner, max_size=3),
    max_leaves=6,
)


def some(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with any subset of ``fields`` (snake_case names)."""
    return st.fixed_dictionaries({}, optional=fields)


INTERACTION_CONFIG = some(
    temperature=st.floats(0, 2),
    top_p=st.floats(0, 1),
    top_k=st.integers(1, 1000),
    max_output_tokens=st.integers(1, 10**6) | st.integers(1, 10**6).map(str),
    stop_sequences=st.lists(words, max_size=3),
    seed=st.integers(0, 2**40),
    presence_penalty=st.floats(-2, 2),
    frequency_penalty=st.floats(-2, 2),
    thinking_level=st.sampled_from(["minimal", "low", "medium", "high"]),
)
TEXT = st.fixed_dictionaries({"type": st.just("text"), "text": words})
MEDIA = st.fixed_dictionaries(
    {"type": st.sampled_from(["image", "audio", "video", "document"])},
    optional={
        "data": st.just("aGVsbG8="),
        "mime_type": st.sampled_from(["image/png", "audio/wav", "application/pdf"]),
        "sample_rate": st.integers(1, 48000),
    },
)
USER_INPUT = st.fixed_dictionaries(
    {"type": st.just("user_input"), "content": st.lists(TEXT | MEDIA, min_size=1, max_size=3)}
)
HISTORY = st.lists(
    st.one_of(
        USER_INPUT,
        st.fixed_dictionaries(
            {"type": st.just("model_output"), "content": st.lists(TEXT, min_size=1, max_size=2)}
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("function_call"),
                "id": words,
                "name": words,
                "arguments": st.dictionaries(free_keys, free_json, max_size=3),
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("function_result"),
                "call_id": words,
                "result": words | st.dictionaries(free_keys, free_json, min_size=1, max_size=3),
            },
            optional={"is_error": st.booleans(), "name": words},
        ),
    ),
    max_size=3,
)
STEPS = st.tuples(HISTORY, USER_INPUT).map(lambda t: [*t[0], t[1]])  # ends with the user's turn
CREATE_INTERACTION = st.fixed_dictionaries(
    {"model": st.just("gemini-2.5-flash"), "input": words},
    optional={
        "system_instruction": words,
        "generation_config": INTERACTION_CONFIG,
        "stream": st.booleans(),
        "previous_interaction_id": words,
        "response_mime_type": st.sampled_from(["text/plain", "application/json"]),
        "labels": st.dictionaries(free_keys, words, max_size=3),
        "service_tier": st.sampled_from(["flex", "standard"]),
    },
)
PART = st.one_of(
    some(text=words, thought=st.booleans(), thought_signature=words),
    st.fixed_dictionaries(
        {"inline_data": some(mime_type=words, data=st.just("aGk="), display_name=words)}
    ),
    st.fixed_dictionaries({"file_data": some(mime_type=words, file_uri=words)}),
)
CONTENT = some(role=st.sampled_from(["user", "model"]), parts=st.lists(PART, max_size=3))
CLASSIC_CONFIG = some(
    temperature=st.floats(0, 2),
    top_k=st.integers(1, 1000).map(float),
    candidate_count=st.integers(1, 4),
    max_output_tokens=st.integers(1, 10**6),
    stop_sequences=st.lists(words, max_size=3),
    response_mime_type=st.just("text/plain"),
    response_logprobs=st.booleans(),
    thinking_config=some(include_thoughts=st.booleans(), thinking_budget=st.integers(-1, 10**5)),
)
GENERATE_CONTENT = st.fixed_dictionaries(
    {"contents": st.lists(CONTENT, min_size=1, max_size=3)},
    optional={
        "system_instruction": CONTENT,
        "generation_config": CLASSIC_CONFIG,
        "safety_settings": st.lists(some(category=words, threshold=words), max_size=2),
        "labels": st.dictionaries(free_keys, words, max_size=3),
    },
)
EMBED_CONTENT = st.fixed_dictionaries(
    {"content": CONTENT},
    optional={
        "task_type": st.just("RETRIEVAL_QUERY"),
        "title": words,
        "output_dimensionality": st.integers(1, 512),
    },
)


def parse_steps(body: Any) -> list[BaseModel]:
    return parse_input(body, max_parts=1000)


# (what to parse with, a strategy of snake_case bodies)
SURFACES: dict[str, tuple[Callable[[Any], Any], st.SearchStrategy[Any]]] = {
    "interactions": (CreateInteraction.parse, CREATE_INTERACTION),
    "interaction_input": (parse_steps, STEPS),
    "generate_content": (GenerateContentRequest.parse, GENERATE_CONTENT),
    "embed_content": (EmbedContentRequest.parse, EMBED_CONTENT),
}


def dumps(parsed: Any, by_alias: bool) -> Any:
    if isinstance(parsed, list):
        return [dumps(p, by_alias) for p in parsed]
    return parsed.model_dump(mode="json", exclude_unset=True, by_alias=by_alias)


def mix(snake: Any, camel: Any, choose: Callable[[], bool]) -> Any:
    """One body from the two dumps: each key in the casing ``choose`` picks."""
    if isinstance(snake, dict):
        assert len(snake) == len(camel)
        return {
            (s_key if choose() else c_key): mix(s_val, c_val, choose)
            for (s_key, s_val), (c_key, c_val) in zip(snake.items(), camel.items(), strict=True)
        }
    if isinstance(snake, list):
        return [mix(s, c, choose) for s, c in zip(snake, camel, strict=True)]
    assert snake == camel
    return snake


def model_objects(parsed: Any, dumped: Any) -> Iterator[dict[str, Any]]:
    """Every object of ``dumped`` (a snake_case dump) that a model parsed."""
    if isinstance(parsed, BaseModel):
        yield dumped
        for name in parsed.model_fields_set:
            yield from model_objects(getattr(parsed, name), dumped[name])
    elif isinstance(parsed, list) and isinstance(dumped, list):
        for p, d in zip(parsed, dumped, strict=True):
            yield from model_objects(p, d)


@pytest.mark.parametrize("surface", sorted(SURFACES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_either_casing_of_every_key_parses_the_same(surface: str, data: st.DataObject) -> None:
    parse, bodies = SURFACES[surface]
    parsed = parse(data.draw(bodies, label="body"))
    snake, camel = dumps(parsed, by_alias=False), dumps(parsed, by_alias=True)
    assert parse(copy.deepcopy(snake)) == parsed  # the dump itself round-trips
    choices = iter(data.draw(st.lists(st.booleans(), min_size=200, max_size=200), label="cases"))
    mixed = mix(snake, camel, lambda: next(choices, True))
    assert parse(mixed) == parsed, mixed


unknown_names = st.from_regex(r"zq[a-z]{0,5}(_[a-z]{1,4}|[A-Z][a-z]{1,4})?", fullmatch=True)


@pytest.mark.parametrize("surface", sorted(SURFACES))
@settings(max_examples=100, deadline=None)
@given(data=st.data(), name=unknown_names)
def test_a_key_in_neither_casing_is_refused_by_name(
    surface: str, data: st.DataObject, name: str
) -> None:
    parse, bodies = SURFACES[surface]
    parsed = parse(data.draw(bodies, label="body"))
    snake = dumps(parsed, by_alias=False)
    body = copy.deepcopy(snake)
    targets = list(model_objects(parsed, body))
    target = data.draw(st.sampled_from(targets), label="object")
    target[name] = data.draw(free_json, label="value")
    with pytest.raises(InvalidArgument) as caught:
        parse(body)
    assert repr(name) in str(caught.value) or f"'{name}'" in str(caught.value), caught.value
