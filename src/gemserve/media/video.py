"""Video: frames sampled at about one per second (evenly spread when that would exceed the cap),
and the audio track at 16 kHz for transcription."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import av
from PIL import Image

from gemserve.media.audio import (
    DecodedAudio,
    Source,
    decode_audio_stream,
    header_seconds,
    open_container,
)
from gemserve.media.errors import MediaError
from gemserve.media.image import DecodedImage

log = logging.getLogger("gemserve.media")


@dataclass(frozen=True, slots=True)
class VideoFrame:
    seconds: float  # timestamp in the video
    image: DecodedImage


@dataclass(frozen=True, slots=True)
class DecodedVideo:
    seconds: float
    frames: tuple[VideoFrame, ...]
    audio: DecodedAudio | None  # None when there is no audio track


def decode_video(
    source: Source,
    *,
    max_seconds: float,
    max_frames: int,
    max_side: int,
    want_frames: bool,
    want_audio: bool,
) -> DecodedVideo:
    """Probe, check the length cap, then decode only what the model will use."""
    try:
        with open_container(source) as container:
            if not container.streams.video:
                raise MediaError("The data has no video stream.")
            stream = container.streams.video[0]
            seconds = header_seconds(container, stream)
            if seconds is None:
                raise MediaError("The video's length cannot be read; it is corrupt or unsupported.")
            if seconds > max_seconds + 1:
                raise MediaError(
                    f"The video is {seconds:.1f} seconds long; the limit is {max_seconds:g} "
                    "seconds per request."
                )
            frames: tuple[VideoFrame, ...] = ()
            if want_frames and max_frames > 0:
                frames = _sample_frames(container, stream, seconds, max_frames, max_side)
        audio = None
        if want_audio:
            with open_container(source) as container:
                if container.streams.audio:
                    samples = decode_audio_stream(
                        container, container.streams.audio[0], max_seconds
                    )
                    audio = DecodedAudio(samples)
    except MediaError:
        raise
    except (av.error.FFmpegError, EOFError, ValueError) as exc:
        log.info("video decoding failed: %r", exc)
        raise MediaError("The data could not be decoded as video: it is corrupt.") from None
    if want_frames and not frames:
        raise MediaError("No frame of the video could be decoded.")
    return DecodedVideo(seconds, frames, audio)


def _sample_frames(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    seconds: float,
    max_frames: int,
    max_side: int,
) -> tuple[VideoFrame, ...]:
    every = max(1.0, seconds / max_frames)
    stream.thread_type = "AUTO"
    out: list[VideoFrame] = []
    next_t = 0.0
    for frame in container.decode(stream):
        t = float(frame.time) if frame.time is not None else 0.0
        if t + 1e-6 < next_t:
            continue
        image = Image.fromarray(frame.to_ndarray(format="rgb24"), mode="RGB")
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side))
        rgb = image.tobytes()
        digest = hashlib.sha256(rgb).hexdigest()
        out.append(VideoFrame(round(t, 3), DecodedImage(image.width, image.height, rgb, digest)))
        next_t = t + every
        if len(out) >= max_frames:
            break
    return tuple(out)
