"""``count_prompt`` on the real engine: exactly the prompt ``generate`` prefills (chat
template, reasoning control, images), with nothing admitted."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from gemserve.engine import (
    MEDIA_PLACEHOLDER,
    ChatMessage,
    GenerationRequest,
    ImageInput,
    ReasoningControl,
    SamplingParams,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.errors import InvalidArgument
from tests.support.generation import GREEDY, run
from tests.support.llama import TinyVlm

pytestmark = pytest.mark.engine

SHORT = dataclasses.replace(GREEDY, max_output_tokens=2)


def conversation(*messages: tuple[str, str]) -> GenerationRequest:
    return GenerationRequest(tuple(ChatMessage(role, text) for role, text in messages), SHORT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_",
    [
        conversation(("user", "Name a colour.")),
        conversation(("system", "Be brief."), ("user", "Name a colour.")),
        conversation(
            ("user", "My name is Ana."), ("assistant", "Hello Ana!"), ("user", "My name?")
        ),
        dataclasses.replace(
            conversation(("user", "Why is the sky blue?")), reasoning=ReasoningControl(budget=0)
        ),
        dataclasses.replace(
            conversation(("user", "Why is the sky blue?")), reasoning=ReasoningControl(budget=8)
        ),
    ],
)
async def test_the_count_is_the_prompt_generate_prefills(
    engine: LlamaEngine, request_: GenerationRequest
) -> None:
    steps = engine.stats().decode_steps
    counted = await engine.count_prompt(request_)
    assert engine.stats().decode_steps == steps  # nothing was decoded to count
    assert counted.media_tokens == ()
    _, finished = await run(engine, request_)
    assert counted.tokens == finished.prompt_tokens


async def test_a_prompt_over_the_context_is_counted_not_refused(engine: LlamaEngine) -> None:
    long = conversation(("user", "word " * 600))
    counted = await engine.count_prompt(long)
    assert counted.tokens > engine.capabilities().context_length
    with pytest.raises(InvalidArgument, match=str(counted.tokens)):
        await engine.generate(long)


async def test_images_are_counted_as_their_positions(tiny_vlm: TinyVlm) -> None:
    engine = LlamaEngine(
        model_id="tiny-vlm",
        gguf_path=tiny_vlm.gguf,
        context_length=4096,
        output_token_limit=4000,
        slots=1,
        batch_tokens=64,
        threads=1,
        max_queued=4,
        mmproj_path=tiny_vlm.mmproj,
    )
    await engine.start()
    try:
        pixels = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8).tobytes()
        picture = ImageInput(80, 60, pixels, hashlib.sha256(pixels).hexdigest())
        request = GenerationRequest(
            (ChatMessage("user", MEDIA_PLACEHOLDER + "Describe it.", (picture,)),),
            SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=2),
        )
        counted = await engine.count_prompt(request)
        assert counted.media_tokens == (tiny_vlm.tokens_per_image,)
        _, finished = await run(engine, request)
        assert (counted.tokens, counted.media_tokens) == (
            finished.prompt_tokens,
            finished.media_tokens,
        )
    finally:
        await engine.close()
