"""Constraints on the real engine: a grammar scoped to the answer leaves the thought free, a
lazy grammar switches on at its trigger, and the validated grammars are bounded."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

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
from gemserve.engine.llama.grammar import DEFAULT_PLANS
from gemserve.errors import InvalidArgument
from tests.support.generation import thought_and_answer
from tests.support.llama import default_spec

pytestmark = pytest.mark.engine

GREEDY = SamplingParams(
    temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=48, repeat_penalty=1.15
)
PAWS = (ChatMessage("user", "How many paws do two dogs have?"),)
FRANCE = (ChatMessage("user", "What is the capital of France?"),)

# ChatML whose generation prompt opens the thought (DeepSeek-R1 style): the bundled model,
# which does not reason, then writes its thought freely until the engine closes it at the
# budget, and the answer follows.
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
PAWS_GRAMMAR = 'root ::= "Paws: " [0-9]+ "."'


@pytest.fixture(scope="module")
async def thinking_engine() -> AsyncIterator[LlamaEngine]:
    spec = default_spec()
    engine = LlamaEngine(
        model_id=spec.id,
        gguf_path=spec.gguf_path(),
        context_length=512,
        output_token_limit=512,
        slots=2,
        batch_tokens=256,
        threads=2,
        max_queued=4,
        chat_template=THINKING_TEMPLATE,
    )
    await engine.start()
    yield engine
    await engine.close()


async def test_an_answer_scoped_grammar_leaves_the_thought_free(
    thinking_engine: LlamaEngine,
) -> None:
    control = ReasoningControl(budget=4)
    free = await thought_and_answer(
        thinking_engine, GenerationRequest(PAWS, GREEDY, reasoning=control)
    )
    constraint = Constraint(PAWS_GRAMMAR, scope="answer")
    thought, answer, finished = await thought_and_answer(
        thinking_engine, GenerationRequest(PAWS, GREEDY, reasoning=control, constraint=constraint)
    )
    assert finished.reason is FinishReason.STOP
    # The thought is what the model writes with no grammar, token for token; the answer is
    # held to the grammar (which the free answer does not match).
    assert thought == free[0]
    assert thought.strip()
    assert not thought.startswith("Paws")
    assert re.fullmatch(r"Paws: [0-9]+\.", answer), answer
    assert not re.fullmatch(r"Paws: [0-9]+\.", free[1])
    assert finished.thought_tokens == free[2].thought_tokens


async def test_an_output_scoped_grammar_shapes_the_thought_too(
    thinking_engine: LlamaEngine,
) -> None:
    grammar = 'root ::= "Dogs" [^<]* "</think>" "\\n"* "Paws: " [0-9] "."'
    control = ReasoningControl(budget=6)  # the engine writes the closing tag
    thought, answer, _ = await thought_and_answer(
        thinking_engine,
        GenerationRequest(
            PAWS,
            GREEDY,
            reasoning=control,
            constraint=Constraint(grammar, scope="output"),
        ),
    )
    assert thought.startswith("Dogs")
    assert re.fullmatch(r"Paws: [0-9]\.", answer), answer


async def test_a_lazy_answer_grammar_ignores_its_trigger_in_the_thought(
    thinking_engine: LlamaEngine,
) -> None:
    control = ReasoningControl(budget=4)
    free_thought, free_answer, _ = await thought_and_answer(
        thinking_engine, GenerationRequest(PAWS, GREEDY, reasoning=control)
    )
    assert "answer" in free_thought
    assert "paws" in free_answer
    lazy = Constraint('root ::= "paws" " = " [0-9]+ "."', triggers=("answer", "paws"))
    thought, answer, finished = await thought_and_answer(
        thinking_engine, GenerationRequest(PAWS, GREEDY, reasoning=control, constraint=lazy)
    )
    assert thought == free_thought
    at = free_answer.index("paws")
    assert answer[:at] == free_answer[:at]
    assert re.fullmatch(r"paws = [0-9]+\.", answer[at:]), answer
    assert finished.reason is FinishReason.STOP


async def test_a_reasoning_model_that_does_not_think_is_held_to_the_answer_grammar(
    engine: LlamaEngine,
) -> None:
    """The default template does not open a thought: the output may open one or answer
    directly, and an answer without a thought is constrained from its first token."""
    constraint = Constraint('root ::= ("Yes" | "No") "."', scope="answer")
    for messages in (FRANCE, PAWS):
        free = await thought_and_answer(engine, GenerationRequest(messages, GREEDY))
        assert free[1] not in ("Yes.", "No.")
        thought, answer, finished = await thought_and_answer(
            engine,
            GenerationRequest(
                messages, GREEDY, reasoning=ReasoningControl(budget=50), constraint=constraint
            ),
        )
        assert (thought, finished.thought_tokens) == ("", 0)
        assert answer in ("Yes.", "No.")


async def test_an_answer_grammar_with_thinking_off(engine: LlamaEngine) -> None:
    constraint = Constraint(PAWS_GRAMMAR, scope="answer")
    _, answer, finished = await thought_and_answer(
        engine,
        GenerationRequest(
            PAWS, GREEDY, reasoning=ReasoningControl(budget=0), constraint=constraint
        ),
    )
    assert re.fullmatch(r"Paws: [0-9]+\.", answer), answer
    assert finished.thought_tokens == 0


async def test_a_lazy_grammar_switches_on_at_its_trigger(engine: LlamaEngine) -> None:
    free = (await thought_and_answer(engine, GenerationRequest(FRANCE, GREEDY)))[1]
    # "apital" starts inside the token " capital": the grammar takes the text from the
    # trigger on, not the whole token.
    at = free.index("apital")
    assert free[at - 1] == "c"
    lazy = Constraint('root ::= "apital" " city: " [A-Z] [a-z]+ "."', triggers=("apital",))
    _, answer, finished = await thought_and_answer(
        engine, GenerationRequest(FRANCE, GREEDY, constraint=lazy)
    )
    assert answer[:at] == free[:at]  # free, and greedy, up to the trigger
    assert re.fullmatch(r"apital city: [A-Z][a-z]+\.", answer[at:]), answer
    assert finished.reason is FinishReason.STOP


async def test_a_lazy_grammar_switches_on_while_sampling(engine: LlamaEngine) -> None:
    sampling = SamplingParams(
        temperature=0.8, top_p=0.95, top_k=40, max_output_tokens=64, seed=11, repeat_penalty=1.15
    )
    lazy = Constraint('root ::= "Paris" " = " [0-9]+ "!"', triggers=("Paris",))
    free = (await thought_and_answer(engine, GenerationRequest(FRANCE, sampling)))[1]
    runs = [
        (await thought_and_answer(engine, GenerationRequest(FRANCE, sampling, constraint=lazy)))[1]
        for _ in range(2)
    ]
    assert runs[0] == runs[1], "a fixed seed gives the same text across a grammar switch"
    if "Paris" in free:  # seed 11 writes it on the machines seen so far
        at = free.index("Paris")
        assert runs[0][:at] == free[:at]
        assert re.fullmatch(r"Paris = [0-9]+!", runs[0][at:]), runs[0]


async def test_text_before_the_switch_that_breaks_the_grammar_ends_in_error(
    engine: LlamaEngine,
) -> None:
    """The token that completes a trigger was sampled before the grammar applied; what it
    holds past the trigger ("al" of " capital") can already break it. That is an error, and
    the engine (which llama.cpp would abort on accepting it) serves on."""
    lazy = Constraint('root ::= "apit" "X"', triggers=("apit",))
    _, answer, finished = await thought_and_answer(
        engine, GenerationRequest(FRANCE, GREEDY, constraint=lazy)
    )
    assert finished.reason is FinishReason.ERROR
    assert "grammar" in (finished.error or "")
    assert answer.endswith("apital")
    again = await thought_and_answer(engine, GenerationRequest(FRANCE, GREEDY))
    assert again[2].reason is FinishReason.STOP


@pytest.mark.parametrize(
    "constraint",
    [
        Constraint("root ::= (", scope="answer"),
        Constraint('other ::= "x"', scope="answer"),
        Constraint("root ::= [", scope="output", triggers=("x",)),
    ],
)
async def test_an_invalid_grammar_is_refused_before_admission(
    engine: LlamaEngine, constraint: Constraint
) -> None:
    before = engine.stats()
    for reasoning in (None, ReasoningControl(budget=16)):
        with pytest.raises(InvalidArgument, match="grammar"):
            await engine.generate(
                GenerationRequest(FRANCE, GREEDY, reasoning=reasoning, constraint=constraint)
            )
    after = engine.stats()
    assert (after.requests_finished, after.queued) == (before.requests_finished, 0)


async def test_validated_grammars_are_bounded(engine: LlamaEngine) -> None:
    one = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=1)
    for i in range(DEFAULT_PLANS + 6):
        constraint = Constraint(f'root ::= "x{i}"', scope="output")
        _, answer, _ = await thought_and_answer(
            engine, GenerationRequest(FRANCE, one, constraint=constraint)
        )
        assert answer
        assert f"x{i}".startswith(answer)
    assert engine.stats().extra["grammars_cached"] == DEFAULT_PLANS
