"""Constraint plans (which grammar per gate) and their bounded cache, without a model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import llama_cpp as llama
import pytest

from gemserve.engine.base import Constraint, ReasoningControl
from gemserve.engine.llama.grammar import (
    ANSWER_ROOT,
    OPENING_ROOT,
    GrammarPlans,
    gbnf_literal,
    plan_for,
)
from gemserve.engine.llama.sampling import Grammar
from gemserve.engine.output import Gate
from gemserve.errors import InvalidArgument
from tests.support.llama import default_spec

JSONISH = 'root ::= "{" [a-z]* "}"'
THINKING = ReasoningControl(open_tag='<th"i\\nk>')


def test_output_scope_lazy_or_unreasoned_is_the_grammar_itself() -> None:
    for constraint, reasoning in [
        (Constraint(JSONISH, scope="output"), THINKING),
        (Constraint(JSONISH, triggers=("{",)), THINKING),
        (Constraint(JSONISH), None),
    ]:
        plan = plan_for(constraint, reasoning)
        assert plan.for_gate(Gate.ON) == Grammar(JSONISH)
        assert plan.for_gate(Gate.OPENING) is None
        assert plan.for_gate(Gate.OFF) is None


def test_answer_scope_with_reasoning_wraps_the_grammar() -> None:
    plan = plan_for(Constraint(JSONISH), THINKING)
    assert plan.on.root == ANSWER_ROOT
    assert plan.on.text.startswith(JSONISH)
    assert plan.opening is not None
    assert plan.opening.root == OPENING_ROOT
    assert gbnf_literal(THINKING.open_tag) in plan.opening.text


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


def parses(vocab: Any, grammar: Grammar) -> bool:
    sampler = llama.llama_sampler_init_grammar(vocab, grammar.text.encode(), grammar.root.encode())
    if not sampler:
        return False
    llama.llama_sampler_free(sampler)
    return True


def test_the_wrappers_parse(vocab: Any) -> None:
    plan = plan_for(Constraint(JSONISH), THINKING)
    assert all(parses(vocab, grammar) for grammar in plan.grammars())


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
