"""The real llama.cpp engine on the bundled SmolLM2-135M: batching, cancellation, limits."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import llama_cpp
import pytest

from gemserve.engine import (
    EngineEvent,
    Finished,
    FinishReason,
    SamplingParams,
    TextDelta,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.engine.llama import scheduler as scheduler_module
from gemserve.errors import Internal, InvalidArgument, ResourceExhausted
from tests.support.generation import GREEDY, QUESTIONS, poll_engine, request, run
from tests.support.llama import make_engine

pytestmark = pytest.mark.engine


async def test_eight_concurrent_requests_complete_coherently(engine: LlamaEngine) -> None:
    steps_before = engine.stats().decode_steps
    results = await asyncio.gather(*(run(engine, request(q)) for q, _ in QUESTIONS))
    for (question, words), (text, finished) in zip(QUESTIONS, results, strict=True):
        assert finished.reason in (FinishReason.STOP, FinishReason.MAX_TOKENS), question
        assert any(word in text.lower() for word in words), (question, text)
        assert finished.output_tokens > 0
    generated = sum(f.output_tokens for _, f in results)
    steps = engine.stats().decode_steps - steps_before
    # Batched: far fewer decode calls than tokens (4 slots decode together).
    assert steps < generated * 0.6, (steps, generated)


async def test_decode_batches_list_sequences_in_id_order(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp makes one weight pass per run of consecutive sequence ids as they appear in
    the batch (per-slot KV streams), so the scheduler must lay every batch out by id."""
    batches: list[list[int]] = []
    decode = llama_cpp.llama_decode

    def recording_decode(ctx: Any, batch: Any) -> int:
        batches.append([batch.seq_id[i][0] for i in range(batch.n_tokens)])
        return int(decode(ctx, batch))

    monkeypatch.setattr(llama_cpp, "llama_decode", recording_decode)
    # Staggered lengths and arrivals, so slots free and refill in a different order.
    lengths = [40, 8, 24, 16, 32, 8]
    runs = []
    for i, (question, _) in enumerate(QUESTIONS[: len(lengths)]):
        sampling = dataclasses.replace(GREEDY, max_output_tokens=lengths[i])
        runs.append(asyncio.create_task(run(engine, request(question, sampling))))
        await asyncio.sleep(0.02 * i)
    await asyncio.gather(*runs)
    mixed = [ids for ids in batches if len(set(ids)) > 1]
    assert mixed, "no batch carried more than one sequence"
    for ids in batches:
        assert ids == sorted(ids), ids


async def test_batched_output_equals_solo_output_at_temperature_zero(engine: LlamaEngine) -> None:
    solo = [await run(engine, request(q)) for q, _ in QUESTIONS[:4]]
    batched = await asyncio.gather(*(run(engine, request(q)) for q, _ in QUESTIONS[:4]))
    assert [t for t, _ in solo] == [t for t, _ in batched]


async def test_max_output_tokens_is_honoured(engine: LlamaEngine) -> None:
    sampling = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=7)
    text, finished = await run(engine, request("Write a long story about a dragon.", sampling))
    assert finished.reason is FinishReason.MAX_TOKENS
    assert finished.output_tokens == 7
    assert text


async def test_stop_sequence_cuts_the_text(engine: LlamaEngine) -> None:
    full, _ = await run(engine, request("What is the opposite of hot?"))
    assert "cold" in full
    sampling = SamplingParams(
        temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=48, repeat_penalty=1.15,
        stop_sequences=("cold",),
    )  # fmt: skip
    text, finished = await run(engine, request("What is the opposite of hot?", sampling))
    assert finished.reason is FinishReason.STOP
    assert text == full[: full.index("cold")]


async def test_same_seed_gives_same_text(engine: LlamaEngine) -> None:
    def sampling(seed: int) -> SamplingParams:
        return SamplingParams(
            temperature=1.0, top_p=0.95, top_k=40, max_output_tokens=24, seed=seed
        )

    first, _ = await run(engine, request("Tell me about the sea.", sampling(7)))
    second, _ = await run(engine, request("Tell me about the sea.", sampling(7)))
    others = {
        (await run(engine, request("Tell me about the sea.", sampling(s))))[0] for s in (1, 2, 3)
    }
    assert first == second
    assert len(others | {first}) > 1


async def test_prompt_over_the_context_is_rejected_with_both_counts(engine: LlamaEngine) -> None:
    long_text = "word " * 2000
    with pytest.raises(InvalidArgument) as caught:
        await engine.generate(request(long_text))
    message = caught.value.message
    assert "512" in message
    prompt_tokens = len(await engine.tokenize(long_text))
    assert any(str(n) in message for n in range(prompt_tokens, prompt_tokens + 40))


async def test_cancel_frees_the_slot_within_one_decode_step(engine: LlamaEngine) -> None:
    long = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=400)
    streams = [
        await engine.generate(request(f"Write a long essay about topic {i}.", long))
        for i in range(4)
    ]
    first_events = [aiter(s) for s in streams]
    for it in first_events:  # every slot is decoding
        assert isinstance(await anext(it), TextDelta)
    assert engine.stats().active == 4
    steps_at_cancel = engine.stats().decode_steps
    streams[0].cancel()
    await poll_engine(lambda: engine.stats().active < 4)
    assert engine.stats().decode_steps - steps_at_cancel <= 1
    # The cancelled stream ends with a CANCELLED finish; the others keep running.
    tail: list[EngineEvent] = [e async for e in first_events[0]]
    assert isinstance(tail[-1], Finished)
    assert tail[-1].reason is FinishReason.CANCELLED
    assert engine.stats().active == 3
    for stream in streams[1:]:
        stream.cancel()
    await poll_engine(lambda: engine.stats().active == 0)


async def test_closing_the_iterator_cancels_generation(engine: LlamaEngine) -> None:
    long = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=400)
    stream = await engine.generate(request("Write a long essay about rivers.", long))
    it = aiter(stream)
    assert isinstance(await anext(it), TextDelta)
    await it.aclose()  # type: ignore[attr-defined]
    await poll_engine(lambda: engine.stats().active == 0)
    assert engine.stats().active == 0


async def test_full_queue_is_resource_exhausted() -> None:
    small = make_engine(slots=1, context_length=256, max_queued=1)
    await small.start()
    try:
        long = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=200)
        a = await small.generate(request("Write an essay.", long))
        b = await small.generate(request("Write an essay.", long))
        with pytest.raises(ResourceExhausted):
            await small.generate(request("Write an essay.", long))
        a.cancel()
        b.cancel()
    finally:
        await small.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_crashed_engine_thread_fails_every_request_and_refuses_new_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the engine thread must end the running and the queued requests with an
    error, never leave them waiting forever; later requests are refused at once."""
    engine = make_engine(slots=1)
    await engine.start()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    release = threading.Event()

    def broken_decode(ctx: Any, batch: Any) -> int:
        loop.call_soon_threadsafe(started.set)
        release.wait(10)  # hold the first step until the second request is queued
        raise RuntimeError("simulated engine bug")

    try:
        monkeypatch.setattr(llama_cpp, "llama_decode", broken_decode)
        first = asyncio.create_task(run(engine, request("Hi")))
        await asyncio.wait_for(started.wait(), 10)
        second = asyncio.create_task(run(engine, request("Hello")))
        await poll_engine(lambda: engine.stats().queued == 1)
        release.set()
        async with asyncio.timeout(30):
            results = await asyncio.gather(first, second)
        assert [f.reason for _, f in results] == [FinishReason.ERROR, FinishReason.ERROR]
        with pytest.raises(Internal):
            await engine.generate(request("Anyone there?"))
    finally:
        release.set()
        monkeypatch.undo()
        await engine.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_crash_while_admitting_fails_that_request_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request taken off the queue and not yet active when the bug hits is failed like
    the others (it used to be in neither list and wait forever)."""
    engine = make_engine(slots=1)
    await engine.start()

    def broken_sampler(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("simulated bug while admitting")

    try:
        monkeypatch.setattr(scheduler_module, "make_sampler", broken_sampler)
        async with asyncio.timeout(30):
            _, finished = await run(engine, request("Hi"))
        assert finished.reason is FinishReason.ERROR
    finally:
        monkeypatch.undo()
        await engine.close()
