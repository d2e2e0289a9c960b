"""Media for the decoder and pipeline tests: the fixture files, and media made on the fly."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from tests.support.paths import TESTS

# speech.{wav,ogg,mp3}: 16 kHz mono, 3.9 s of espeak saying SENTENCE; clip.mp4: 4 s, 128x96,
# red, green, blue, white for one second each, with the same sentence as its sound track;
# recipe.pdf: two pages of one sentence each (PAGE_TEXTS).
MEDIA = TESTS / "fixtures" / "media"
SENTENCE = "Please send the blue package to London on Friday morning."
PAGE_TEXTS = (
    "The secret ingredient of the recipe is cardamom.",
    "Bake the bread for forty minutes at two hundred degrees.",
)


def fixture_bytes(name: str) -> bytes:
    return (MEDIA / name).read_bytes()


def noise(width: int, height: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """Random RGB pixels: no codec can fake them, so a wrong decode shows."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def as_path(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def video_only_mp4() -> bytes:
    """clip.mp4 remuxed without its sound track (no re-encoding)."""
    out = io.BytesIO()
    with av.open(str(MEDIA / "clip.mp4")) as src, av.open(out, "w", format="mp4") as dst:
        video = src.streams.video[0]
        stream = dst.add_stream_from_template(video)
        for packet in src.demux(video):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return out.getvalue()


def sine_wav(*, rate: int, channels: int, seconds: float, hz: float) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    wave_ = (np.sin(2 * np.pi * hz * t) * 12000).astype(np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.repeat(wave_[:, None], channels, axis=1).tobytes())
    return out.getvalue()


def ten_hours_of_silence() -> bytes:
    """A real 10-hour FLAC (1 kHz, silent: 2.7 MB) that would decode to 1.15 GB at 16 kHz."""
    out = io.BytesIO()
    minute = np.zeros((1, 60_000), dtype=np.int16)
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=1000, layout="mono")
        for i in range(600):
            frame = av.AudioFrame.from_ndarray(minute, format="s16", layout="mono")
            frame.sample_rate = 1000
            frame.pts = i * 60_000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
