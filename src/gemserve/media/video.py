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
    max_pixels: int,
    want_frames: bool,
    want_audio: bool,
) -> DecodedVideo:
    """Probe, check the length and frame-size caps, then decode only what the model will use.
    ``max_pixels`` is the image limit: a frame larger than an image may be is refused from the
    header, before a frame is decoded (a crafted header cannot make the decoder allocate it)."""
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
                _check_frame_size(stream, max_pixels)
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


def _check_frame_size(stream: av.VideoStream, max_pixels: int) -> None:
    context = stream.codec_context  # None when FFmpeg knows no decoder for the stream's codec
    if context is None:
        raise MediaError("The video's codec is unknown; it is corrupt or unsupported.")
    width, height = context.width, context.height
    if width <= 0 or height <= 0:
        raise MediaError("The video's frame size cannot be read; it is corrupt or unsupported.")
    if width * height > max_pixels:
        raise MediaError(
            f"The video's frames are {width}x{height} = {width * height} pixels; the limit is "
            f"{max_pixels} pixels per frame, as for an image."
        )


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The frame's size with its longer side at most ``max_side``, the aspect kept."""
    longer = max(width, height)
    if longer <= max_side:
        return width, height
    return max(1, round(width * max_side / longer)), max(1, round(height * max_side / longer))


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
        # Scaled by ffmpeg while converting: never a full-size RGB copy of a large frame.
        width, height = _scaled_size(frame.width, frame.height, max_side)
        pixels = frame.to_ndarray(format="rgb24", width=width, height=height)
        image = Image.fromarray(pixels, mode="RGB")
        rgb = image.tobytes()
        digest = hashlib.sha256(rgb).hexdigest()
        out.append(VideoFrame(round(t, 3), DecodedImage(image.width, image.height, rgb, digest)))
        next_t = t + every
        if len(out) >= max_frames:
            break
    return tuple(out)
