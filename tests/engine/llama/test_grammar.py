"""Constraint plans (which grammar per gate) and their bounded cache, without a model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import llama_cpp as llama
import llguidance
import pytest

from gemserve.engine.base import Constraint, ReasoningControl
from gemserve.engine.llama.grammar import (
    GrammarPlans,
    gbnf_as_lark,
    gbnf_literal,
    plan_for,
)
from gemserve.engine.llama.guidance import tokenizer_for, validate
from gemserve.engine.llama.sampling import Grammar
from gemserve.engine.output import Gate
from gemserve.errors import InvalidArgument
from tests.support.llama import default_spec
from tests.support.special_tokens import SpecialTokenModel

JSONISH = 'root ::= "{" [a-z]* "}"'
THINKING = ReasoningControl(open_tag='<th"i\\nk>')


def test_output_scope_lazy_or_unreasoned_is_the_grammar_itself() -> None:
    """GBNF goes to llguidance as Lark (one grammar engine): ``root`` becomes ``start``."""
    for constraint, reasoning in [
        (Constraint(JSONISH, scope="output"), THINKING),
        (Constraint(JSONISH, triggers=("{",)), THINKING),
        (Constraint(JSONISH), None),
    ]:
        plan = plan_for(constraint, reasoning)
        on = plan.for_gate(Gate.ON)
        assert on is not None
        assert on.syntax == "llguidance"
        assert 'start: "{" /[a-z]/* "}"' in on.text
        assert plan.for_gate(Gate.OPENING) is None
        assert plan.for_gate(Gate.OFF) is None


def test_answer_scope_with_reasoning_wraps_the_grammar() -> None:
    plan = plan_for(Constraint(JSONISH), THINKING)
    assert "gemserve_root" in plan.on.text
    assert plan.opening is not None
    assert json.dumps(THINKING.open_tag) in plan.opening.text


def test_gbnf_becomes_lark() -> None:
    assert gbnf_as_lark('root ::= "a" b\nb ::= [0-9]+') == 'start: "a" B\nB: /[0-9]/+'
    for bad in ("root ::= (", 'other ::= "x"'):
        with pytest.raises(InvalidArgument, match="grammar"):
            gbnf_as_lark(bad)


def test_gbnf_literal_escapes() -> None:
    assert gbnf_literal('a"b\\c\nd\te') == '"a\\"b\\\\c\\nd\\te"'


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    params = llama.llama_model_default_params()
    params.vocab_only = True
    model = llama.llama_model_load_from_file(str(default_spec().gguf_path()).encode(), params)
    assert model
    yield llama.llama_model_get_vocab(model)
    llama.llama_model_free(model)


def test_the_wrappers_compile(vocab: Any) -> None:
    tokenizer = tokenizer_for(vocab)
    plan = plan_for(Constraint(JSONISH), THINKING)
    assert all(validate(tokenizer, grammar.text) is None for grammar in plan.grammars())


def test_the_cache_keeps_the_most_recently_used() -> None:
    checked: list[str] = []

    def error_of(grammar: Grammar) -> str | None:
        checked.append(grammar.text)
        return "unparsable" if "bad" in grammar.text else None

    plans = GrammarPlans(error_of, size=2)
    a, b, c = (Constraint(f'root ::= "{x}"', scope="output") for x in "abc")
    plans.get(a, None)
    plans.get(b, None)
    plans.get(a, None)  # a hit: a is now the most recent
    assert len(checked) == 2
    plans.get(c, None)  # evicts b
    assert len(plans) == 2
    plans.get(a, None)
    assert len(checked) == 3
    plans.get(b, None)
    assert len(checked) == 4
    # The plan depends on the reasoning's opening tag: another tag is another entry.
    plans.get(Constraint(JSONISH), ReasoningControl())
    plans.get(Constraint(JSONISH), ReasoningControl(open_tag="<t>"))
    assert len(checked) == 8
    with pytest.raises(InvalidArgument, match="grammar"):
        plans.get(Constraint('root ::= "bad"'), None)
    assert len(plans) == 2


@pytest.mark.parametrize(
    "constraint",
    [Constraint(JSONISH), Constraint('{"type": "object"}', syntax="json_schema")],
    ids=["gbnf", "json_schema"],
)
def test_an_opening_tag_that_is_a_special_token_is_named_by_its_id(
    special_token_model: SpecialTokenModel, constraint: Constraint
) -> None:
    """Where ``<think>`` is one special token (Qwen3's, DeepSeek's), a literal would only
    admit it spelled in ordinary tokens: the ``opening`` grammar names the token."""
    params = llama.llama_model_default_params()
    params.vocab_only = True
    model = llama.llama_model_load_from_file(str(special_token_model.gguf).encode(), params)
    assert model
    try:
        tokenizer = tokenizer_for(llama.llama_model_get_vocab(model))
        token = special_token_model.ids["<think>"]
        for open_token, takes in [(token, True), (None, False)]:
            plan = plan_for(constraint, ReasoningControl(), open_token)
            assert plan.opening is not None
            matcher = llguidance.LLMatcher(tokenizer, plan.opening.text, log_level=0)
            assert not matcher.is_error(), matcher.get_error()
            assert matcher.consume_tokens([token]) is takes
    finally:
        llama.llama_model_free(model)
