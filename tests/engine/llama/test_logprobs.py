"""Log probabilities from the real engine: one per answer token, a probability distribution's
logs (at most 0, the alternatives in order), and at temperature 0 without penalties the
chosen token is the most likely one."""

from __future__ import annotations

import math

import pytest

from gemserve.engine import (
    ChatMessage,
    EngineEvent,
    Finished,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    TokenLogprob,
)
from gemserve.engine.llama import LlamaEngine

pytestmark = pytest.mark.engine

ASK = (ChatMessage("user", "What is the capital of France?"),)


async def events(engine: LlamaEngine, sampling: SamplingParams) -> list[EngineEvent]:
    stream = await engine.generate(GenerationRequest(ASK, sampling))
    return [event async for event in stream]


async def test_each_answer_token_has_its_logprob_and_alternatives(engine: LlamaEngine) -> None:
    sampling = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=16, logprobs=3)
    got = await events(engine, sampling)
    logprobs = [e for e in got if isinstance(e, TokenLogprob)]
    finished = got[-1]
    assert isinstance(finished, Finished)
    # One per generated token but the end-of-generation one.
    assert len(logprobs) in (finished.output_tokens, finished.output_tokens - 1)
    assert "".join(t.token for t in logprobs) == "".join(
        e.text for e in got if isinstance(e, TextDelta)
    )
    for token in logprobs:
        assert token.logprob <= 0.0
        assert len(token.top) == 3
        values = [p for _, p in token.top]
        assert values == sorted(values, reverse=True)
        assert sum(math.exp(p) for p in values) <= 1.0 + 1e-4
        # Greedy without penalties: the chosen token is the most likely.
        assert token.token == token.top[0][0]
        assert token.logprob == pytest.approx(token.top[0][1], abs=1e-5)


async def test_without_logprobs_there_are_none(engine: LlamaEngine) -> None:
    sampling = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=8)
    assert not [e for e in await events(engine, sampling) if isinstance(e, TokenLogprob)]
