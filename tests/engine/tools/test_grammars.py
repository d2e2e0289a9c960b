"""Each format's grammar, compiled by llguidance for the bundled model's vocabulary, on text
it must take and text it must refuse: calls to the declared tools only, values held to their
schemas, Llama's calls only at the answer's start, the opener kept out under ``none``, and
the results' wrapper kept out of the answer after results (the echo of SmolLM2). And for a
vocabulary whose markers are special tokens (tests/support/special_tokens.py): the grammar
holds the model to those tokens."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import llguidance
import pytest

from gemserve.engine import ToolSpec, ToolUse
from gemserve.engine.llama.native import LoadedModel
from gemserve.engine.llama.specials import ShownTokens, special_tokens
from gemserve.engine.tools.formats import FORMATS
from gemserve.engine.tools.grammar import tool_constraint
from gemserve.engine.tools.lark import Markers
from tests.support.llama import default_spec
from tests.support.special_tokens import SpecialTokenModel

pytestmark = pytest.mark.engine

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"tz": {"type": "string"}},
    "required": ["tz"],
    "additionalProperties": False,
}
TOOLS = (
    ToolSpec("get_weather", "", json.dumps(WEATHER)),
    ToolSpec("get_time", "", json.dumps(TIME)),
)

# One valid call per format, and one that breaks the weather schema (an unknown unit).
CALLS = {
    "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
    '"unit": "%s"}}\n</tool_call>',
    "json_array": '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Paris", '
    '"unit": "%s"}}\n]</tool_call>',
    "llama3": '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "%s"}}',
    "mistral_json": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", '
    '"unit": "%s"}, "id": "abcDEF123"}]',
    "mistral_args": '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "%s"}',
    "mistral_call_id": "[TOOL_CALLS]get_weather[CALL_ID]abcDEF123[ARGS]"
    '{"city": "Paris", "unit": "%s"}',
    "qwen3_coder": "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>"
    "\n<parameter=unit>\n%s\n</parameter>\n</function>\n</tool_call>",
}


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    """llguidance's view of the bundled model's vocabulary."""
    model = LoadedModel(default_spec().gguf_path())
    yield model.guidance_tokenizer()
    model.free()


def accepts(vocab: Any, grammar: str, text: str) -> bool:
    compiled = llguidance.LLMatcher.grammar_from_lark(grammar)
    matcher = llguidance.LLMatcher(vocab, compiled, log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return bool(matcher.consume_tokens(vocab.tokenize_str(text)) and matcher.is_accepting())


def grammar(name: str, mode: str = "auto", **options: Any) -> str:
    parallel = options.pop("parallel", True)
    tools = ToolUse(TOOLS, mode, parallel=parallel)  # type: ignore[arg-type]
    constraint = tool_constraint(FORMATS[name], tools, **options)
    assert constraint is not None
    return constraint.grammar


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_forced_call_is_held_to_its_schema(vocab: Any, name: str) -> None:
    forced = grammar(name, "any")
    assert accepts(vocab, forced, CALLS[name] % "celsius")
    assert not accepts(vocab, forced, CALLS[name] % "kelvin")
    assert not accepts(vocab, forced, "Sure! " + CALLS[name] % "celsius")


@pytest.mark.parametrize("name", sorted(CALLS))
def test_none_keeps_the_opener_out(vocab: Any, name: str) -> None:
    banned = grammar(name, "none")
    assert accepts(vocab, banned, "Plain text.")
    assert not accepts(vocab, banned, "Plain " + FORMATS[name].opener)


@pytest.mark.parametrize("name", sorted(set(CALLS) - {"llama3"}))
def test_after_results_the_wrapper_cannot_be_echoed(vocab: Any, name: str) -> None:
    fmt = FORMATS[name]
    after = grammar(name, after_results=True)
    assert fmt.result_markers
    assert accepts(vocab, after, "It is sunny in Paris.")
    assert accepts(vocab, after, "Let me check again. " + CALLS[name] % "celsius")
    assert not accepts(vocab, after, "Let me check. " + CALLS[name] % "kelvin")
    for marker in fmt.result_markers:
        assert not accepts(vocab, after, f"{marker}>\nsunny")
        assert not accepts(vocab, after, f"It is sunny. {marker}>")
        assert not accepts(vocab, after, f"{marker}]")  # a near miss of the wrapper
    # A call may open the answer, except for SmolLM2, whose answer opens with words.
    call_first = accepts(vocab, after, CALLS[name] % "celsius")
    assert call_first is not fmt.text_first_after_results
    assert fmt.text_first_after_results is (name == "json_array")
    # Before any result, the lazy grammar leaves the text alone.
    assert grammar(name).startswith("start: calls\n")


def test_smollm2_answers_results_with_words_first(vocab: Any) -> None:
    after = grammar("json_array", after_results=True)
    call = CALLS["json_array"] % "celsius"
    assert accepts(vocab, after, "The weather in Paris is sunny.")
    assert accepts(vocab, after, "a < b, and <b>bold</b> is fine inside text")
    assert not accepts(vocab, after, "<b>Sunny</b>")  # markup cannot open the answer
    assert not accepts(vocab, after, "\n " + call)
    assert accepts(vocab, after, "Let me check the time too.\n" + call)
    banned = grammar("json_array", "none", after_results=True)
    assert accepts(vocab, banned, "The weather in Paris is sunny.")
    assert not accepts(vocab, banned, "<tool_call_success>")


def test_llama_calls_only_open_the_answer(vocab: Any) -> None:
    auto = grammar("llama3")
    call = CALLS["llama3"] % "celsius"
    assert accepts(vocab, auto, call)
    assert accepts(vocab, auto, "<|python_tag|>" + call)
    assert accepts(vocab, auto, "\n" + call)
    assert accepts(vocab, auto, f"{call}; {call}")
    assert not accepts(vocab, grammar("llama3", parallel=False), f"{call}; {call}")
    assert accepts(vocab, auto, "It is sunny.")
    assert accepts(vocab, auto, f"A call looks like {call}.")  # text, not a call
    assert not accepts(vocab, auto, '{"city": "Paris"}')  # JSON opens a call, or nothing
    assert not accepts(vocab, auto, CALLS["llama3"] % "kelvin")


def test_qwen3_coder_values_are_held_to_their_schemas(vocab: Any) -> None:
    forced = grammar("qwen3_coder", "any")
    call = (
        "<tool_call>\n<function=get_weather>\n<parameter=city>\n%s\n</parameter>\n"
        "<parameter=unit>\ncelsius\n</parameter>\n%s</function>\n</tool_call>"
    )
    days = "<parameter=days>\n%s\n</parameter>\n"
    assert accepts(vocab, forced, call % ("Rio\nde Jan", ""))  # raw text, lines kept
    assert accepts(vocab, forced, call % ("Paris", days % "3"))
    assert not accepts(vocab, forced, call % ("Paris", days % "0"))  # minimum 1
    assert not accepts(vocab, forced, call % ("Paris", days % '"3"'))  # JSON, not a string
    assert not accepts(vocab, forced, call % ("x" * 13, ""))  # maxLength 12
    assert not accepts(vocab, forced, call % ("a</parameter>b", ""))
    unknown = call.replace("<parameter=unit>", "<parameter=units>")
    assert not accepts(vocab, forced, unknown % ("Paris", ""))
    missing = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    assert not accepts(vocab, forced, missing + "</function>\n</tool_call>")  # unit required
    two = CALLS["qwen3_coder"] % "celsius"
    assert accepts(vocab, forced, f"{two}\n{two}")
    assert not accepts(vocab, grammar("qwen3_coder", "any", parallel=False), f"{two}\n{two}")


@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_tool_compiles_alone(vocab: Any, name: str) -> None:
    for tool in TOOLS:
        text = FORMATS[name].tool_grammar(tool)
        error = llguidance.LLMatcher.validate_grammar(
            llguidance.LLMatcher.grammar_from_lark(text), vocab
        )
        assert not error.strip(), error


# ----- markers that are special tokens of the vocabulary ---------------------------------


@pytest.fixture(scope="module")
def special(special_token_model: SpecialTokenModel) -> Iterator[LoadedModel]:
    """The bundled model with the markers as control or user-defined tokens."""
    model = LoadedModel(special_token_model.gguf)
    yield model
    model.free()


def takes(model: LoadedModel, grammar: str, tokens: list[int]) -> bool:
    compiled = llguidance.LLMatcher.grammar_from_lark(grammar)
    matcher = llguidance.LLMatcher(model.guidance_tokenizer(), compiled, log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return bool(matcher.consume_tokens(tokens) and matcher.is_accepting())


def spelled(model: LoadedModel, text: str, markers: Iterable[str]) -> list[int]:
    """``text`` with each marker written in ordinary tokens, one character at a time."""
    pattern = re.compile("(" + "|".join(re.escape(m) for m in markers) + ")")
    out: list[int] = []
    for i, part in enumerate(pattern.split(text)):
        for piece in list(part) if i % 2 else [part]:
            if piece:
                out += model.tokenize(piece, add_special=False, parse_special=False)
    return out


@pytest.mark.parametrize("name", sorted(CALLS))
def test_markers_that_are_special_tokens_are_held_to_those_tokens(
    special: LoadedModel, special_token_model: SpecialTokenModel, name: str
) -> None:
    """llguidance matches a special token only by reference: the grammar names the marker's
    token, so the call is taken with the token and refused with the marker spelled out."""
    fmt = FORMATS[name]
    ids = {m: special_token_model.ids[m] for m in fmt.markers()}
    assert set(special_tokens(special, fmt.markers())) == set(ids)
    mark = Markers(ids)
    shown = ShownTokens.of(ids)
    tools = ToolUse(TOOLS, "any")
    forced = tool_constraint(fmt, tools, mark=mark)
    assert forced is not None
    call = CALLS[name] % "celsius"
    if name == "llama3":
        call = "<|python_tag|>" + call
    assert takes(special, forced.grammar, shown.tokenize(special, call))
    assert not takes(special, forced.grammar, spelled(special, call, ids))
    # Lazy: the trigger is the marker's text, which the output reads for its token.
    lazy = tool_constraint(fmt, ToolUse(TOOLS), mark=mark)
    assert lazy is not None
    if not fmt.anchored:
        assert lazy.triggers == (fmt.opener,)
        assert takes(special, lazy.grammar, shown.tokenize(special, call))
    # ``none``: free text cannot hold a special token.
    banned = tool_constraint(fmt, ToolUse(TOOLS, "none"), mark=mark)
    assert banned is not None
    text = special.tokenize("Plain text.", add_special=False, parse_special=False)
    assert takes(special, banned.grammar, text)
    assert not takes(special, banned.grammar, [*text, ids[fmt.opener]])


@pytest.mark.parametrize("name", sorted(set(CALLS) - {"llama3"}))
def test_after_results_text_ends_at_a_special_opener(
    special: LoadedModel, special_token_model: SpecialTokenModel, name: str
) -> None:
    fmt = FORMATS[name]
    ids = {m: special_token_model.ids[m] for m in fmt.markers()}
    shown = ShownTokens.of(ids)
    after = tool_constraint(fmt, ToolUse(TOOLS), after_results=True, mark=Markers(ids))
    assert after is not None
    call = CALLS[name] % "celsius"
    assert takes(special, after.grammar, shown.tokenize(special, "It is sunny in Paris."))
    assert takes(special, after.grammar, shown.tokenize(special, "Let me check again. " + call))
    broken = "Let me check. " + CALLS[name] % "kelvin"
    assert not takes(special, after.grammar, shown.tokenize(special, broken))
    for marker in fmt.result_markers:
        assert not takes(special, after.grammar, shown.tokenize(special, f"{marker}>\nsunny"))
