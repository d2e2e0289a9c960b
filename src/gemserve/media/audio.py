"""Audio: any container FFmpeg reads (through PyAV) to 16 kHz mono float32, under a length cap.

Request bytes are handed to FFmpeg as an in-memory file and stored files by the server's own
path, never a name from a client, and only plain container formats may be probed, so no
protocol (http, hls, concat…) can be reached from a request. The duration in the header is
only a hint (files lie in both directions), so decoding itself stops at the cap.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from gemserve.media.errors import MediaError

log = logging.getLogger("gemserve.media")

SAMPLE_RATE = 16_000
# Resampling and codec priming can add a few milliseconds to what the header says.
RESAMPLER_SLACK = SAMPLE_RATE // 20
# Corrupt packets skipped before the whole input counts as corrupt.
MAX_BAD_PACKETS = 50
# Container formats FFmpeg may probe for audio and video (nothing that references other files).
CONTAINERS = "wav,mp3,ogg,flac,matroska,webm,mov,mp4,m4a,3gp,3g2,mj2,aac,aiff,avi,flv,mpeg,asf,amr"


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    samples: npt.NDArray[np.float32]  # mono, SAMPLE_RATE Hz, in [-1, 1]

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


Source = bytes | Path  # request bytes, or a blob of the server's own (never a client's string)


def open_container(source: Source) -> Any:
    return av.open(
        io.BytesIO(source) if isinstance(source, bytes) else str(source),
        mode="r",
        metadata_errors="ignore",
        options={"format_whitelist": CONTAINERS},
    )


def header_seconds(container: Any, stream: Any) -> float | None:
    if container.duration is not None:
        return float(container.duration / av.time_base)
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def decode_audio(source: Source, *, max_seconds: float) -> DecodedAudio:
    """Decode the first audio stream; a longer input is refused, never silently cut."""
    try:
        with open_container(source) as container:
            if not container.streams.audio:
                raise MediaError("The data has no audio stream.")
            samples = decode_audio_stream(container, container.streams.audio[0], max_seconds)
    except MediaError:
        raise
    except (av.error.FFmpegError, EOFError, ValueError) as exc:
        log.info("audio decoding failed: %r", exc)
        raise MediaError(
            "The data could not be decoded as audio: it is corrupt or not audio."
        ) from None
    return DecodedAudio(samples)


def decode_audio_stream(container: Any, stream: Any, max_seconds: float) -> npt.NDArray[np.float32]:
    """Resample one stream to 16 kHz mono, skipping a few corrupt packets, within the cap."""
    hinted = header_seconds(container, stream)
    if hinted is not None and hinted > max_seconds + 1:
        raise MediaError(_too_long(hinted, max_seconds))
    limit = int(max_seconds * SAMPLE_RATE)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[npt.NDArray[np.float32]] = []
    total = 0
    bad = 0

    def push(frame: Any) -> None:
        nonlocal total
        for out in resampler.resample(frame):
            block = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            chunks.append(block)
            total += block.size

    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            bad += 1
            if bad > MAX_BAD_PACKETS:
                raise
            continue
        for frame in frames:
            frame.pts = None
            push(frame)
        if total > limit + RESAMPLER_SLACK:
            raise MediaError(_too_long(total / SAMPLE_RATE, max_seconds, at_least=True))
    push(None)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if samples.size > limit + RESAMPLER_SLACK:
        raise MediaError(_too_long(samples.size / SAMPLE_RATE, max_seconds))
    return samples


def _too_long(seconds: float, limit: float, *, at_least: bool = False) -> str:
    length = f"at least {seconds:.1f}" if at_least else f"{seconds:.1f}"
    return f"The audio is {length} seconds long; the limit is {limit:g} seconds per request."
