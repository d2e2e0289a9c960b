"""Audio decoding through PyAV: any container to 16 kHz mono, refused (never cut) over the cap."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from gemserve.media import MediaError
from gemserve.media.audio import SAMPLE_RATE, decode_audio
from tests.support.media import (
    MEDIA,
    fixture_bytes,
    sine_wav,
    ten_hours_of_silence,
    video_only_mp4,
)

SPEECH = ("speech.wav", "speech.ogg", "speech.mp3")
SPEECH_SECONDS = 3.9


@pytest.mark.parametrize("name", SPEECH)
def test_speech_fixtures_decode_to_16_khz_mono_float(name: str) -> None:
    audio = decode_audio(MEDIA / name, max_seconds=600)
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert audio.seconds == pytest.approx(SPEECH_SECONDS, abs=0.1)
    assert audio.samples.size == pytest.approx(SPEECH_SECONDS * SAMPLE_RATE, abs=1600)
    peak = float(np.abs(audio.samples).max())
    assert 0.1 < peak <= 1.0  # real speech, in [-1, 1], not int16 counts
    # Speech, not silence padded around a blip: a good part of the clip is loud.
    loud = np.abs(audio.samples) > 0.05
    assert loud.mean() > 0.1


@pytest.mark.parametrize("name", SPEECH)
def test_bytes_and_path_decode_identically(name: str) -> None:
    from_path = decode_audio(MEDIA / name, max_seconds=600)
    from_bytes = decode_audio(fixture_bytes(name), max_seconds=600)
    assert np.array_equal(from_path.samples, from_bytes.samples)


def test_stereo_44k_is_resampled_to_16k_mono_keeping_the_pitch() -> None:
    audio = decode_audio(sine_wav(rate=44100, channels=2, seconds=1.0, hz=440), max_seconds=5)
    assert audio.samples.size == pytest.approx(SAMPLE_RATE, abs=50)
    spectrum = np.abs(np.fft.rfft(audio.samples))
    peak_hz = float(np.argmax(spectrum)) * SAMPLE_RATE / audio.samples.size
    assert peak_hz == pytest.approx(440, abs=5)


@pytest.mark.parametrize("name", SPEECH)
def test_audio_longer_than_the_cap_is_refused_with_both_lengths(name: str) -> None:
    with pytest.raises(MediaError) as info:
        decode_audio(MEDIA / name, max_seconds=2)
    message = str(info.value)
    assert "3.9 seconds long" in message
    assert "the limit is 2 seconds" in message


def test_a_cap_the_header_allows_is_still_enforced_while_decoding() -> None:
    """3.9 s against a 3 s cap: within the header slack, caught by counting samples."""
    with pytest.raises(MediaError, match=r"at least 3\.\d seconds long; the limit is 3 seconds"):
        decode_audio(MEDIA / "speech.wav", max_seconds=3)


@pytest.mark.parametrize("cap", [3.5, 3.8])
def test_audio_slightly_over_the_cap_is_refused_not_cut(cap: float) -> None:
    with pytest.raises(MediaError, match="seconds long; the limit is"):
        decode_audio(MEDIA / "speech.wav", max_seconds=cap)


def test_a_cap_above_the_length_keeps_every_sample() -> None:
    full = decode_audio(MEDIA / "speech.wav", max_seconds=600)
    capped = decode_audio(MEDIA / "speech.wav", max_seconds=3.9)
    assert np.array_equal(full.samples, capped.samples)


def test_a_streamed_wav_with_unknown_length_in_its_header_decodes() -> None:
    """Piped WAVs carry 0xFFFFFFFF sizes: the header is only a hint, never trusted for length."""
    data = bytearray(fixture_bytes("speech.wav"))
    data[4:8] = b"\xff\xff\xff\xff"
    chunk = data.find(b"data")
    data[chunk + 4 : chunk + 8] = b"\xff\xff\xff\xff"
    audio = decode_audio(bytes(data), max_seconds=10)
    assert audio.seconds == pytest.approx(SPEECH_SECONDS, abs=0.1)


def test_a_truncated_file_gives_what_is_there() -> None:
    data = fixture_bytes("speech.wav")
    audio = decode_audio(data[: len(data) // 2], max_seconds=600)
    assert audio.seconds == pytest.approx(SPEECH_SECONDS / 2, abs=0.2)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF",
        bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
        b"\x89PNG\r\n\x1a\n" + bytes(200),
    ],
)
def test_garbage_is_refused_as_not_audio(data: bytes) -> None:
    with pytest.raises(MediaError, match="could not be decoded as audio"):
        decode_audio(data, max_seconds=10)


@pytest.mark.parametrize(
    "data",
    [
        b"#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/x.wav\n#EXT-X-ENDLIST\n",
        b"ffconcat version 1.0\nfile '/etc/hostname'\n",
        b"file:///etc/hostname",
    ],
)
def test_playlists_and_references_are_never_followed(data: bytes) -> None:
    """Only plain containers may be probed: a request cannot make FFmpeg open anything."""
    started = time.perf_counter()
    with pytest.raises(MediaError, match="could not be decoded as audio"):
        decode_audio(data, max_seconds=10)
    assert time.perf_counter() - started < 2


def test_a_video_without_sound_has_no_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    path.write_bytes(video_only_mp4())
    with pytest.raises(MediaError, match="no audio stream"):
        decode_audio(path, max_seconds=10)


def test_the_sound_track_of_a_video_decodes() -> None:
    audio = decode_audio(MEDIA / "clip.mp4", max_seconds=10)
    assert audio.seconds == pytest.approx(SPEECH_SECONDS, abs=0.15)
    assert float(np.abs(audio.samples).max()) > 0.1


def test_ten_hours_of_audio_are_refused_from_the_header_before_decoding() -> None:
    data = ten_hours_of_silence()
    started = time.perf_counter()
    with pytest.raises(MediaError, match=r"36000\.0 seconds long; the limit is 600 seconds"):
        decode_audio(data, max_seconds=600)
    assert time.perf_counter() - started < 0.5


def test_a_header_that_lies_about_ten_hours_decodes_what_is_there() -> None:
    """A WAV header claiming 10 h before one second of sound: FFmpeg measures the real data."""
    data = sine_wav(rate=16_000, channels=1, seconds=1.0, hz=440.0)
    claimed = 10 * 3600 * 16_000 * 2
    forged = data[:4] + (36 + claimed).to_bytes(4, "little") + data[8:40]
    forged += claimed.to_bytes(4, "little") + data[44:]
    assert decode_audio(forged, max_seconds=600).seconds == pytest.approx(1.0, abs=0.01)
