"""Sound through libmtmd's audio path on a tiny random Ultravox (scripts/make_tiny_audio_lm.py).

A model with an audio projector hears the audio itself instead of a transcript. Its answers
are noise, but the plumbing is real: mel features, the encoder, the embedding batch, token
counts, batching. Greedy noise changes with anything the model hears.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from gemserve.engine import (
    MEDIA_PLACEHOLDER,
    AudioInput,
    ChatMessage,
    GenerationRequest,
    ImageInput,
    SamplingParams,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.errors import InvalidArgument
from gemserve.media.audio import SAMPLE_RATE, decode_audio
from tests.support.generation import run
from tests.support.llama import TinyAudioLm
from tests.support.media import MEDIA

pytestmark = pytest.mark.engine

GREEDY = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=10)
SPEECH = MEDIA / "speech.wav"


@pytest.fixture(scope="module")
async def hearing(tiny_audio_lm: TinyAudioLm) -> AsyncIterator[LlamaEngine]:
    engine = LlamaEngine(
        model_id="tiny-audio",
        gguf_path=tiny_audio_lm.gguf,
        context_length=1024,
        output_token_limit=512,
        slots=2,
        batch_tokens=128,
        threads=1,
        max_queued=4,
        mmproj_path=tiny_audio_lm.mmproj,
    )
    await engine.start()
    yield engine
    await engine.close()


def sound(samples: np.ndarray) -> AudioInput:
    raw = samples.astype(np.float32).tobytes()
    return AudioInput(raw, SAMPLE_RATE, hashlib.sha256(raw).hexdigest())


def speech() -> AudioInput:
    return sound(decode_audio(SPEECH.read_bytes(), max_seconds=60).samples)


def ask(item: AudioInput | ImageInput, sampling: SamplingParams = GREEDY) -> GenerationRequest:
    message = ChatMessage("user", f"{MEDIA_PLACEHOLDER}What was said?", (item,))
    return GenerationRequest((message,), sampling)


async def test_the_projector_declares_audio_not_images(hearing: LlamaEngine) -> None:
    assert hearing.capabilities().input_modalities == frozenset({"text", "audio"})


async def test_a_clip_is_one_window_of_fifty_tokens_and_reaches_the_model(
    hearing: LlamaEngine, tiny_audio_lm: TinyAudioLm
) -> None:
    spoken, finished = await run(hearing, ask(speech()))
    assert finished.media_tokens == (tiny_audio_lm.tokens_per_window,)
    assert finished.prompt_tokens > tiny_audio_lm.tokens_per_window
    silent, _ = await run(hearing, ask(sound(np.zeros(4 * SAMPLE_RATE))))
    assert spoken != silent, "what the model hears must change its answer"


async def test_long_audio_spans_several_windows(
    hearing: LlamaEngine, tiny_audio_lm: TinyAudioLm
) -> None:
    clip = decode_audio(SPEECH.read_bytes(), max_seconds=60).samples
    long = np.tile(clip, 10)  # about 39 s: two 30 s windows
    _, finished = await run(hearing, ask(sound(long)))
    assert finished.media_tokens == (2 * tiny_audio_lm.tokens_per_window,)


async def test_two_clips_decode_together_as_they_do_alone(hearing: LlamaEngine) -> None:
    # Long enough answers that the two overlap (each clip's features take ~50 ms to make).
    longer = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=400)
    first, second = ask(speech(), longer), ask(sound(np.zeros(2 * SAMPLE_RATE)), longer)
    alone = [(await run(hearing, r))[0] for r in (first, second)]
    together = await asyncio.gather(run(hearing, first), run(hearing, second))
    assert [text for text, _ in together] == alone
    assert hearing.stats().peak_active == 2


async def test_an_image_for_an_audio_only_projector_is_refused(hearing: LlamaEngine) -> None:
    pixels = bytes(64 * 64 * 3)
    image = ImageInput(64, 64, pixels, hashlib.sha256(pixels).hexdigest())
    with pytest.raises(InvalidArgument, match="takes no images"):
        await hearing.generate(ask(image))
