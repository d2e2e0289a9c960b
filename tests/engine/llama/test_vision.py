"""Images through libmtmd on a tiny random SmolVLM (scripts/make_tiny_vlm.py).

The model's answers are noise, but the plumbing is real: decoding, projection, token counts,
batching and the prefix cache. Greedy noise is a sharp instrument: any change in what the
model sees (pixels, positions, a stale cache) changes the text.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from gemserve.engine import (
    MEDIA_PLACEHOLDER,
    ChatMessage,
    Finished,
    FinishReason,
    GenerationRequest,
    ImageInput,
    SamplingParams,
    TextDelta,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.errors import InvalidArgument
from tests.support.generation import poll_engine, run
from tests.support.llama import TinyVlm

pytestmark = pytest.mark.engine

GREEDY = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=12)
# An image whose greedy answer runs on without an end token (a loop of noise): room to cancel.
ENDLESS_SEED = 1


def make_vlm(tiny_vlm: TinyVlm, *, vision: bool = True, batch_tokens: int = 64) -> LlamaEngine:
    """One thread: the tiny model is faster alone than with threads fighting for 2 cores."""
    return LlamaEngine(
        model_id="tiny-vlm",
        gguf_path=tiny_vlm.gguf,
        context_length=4096,
        output_token_limit=4000,
        slots=2,
        batch_tokens=batch_tokens,
        threads=1,
        max_queued=8,
        mmproj_path=tiny_vlm.mmproj if vision else None,
    )


@pytest.fixture(scope="module")
async def vlm(tiny_vlm: TinyVlm) -> AsyncIterator[LlamaEngine]:
    engine = make_vlm(tiny_vlm)
    await engine.start()
    yield engine
    await engine.close()


def image(seed: int, width: int = 80, height: int = 60) -> ImageInput:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    raw = pixels.tobytes()
    return ImageInput(width, height, raw, hashlib.sha256(raw).hexdigest())


def ask(
    *images: ImageInput, text: str = "Describe this image.", sampling: SamplingParams = GREEDY
) -> GenerationRequest:
    prompt = MEDIA_PLACEHOLDER * len(images) + text
    return GenerationRequest((ChatMessage("user", prompt, images),), sampling)


async def evict(engine: LlamaEngine) -> None:
    """Put text in both slots, so no image is left in the prefix cache.

    Both requests must hold a slot at the same time: one that ended before the other was
    admitted would let the other reuse its slot (the longest common prefix wins).
    """
    long = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=200)
    streams = [
        await engine.generate(ask(text=text, sampling=long))
        for text in ("Evict the first slot.", "Clear out the second one.")
    ]
    iterators = [aiter(stream) for stream in streams]
    for iterator in iterators:
        assert isinstance(await anext(iterator), TextDelta)
    assert engine.stats().active == 2
    for stream in streams:
        stream.cancel()
    for iterator in iterators:
        async for _ in iterator:
            pass
    await poll_engine(lambda: engine.stats().active == 0)


def test_capabilities_include_image_only_with_a_projector(tiny_vlm: TinyVlm) -> None:
    assert make_vlm(tiny_vlm).capabilities().input_modalities == {"text", "image"}
    assert make_vlm(tiny_vlm, vision=False).capabilities().input_modalities == {"text"}


async def test_one_image_takes_32_prompt_positions(vlm: LlamaEngine) -> None:
    await evict(vlm)
    _, text_only = await run(vlm, ask())
    encoded = vlm.stats().images_encoded
    answer, finished = await run(vlm, ask(image(1)))
    assert finished.reason in (FinishReason.STOP, FinishReason.MAX_TOKENS)
    assert answer
    assert finished.media_tokens == (32,)
    # The 32 image positions plus the image's layout tokens come on top of the text.
    assert finished.prompt_tokens >= text_only.prompt_tokens + 32
    assert finished.prompt_tokens <= text_only.prompt_tokens + 32 + 16
    assert text_only.media_tokens == ()
    assert vlm.stats().images_encoded - encoded == 2  # an overview and one slice


async def test_images_in_several_messages_are_all_counted(vlm: LlamaEngine) -> None:
    _, one = await run(vlm, ask(image(2)))
    messages = (
        ChatMessage(
            "user", f"First {MEDIA_PLACEHOLDER} and {MEDIA_PLACEHOLDER}.", (image(3), image(4))
        ),
        ChatMessage("assistant", "Two noisy pictures."),
        ChatMessage("user", f"Now {MEDIA_PLACEHOLDER}?", (image(5, 200, 100),)),
    )
    _, finished = await run(vlm, GenerationRequest(messages, GREEDY))
    assert finished.media_tokens == (32, 32, 32)
    assert finished.prompt_tokens > one.prompt_tokens + 64


async def test_concurrent_image_requests_equal_solo_runs(
    vlm: LlamaEngine, tiny_vlm: TinyVlm
) -> None:
    """Two image requests batched on a fresh engine (nothing cached, no peak yet) give the
    same greedy answers as each one alone."""
    sampling = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=48)
    requests = [ask(image(11), sampling=sampling), ask(image(12), sampling=sampling)]
    solo = [await run(vlm, r) for r in requests]
    pair = make_vlm(tiny_vlm)
    await pair.start()
    try:
        assert pair.stats().peak_active == 0
        together = await asyncio.gather(*(run(pair, r) for r in requests))
        stats = pair.stats()
    finally:
        await pair.close()
    assert [text for text, _ in together] == [text for text, _ in solo]
    assert [f.media_tokens for _, f in together] == [(32,), (32,)]
    assert [f.prompt_tokens for _, f in together] == [f.prompt_tokens for _, f in solo]
    assert stats.peak_active == 2
    assert stats.images_encoded == 4
    assert stats.requests_finished == 2


async def test_different_images_give_different_answers(vlm: LlamaEngine) -> None:
    """The pixels reach the model: only the image differs between these prompts."""
    answers = [(await run(vlm, ask(image(seed))))[0] for seed in (21, 22, 23)]
    assert len(set(answers)) == 3, answers
    again, _ = await run(vlm, ask(image(21)))
    assert again == answers[0]


async def test_a_small_batch_decodes_an_image_in_pieces_with_the_same_result(
    vlm: LlamaEngine, tiny_vlm: TinyVlm
) -> None:
    """batch_tokens 8 < 16 positions per image chunk: each chunk takes two llama_decode calls."""
    small = make_vlm(tiny_vlm, batch_tokens=8)
    await small.start()
    try:
        for seed in (31, 32):
            expected, reference = await run(vlm, ask(image(seed)))
            got, finished = await run(small, ask(image(seed)))
            assert got == expected
            assert finished.prompt_tokens == reference.prompt_tokens
    finally:
        await small.close()


async def test_a_second_turn_reuses_the_cached_image(vlm: LlamaEngine, tiny_vlm: TinyVlm) -> None:
    await evict(vlm)
    first_answer, first = await run(vlm, ask(image(41)))
    second_turn = GenerationRequest(
        (
            ChatMessage("user", f"{MEDIA_PLACEHOLDER}Describe this image.", (image(41),)),
            ChatMessage("assistant", first_answer),
            ChatMessage("user", "And the colours?"),
        ),
        GREEDY,
    )
    encoded = vlm.stats().images_encoded
    answer, second = await run(vlm, second_turn)
    # The whole first prompt (image included) came from the KV cache: nothing re-encoded.
    assert second.cached_tokens >= first.prompt_tokens
    assert vlm.stats().images_encoded == encoded
    assert second.media_tokens == (32,)
    # And the cache is right: a fresh engine computing everything gives the same answer.
    fresh = make_vlm(tiny_vlm)
    await fresh.start()
    try:
        uncached_answer, uncached = await run(fresh, second_turn)
    finally:
        await fresh.close()
    assert uncached.cached_tokens == 0
    assert uncached.prompt_tokens == second.prompt_tokens
    assert uncached_answer == answer


async def test_a_changed_image_is_not_served_from_the_cache(vlm: LlamaEngine) -> None:
    """Same text, same position, other pixels: the cache must stop before the image."""
    await evict(vlm)
    _, first = await run(vlm, ask(image(51)))
    encoded = vlm.stats().images_encoded
    expected, _ = await run(vlm, ask(image(52)))
    _, cached = await run(vlm, ask(image(52)))  # now fully cached
    assert cached.cached_tokens >= first.prompt_tokens - 1
    await evict(vlm)
    _, after_51 = await run(vlm, ask(image(51)))
    answer, changed = await run(vlm, ask(image(52)))
    assert changed.cached_tokens < first.prompt_tokens - 32
    assert answer == expected
    assert vlm.stats().images_encoded - encoded == 6
    assert after_51.media_tokens == (32,)


async def test_an_engine_without_a_projector_refuses_images(tiny_vlm: TinyVlm) -> None:
    engine = make_vlm(tiny_vlm, vision=False)
    await engine.start()
    try:
        with pytest.raises(InvalidArgument, match="'tiny-vlm' takes text only"):
            await engine.generate(ask(image(1)))
        text, finished = await run(engine, ask())
        assert finished.output_tokens > 0
        assert text
        await poll_engine(lambda: engine.stats().active == 0)
    finally:
        await engine.close()


async def test_placeholders_must_match_the_media(vlm: LlamaEngine) -> None:
    request = GenerationRequest(
        (ChatMessage("user", f"{MEDIA_PLACEHOLDER}{MEDIA_PLACEHOLDER}Two?", (image(1),)),),
        GREEDY,
    )
    with pytest.raises(InvalidArgument, match="dropped or repeated a media part"):
        await vlm.generate(request)


async def test_images_beyond_the_context_are_refused_and_the_engine_goes_on(
    vlm: LlamaEngine, tiny_vlm: TinyVlm
) -> None:
    small = LlamaEngine(
        model_id="tiny-vlm",
        gguf_path=tiny_vlm.gguf,
        context_length=128,
        output_token_limit=64,
        slots=1,
        batch_tokens=64,
        threads=1,
        max_queued=1,
        mmproj_path=tiny_vlm.mmproj,
    )
    await small.start()
    try:
        with pytest.raises(InvalidArgument) as info:
            await small.generate(ask(*(image(i) for i in range(4))))
        assert "context of 128 tokens" in info.value.message
        _, finished = await run(small, ask(image(1)))
        assert finished.media_tokens == (32,)
    finally:
        await small.close()


async def test_cancelling_before_the_image_is_decoded_frees_the_slot(vlm: LlamaEngine) -> None:
    before = vlm.stats()
    long = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=3000)
    stream = await vlm.generate(ask(image(ENDLESS_SEED), sampling=long))
    stream.cancel()
    events = [event async for event in stream]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.reason is FinishReason.CANCELLED
    assert finished.output_tokens < 3000
    await poll_engine(lambda: vlm.stats().active == 0)
    assert vlm.stats().requests_cancelled == before.requests_cancelled + 1


async def test_cancelling_mid_generation_frees_the_slot(vlm: LlamaEngine) -> None:
    long = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=3000)
    streams = [await vlm.generate(ask(image(ENDLESS_SEED + i), sampling=long)) for i in range(2)]
    iterators = [aiter(s) for s in streams]
    for it in iterators:  # both slots are generating
        assert isinstance(await anext(it), TextDelta)
    assert vlm.stats().active == 2
    streams[0].cancel()
    tail = [event async for event in iterators[0]]
    finished = tail[-1]
    assert isinstance(finished, Finished)
    assert finished.reason is FinishReason.CANCELLED
    assert 0 < finished.output_tokens < 3000
    assert finished.media_tokens == (32,)
    await poll_engine(lambda: vlm.stats().active == 1)
    # The freed slot takes a new image request while the other one still runs.
    _, fresh = await run(vlm, ask(image(61)))
    assert fresh.media_tokens == (32,)
    await poll_engine(lambda: vlm.stats().active == 1)
    assert streams[1].prompt_tokens == fresh.prompt_tokens  # still running alongside
    streams[1].cancel()
    await poll_engine(lambda: vlm.stats().active == 0)
