"""Conversation-aware KV reuse: a follow-up turn prefills only what is new, with the same answer."""

from __future__ import annotations

import asyncio
from difflib import SequenceMatcher

import pytest

from gemserve.engine import ChatMessage, GenerationRequest, SamplingParams
from gemserve.engine.llama import LlamaEngine
from tests.support.generation import run
from tests.support.llama import make_engine

pytestmark = pytest.mark.engine

GREEDY = SamplingParams(
    temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=24, repeat_penalty=1.15
)
TURN1 = (ChatMessage("user", "Here are some notes about ships. " * 12 + "Summarise them."),)


async def started(**options: int) -> LlamaEngine:
    engine = make_engine(**options)
    await engine.start()
    return engine


async def test_second_turn_reuses_the_first_turns_kv_cache() -> None:
    # A fresh engine: its start-up check's prompts are forgotten, so nothing can be reused
    # by the first turn (the shared `engine` fixture's slots hold other tests' prompts).
    fresh = await started()
    try:
        answer, first = await run(fresh, GenerationRequest(TURN1, GREEDY))
        turn2 = (*TURN1, ChatMessage("assistant", answer), ChatMessage("user", "Now in one word?"))
        warm_text, warm = await run(fresh, GenerationRequest(turn2, GREEDY))
    finally:
        await fresh.close()
    assert first.cached_tokens == 0
    # Everything up to the end of the first answer came from the cache.
    assert warm.cached_tokens >= first.prompt_tokens
    assert warm.prompt_tokens - warm.cached_tokens < 30

    cold_engine = await started(slots=1, max_queued=1)
    try:
        cold_text, cold = await run(cold_engine, GenerationRequest(turn2, GREEDY))
    finally:
        await cold_engine.close()
    assert cold.cached_tokens == 0
    assert cold.prompt_tokens == warm.prompt_tokens
    # Not byte-equal: llama.cpp's CPU kernels sum in an order that depends on the batch shape,
    # so a prefix prefilled in one batch and the same prefix built turn by turn differ in the
    # last bits, and greedy decoding can flip a near-tie ("1." vs "2."). A cache reused at the
    # wrong positions or with stale tokens gives unrelated text instead.
    similarity = SequenceMatcher(None, cold_text, warm_text).ratio()
    assert similarity >= 0.6, (cold_text, warm_text)


async def test_an_unrelated_prompt_does_not_reuse(engine: LlamaEngine) -> None:
    _, finished = await run(
        engine,
        GenerationRequest((ChatMessage("user", "Completely different words here."),), GREEDY),
    )
    # Only the chat template's shared opening (system prompt) can match.
    assert finished.cached_tokens < finished.prompt_tokens - 3


async def test_requests_in_flight_share_a_long_prompt_s_kv() -> None:
    """Candidates of one request (or many clients sending one long prompt at once): the first
    prefills, the others wait a step and copy its KV, and answer as a request reusing an idle
    slot's cache does (the last prompt token decoded on its own)."""
    fresh = await started()
    try:
        request = GenerationRequest(TURN1, GREEDY)
        results = await asyncio.gather(*(run(fresh, request) for _ in range(4)))
        shared = fresh.stats().extra["prompts_shared"]
        warm_text, warm = await run(fresh, request)  # reuses an idle slot's copy
    finally:
        await fresh.close()
    assert shared == 3
    assert warm.cached_tokens == warm.prompt_tokens - 1
    leader = [text for text, finished in results if finished.cached_tokens == 0]
    followers = [text for text, finished in results if finished.cached_tokens > 0]
    assert len(leader) == 1
    assert len(followers) == 3
    assert all(f.cached_tokens in (0, warm.prompt_tokens - 1) for _, f in results)
    for text in followers:  # see above: near-ties may flip, unrelated text may not
        assert SequenceMatcher(None, warm_text, text).ratio() >= 0.6, (warm_text, text)


async def test_a_short_prompt_is_prefilled_not_copied() -> None:
    fresh = await started()
    try:
        short = GenerationRequest((ChatMessage("user", "Hi"),), GREEDY)
        await asyncio.gather(*(run(fresh, short) for _ in range(3)))
        assert fresh.stats().extra["prompts_shared"] == 0
    finally:
        await fresh.close()
