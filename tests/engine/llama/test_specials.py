"""Tool-call markers and thought tags that are special tokens, on the real engine.

The model is a copy of the bundled one whose rarely used control tokens carry Mistral's
``[TOOL_CALLS]``/``[ARGS]``/``[CALL_ID]``, Llama's ``<|python_tag|>`` (control tokens),
Qwen's ``<tool_call>``/``</tool_call>`` (user-defined) and ``<think>`` (user-defined) /
``</think>`` (control) (tests/support/special_tokens.py). The grammar must make the model
write those tokens (llguidance matches a special token only by reference), the call parser
and the thinking parser must read them (llama.cpp renders a control token as nothing), and
no marker may reach the answer text. The tokens sampled are read off the scheduler.

A renamed rare token is written only where a grammar asks for it: the small model does not
copy it from its history. Where the model must write one unasked (``auto``'s trigger, a
thought it closes itself, the floor's ban), the marker is swapped onto the token the model
ends its turns with (``write_swapped_model``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import jsonschema
import pytest

from gemserve.engine import (
    ChatMessage,
    EngineEvent,
    Finished,
    FinishReason,
    GenerationRequest,
    ReasoningControl,
    SamplingParams,
    TextDelta,
    ThoughtDelta,
    ToolCall,
    ToolUse,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.engine.llama.guidance import GuidedSampler
from gemserve.engine.llama.native import LoadedModel
from gemserve.engine.llama.scheduler import Scheduler, Sequence
from gemserve.engine.llama.specials import ShownTokens, special_tokens
from gemserve.engine.tools.formats import detect
from tests.engine.tools.templates import TEMPLATES
from tests.support.llama import default_spec
from tests.support.special_tokens import SpecialTokenModel, write_swapped_model
from tests.support.tool_calls import (
    ASK,
    calls_of,
    sampling,
    template_engine,
)
from tests.support.tool_calls import FAMILY_SCHEMAS as SCHEMAS
from tests.support.tool_calls import FAMILY_TOOLS as TOOLS

pytestmark = pytest.mark.engine

# The markers a forced call of each family writes, which must be sampled as their tokens.
# Llama 3's python tag is optional before a call: the model may open with "{" instead.
WRITTEN: dict[str, tuple[str, ...]] = {
    "json_array": ("<tool_call>", "</tool_call>"),
    "hermes": ("<tool_call>", "</tool_call>"),
    "qwen3_coder": ("<tool_call>", "</tool_call>"),
    "mistral_json": ("[TOOL_CALLS]",),
    "mistral_args": ("[TOOL_CALLS]", "[ARGS]"),
    "mistral_call_id": ("[TOOL_CALLS]", "[CALL_ID]", "[ARGS]"),
    "llama3": (),
}
MARKERS = ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>", "<tool_call>", "</tool_call>")


@dataclass
class Sampled:
    """The tokens a sequence was given, and whether a grammar guided each one."""

    tokens: list[int] = field(default_factory=list)
    guided: list[bool] = field(default_factory=list)


def record(scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> Sampled:
    """Every token the scheduler hands to a sequence's output from now on (this test only)."""
    sampled = Sampled()
    original = scheduler._on_token

    def on_token(seq: Sequence, token: int) -> None:
        sampled.tokens.append(token)
        sampled.guided.append(isinstance(seq.sampler, GuidedSampler))
        original(seq, token)

    monkeypatch.setattr(scheduler, "_on_token", on_token)
    return sampled


def scheduler_of(engine: LlamaEngine) -> Scheduler:
    scheduler = engine._scheduler
    assert scheduler is not None
    return scheduler


async def events(engine: LlamaEngine, request: GenerationRequest) -> list[EngineEvent]:
    stream = await engine.generate(request)
    return [event async for event in stream]


def text_of(got: list[EngineEvent]) -> str:
    return "".join(e.text for e in got if isinstance(e, TextDelta))


def special_engine(model: SpecialTokenModel, template: str | None, name: str) -> LlamaEngine:
    return template_engine(name, template, gguf=model.gguf)


def test_the_vocabulary_says_which_markers_are_special_tokens(
    special_token_model: SpecialTokenModel,
) -> None:
    model = LoadedModel(special_token_model.gguf)
    bundled = LoadedModel(default_spec().gguf_path())
    try:
        texts = (*MARKERS, "<think>", "</think>", "<|im_end|>", "[TOOL_RESULTS]", "hello")
        found = special_tokens(model, texts)
        ids = special_token_model.ids
        assert found == {t: ids[t] for t in (*MARKERS, "<think>", "</think>")} | {"<|im_end|>": 2}
        assert special_tokens(bundled, texts) == {"<|im_end|>": 2}  # its markers are text
        # Generated text back to tokens, markers as their tokens (a grammar's replay).
        shown = ShownTokens.of({"[TOOL_CALLS]": 3, "[ARGS]": 4})
        tokens = shown.tokenize(model, 'Hi [TOOL_CALLS]f[ARGS]{"a": 1}')
        assert tokens.count(3) == 1
        assert tokens.count(4) == 1
        assert model.tokenize("[TOOL_CALLS]", add_special=False, parse_special=False) != [3]
        assert shown.pieces[3] == b"[TOOL_CALLS]"
    finally:
        model.free()
        bundled.free()


@pytest.fixture(scope="module", params=sorted(WRITTEN))
async def family(
    request: pytest.FixtureRequest, special_token_model: SpecialTokenModel
) -> AsyncIterator[tuple[str, LlamaEngine]]:
    name: str = request.param
    # SmolLM2's own template (in the GGUF) has no tool section: the JSON-array format.
    template = None if name == "json_array" else TEMPLATES[name]
    engine = special_engine(special_token_model, template, name)
    await engine.start()
    yield name, engine
    await engine.close()


@pytest.mark.parametrize(("temperature", "seed"), [(0.0, None), (0.8, 1), (1.2, 2)])
async def test_a_forced_call_writes_its_markers_as_special_tokens(
    family: tuple[str, LlamaEngine],
    special_token_model: SpecialTokenModel,
    monkeypatch: pytest.MonkeyPatch,
    temperature: float,
    seed: int | None,
) -> None:
    name, engine = family
    if name != "json_array":
        assert detect(TEMPLATES[name]).name == name
    sampled = record(scheduler_of(engine), monkeypatch)
    request = GenerationRequest(
        ASK, sampling(temperature, seed), tools=ToolUse(TOOLS, "any", parallel=False)
    )
    got = await events(engine, request)
    finished = got[-1]
    assert isinstance(finished, Finished)
    assert finished.reason is FinishReason.STOP, got
    (call,) = calls_of(got)
    jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
    ids = special_token_model.ids
    for marker in WRITTEN[name]:
        assert ids[marker] in sampled.tokens, (marker, sampled.tokens)
    assert all(sampled.guided), "a forced call is guided from its first token"
    assert not text_of(got).strip(), "no marker (nor anything else) reaches the answer text"


# An earlier exchange with a call in it: the model, reading its markers as tokens in its
# history, writes them again for the next question (``auto``: nothing forces it to).
EXCHANGE = (
    ChatMessage("user", "What is the weather in Paris?"),
    ChatMessage(
        "assistant",
        "",
        tool_calls=(ToolCall("abcDEF123", "get_weather", '{"city": "Paris", "unit": "celsius"}'),),
    ),
    ChatMessage("tool", '{"sky": "sunny"}', tool_call_id="abcDEF123", tool_name="get_weather"),
    ChatMessage("assistant", "It is sunny in Paris."),
    ChatMessage("user", "What is the weather in Rome?"),
)


def swapped(tmp_path_factory: pytest.TempPathFactory, marker: str) -> SpecialTokenModel:
    """The copy where ``marker`` is the token the model ends its turns with (so it writes it
    unasked: tests/support/special_tokens.write_swapped_model)."""
    target = tmp_path_factory.mktemp("swapped") / "swapped.gguf"
    return write_swapped_model(default_spec().gguf_path(), target, marker)


async def test_auto_switches_its_grammar_on_at_the_special_opener(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` is free text until the opener: the special token fires the lazy trigger
    (its text is what the output reads), and from the next token on the grammar guides."""
    name = "mistral_args"
    model = swapped(tmp_path_factory, "[TOOL_CALLS]")
    engine = special_engine(model, TEMPLATES[name], name)
    await engine.start()
    try:
        sampled = record(scheduler_of(engine), monkeypatch)
        request = GenerationRequest(EXCHANGE, sampling(0.0), tools=ToolUse(TOOLS))
        got = await events(engine, request)
    finally:
        await engine.close()
    opener = model.ids[WRITTEN[name][0]]
    assert opener in sampled.tokens, sampled.tokens
    at = sampled.tokens.index(opener)
    assert not any(sampled.guided[: at + 1]), "free until the trigger"
    assert all(sampled.guided[at + 1 :]), "the grammar guides the call"
    (call, *_) = calls_of(got)
    jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
    for marker in MARKERS:
        assert marker not in text_of(got)


async def test_llama3_python_tag_opens_a_call_when_the_model_writes_it(
    special_token_model: SpecialTokenModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls in the history follow ``<|python_tag|>`` (a control token): the model writes
    it too, and the call after it parses and holds to its schema."""
    template = TEMPLATES["llama3"].replace(
        '<|end_header_id|>\n\n{"name"', '<|end_header_id|>\n\n<|python_tag|>{"name"'
    )
    assert template.count("<|python_tag|>") == 1
    engine = special_engine(special_token_model, template, "llama3")
    await engine.start()
    try:
        sampled = record(scheduler_of(engine), monkeypatch)
        tools = ToolUse(TOOLS, "any", parallel=False)
        got = await events(engine, GenerationRequest(EXCHANGE, sampling(0.0), tools=tools))
    finally:
        await engine.close()
    assert special_token_model.ids["<|python_tag|>"] in sampled.tokens, sampled.tokens
    (call,) = calls_of(got)
    jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
    assert not text_of(got).strip()


# ----- thought tags as special tokens (budget forcing with a one-token closing tag) -----

# ChatML whose generation prompt opens the thought (DeepSeek-R1 style); earlier answers
# carry their thoughts, so the model closes its own with the </think> token it read there.
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
THOUGHTFUL = (
    ChatMessage("user", "What is two plus two?"),
    ChatMessage("assistant", "<think>\nTwo and two make four.\n</think>\n\nFour."),
    ChatMessage("user", "What colour is the sky?"),
    ChatMessage("assistant", "<think>\nThe sky is blue by day.\n</think>\n\nBlue."),
    ChatMessage("user", "How many legs does a cat have?"),
)


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory: pytest.TempPathFactory) -> SpecialTokenModel:
    """``</think>`` (a control token) where the model ends its turns: it closes a short
    thought with it, unasked."""
    return swapped(tmp_path_factory, "</think>")


@pytest.fixture(scope="module")
async def thinker(thinking_model: SpecialTokenModel) -> AsyncIterator[LlamaEngine]:
    engine = special_engine(thinking_model, THINKING_TEMPLATE, "thinker")
    await engine.start()
    yield engine
    await engine.close()


def think(
    budget: int, floor: int = 0, temperature: float = 0.0, seed: int | None = None
) -> GenerationRequest:
    control = ReasoningControl("<think>", "</think>", budget=budget, floor=floor)
    sampled = SamplingParams(
        temperature=temperature,
        top_p=0.95,
        top_k=40,
        max_output_tokens=48,  # the answer's tokens: the thought's do not count
        repeat_penalty=1.1,
        seed=seed,
    )
    return GenerationRequest(THOUGHTFUL, sampled, reasoning=control)


@dataclass
class Thought:
    thought: str
    answer: str
    finished: Finished
    sampled: Sampled


async def thought_of(
    engine: LlamaEngine, request: GenerationRequest, monkeypatch: pytest.MonkeyPatch
) -> Thought:
    with monkeypatch.context() as patch:
        sampled = record(scheduler_of(engine), patch)
        got = await events(engine, request)
    finished = got[-1]
    assert isinstance(finished, Finished)
    thought = "".join(e.text for e in got if isinstance(e, ThoughtDelta))
    return Thought(thought, text_of(got), finished, sampled)


async def test_the_model_closes_its_thought_with_the_special_token(
    thinker: LlamaEngine, thinking_model: SpecialTokenModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``</think>`` is a control token, which llama.cpp renders as nothing: the thinking
    parser must read it all the same, or the whole output would be thought."""
    free = await thought_of(thinker, think(budget=200), monkeypatch)
    close = thinking_model.ids["</think>"]
    assert close in free.sampled.tokens, "the model closes the thought itself"
    assert free.finished.thought_tokens == free.sampled.tokens.index(close) + 1
    assert free.thought.strip()
    assert "<think>" not in free.thought
    assert "</think>" not in free.thought
    # What follows the token is the answer (in this copy the same token also ends the
    # model's turns, so the model may write it again at once: as text, in the answer).
    assert free.answer.strip()
    assert free.finished.thought_tokens < free.finished.output_tokens


async def test_the_engine_closes_the_thought_at_the_budget_with_the_token(
    thinker: LlamaEngine, thinking_model: SpecialTokenModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = await thought_of(thinker, think(budget=200), monkeypatch)
    budget = free.finished.thought_tokens // 2
    assert budget >= 2, "the model's own thought must be longer than the budget below"
    cut = await thought_of(thinker, think(budget=budget), monkeypatch)
    # The engine writes </think> (one token) and the blank line after it.
    assert cut.finished.thought_tokens <= budget + 1
    assert thinking_model.ids["</think>"] in cut.sampled.tokens
    assert "</think>" not in cut.thought
    assert cut.answer.strip(), "the model must go on to answer once the thought is closed"


@pytest.mark.parametrize(("temperature", "seed"), [(0.0, None), (0.7, 1), (1.0, 2)])
async def test_below_its_floor_the_thought_cannot_close(
    thinker: LlamaEngine,
    thinking_model: SpecialTokenModel,
    monkeypatch: pytest.MonkeyPatch,
    temperature: float,
    seed: int | None,
) -> None:
    """Budget forcing: the one-token closing tag (and the end of generation) is banned until
    the floor, so the thought runs at least that long, and then closes."""
    natural = await thought_of(thinker, think(200, 0, temperature, seed), monkeypatch)
    floor = natural.finished.thought_tokens + 24
    held = await thought_of(thinker, think(200, floor, temperature, seed), monkeypatch)
    close = thinking_model.ids["</think>"]
    assert held.finished.thought_tokens >= floor, held.thought
    assert close not in held.sampled.tokens[: floor - 1]
    assert close in held.sampled.tokens, "past the floor the thought closes"
    assert held.answer.strip()
