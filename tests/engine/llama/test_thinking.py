"""Native reasoning on the real engine: the bundled model, constrained by a grammar to write
``<think>…</think>answer``, is parsed into thought and answer, and its thought is closed by
the engine at the budget."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gemserve.engine import (
    ChatMessage,
    Constraint,
    GenerationRequest,
    ReasoningControl,
    SamplingParams,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.errors import InvalidArgument
from tests.support.generation import thought_and_answer

pytestmark = pytest.mark.engine

# The native format, forced: a thought, then (after the closing tag) an answer.
THINK_GRAMMAR = (
    'root ::= "<think>" thought "</think>" "\\n"? answer\nthought ::= [^<]+\nanswer ::= [^<]+\n'
)
QUESTION = (ChatMessage("user", "How many paws do two dogs have?"),)


def greedy(max_output_tokens: int = 32) -> SamplingParams:
    return SamplingParams(
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        max_output_tokens=max_output_tokens,
        repeat_penalty=1.15,
    )


def request(
    reasoning: ReasoningControl | None = None, grammar: str | None = THINK_GRAMMAR
) -> GenerationRequest:
    """A model-level grammar: it shapes the whole output, thought included."""
    constraint = Constraint(grammar, scope="output") if grammar is not None else None
    return GenerationRequest(QUESTION, greedy(), reasoning=reasoning, constraint=constraint)


async def test_the_native_format_is_split_into_thought_and_answer(engine: LlamaEngine) -> None:
    # A budget well inside max_output_tokens, so the thought ends (by the model or at the
    # budget) with room for an answer whatever path greedy decoding takes: its numerics, and
    # so the thought's natural length, vary with the thread count a loaded machine leaves.
    control = ReasoningControl(budget=24)
    thought, answer, finished = await thought_and_answer(
        engine, replace(request(control), sampling=greedy(64))
    )
    assert thought.strip()
    assert answer.strip()
    for text in (thought, answer):
        assert "<think>" not in text
        assert "</think>" not in text
    assert 0 < finished.thought_tokens < finished.output_tokens
    assert finished.output_tokens - finished.thought_tokens <= 64


async def test_the_engine_closes_the_thought_at_the_budget(engine: LlamaEngine) -> None:
    free = await thought_and_answer(engine, request(ReasoningControl(budget=200)))
    natural = free[2].thought_tokens
    assert natural > 12, "the unconstrained thought must be longer than the budgets below"
    slack = len(await engine.tokenize("</think>\n\n"))
    # The opening tag counts toward the budget; this grammar needs one character of thought
    # before "</think>", and the engine waits for it rather than force a tag the grammar
    # forbids (llama.cpp would abort), so a tiny budget closes a little later.
    floor = len(await engine.tokenize("<think>")) + 2
    for budget in (1, 4, 8):
        _, answer, finished = await thought_and_answer(
            engine, request(ReasoningControl(budget=budget))
        )
        assert finished.thought_tokens <= max(budget, floor) + slack, budget
        assert finished.thought_tokens < natural
        assert answer.strip(), "the model must go on to answer once the thought is closed"


async def test_budget_zero_switches_thinking_off(engine: LlamaEngine) -> None:
    plain = await thought_and_answer(engine, request(grammar=None))
    off = await thought_and_answer(engine, request(ReasoningControl(budget=0), grammar=None))
    thought, answer, finished = off
    assert thought == ""
    assert finished.thought_tokens == 0
    assert answer.strip()
    # The prompt carries an empty thought, as templates with enable_thinking=False write it.
    empty_thought = len(await engine.tokenize("<think>\n\n</think>\n\n"))
    assert finished.prompt_tokens == plain[2].prompt_tokens + empty_thought


async def test_an_invalid_grammar_is_refused_before_decoding(engine: LlamaEngine) -> None:
    with pytest.raises(InvalidArgument, match="grammar"):
        await engine.generate(request(grammar="root ::= ("))


async def test_min_output_tokens_keeps_a_short_answer_going(engine: LlamaEngine) -> None:
    """Budget forcing for the two-pass reasoning pass: the end of generation is banned until
    the floor, so a higher thinking level thinks more, not only may."""
    ask = (ChatMessage("user", "Say hi."),)
    free = await thought_and_answer(engine, GenerationRequest(ask, greedy(64)))
    assert free[2].output_tokens < 30  # so the floor below is what makes it longer
    forced = GenerationRequest(ask, replace(greedy(64), min_output_tokens=30))
    _, answer, finished = await thought_and_answer(engine, forced)
    assert finished.output_tokens >= 30, answer
