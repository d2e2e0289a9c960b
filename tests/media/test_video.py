"""Video decoding: about one frame per second (spread under max_frames), and the sound track."""

from __future__ import annotations

import numpy as np
import pytest

from gemserve.media import MediaError
from gemserve.media.audio import Source
from gemserve.media.video import DecodedVideo, VideoFrame, decode_video
from tests.support.media import MEDIA, fixture_bytes, video_only_mp4

CLIP = MEDIA / "clip.mp4"
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
COLOURS = (RED, GREEN, BLUE, WHITE)  # one per second of the clip


def decode(
    source: Source = CLIP,
    *,
    max_seconds: float = 600,
    max_frames: int = 32,
    max_side: int = 2048,
    max_pixels: int = 1 << 24,
    want_frames: bool = True,
    want_audio: bool = True,
) -> DecodedVideo:
    return decode_video(
        source,
        max_seconds=max_seconds,
        max_frames=max_frames,
        max_side=max_side,
        max_pixels=max_pixels,
        want_frames=want_frames,
        want_audio=want_audio,
    )


def colour_of(frame: VideoFrame) -> tuple[int, int, int]:
    """The frame's mean colour; the clip's frames are solid, so every pixel is close to it."""
    image = frame.image
    pixels = np.frombuffer(image.rgb, np.uint8).reshape(-1, 3).astype(int)
    assert int((pixels.max(axis=0) - pixels.min(axis=0)).max()) <= 6, "not a solid frame"
    r, g, b = (int(v) for v in np.rint(pixels.mean(axis=0)))
    return r, g, b


def assert_colour(frame: VideoFrame, expected: tuple[int, int, int]) -> None:
    got = colour_of(frame)
    assert all(abs(a - b) <= 3 for a, b in zip(got, expected, strict=True)), (got, expected)


def test_one_frame_per_second_with_the_right_colours_and_the_sound_track() -> None:
    video = decode()
    assert video.seconds == pytest.approx(4.0, abs=0.1)
    assert [f.seconds for f in video.frames] == [0.0, 1.0, 2.0, 3.0]
    for frame, colour in zip(video.frames, COLOURS, strict=True):
        assert (frame.image.width, frame.image.height) == (128, 96)
        assert len(frame.image.rgb) == 128 * 96 * 3
        assert_colour(frame, colour)
    assert len({f.image.digest for f in video.frames}) == 4
    assert video.audio is not None
    assert video.audio.seconds == pytest.approx(3.9, abs=0.15)
    assert float(np.abs(video.audio.samples).max()) > 0.1


def test_bytes_decode_like_the_path() -> None:
    from_bytes = decode(fixture_bytes("clip.mp4"))
    from_path = decode(CLIP)
    assert [f.image.digest for f in from_bytes.frames] == [f.image.digest for f in from_path.frames]


def test_max_frames_spreads_the_frames_over_the_whole_video() -> None:
    """Two frames of four seconds are 0 s and 2 s (red, blue), not the first two seconds."""
    video = decode(max_frames=2, want_audio=False)
    assert [f.seconds for f in video.frames] == [0.0, 2.0]
    assert_colour(video.frames[0], RED)
    assert_colour(video.frames[1], BLUE)


def test_three_frames_reach_the_last_second() -> None:
    video = decode(max_frames=3, want_audio=False)
    times = [f.seconds for f in video.frames]
    assert len(times) == 3
    assert times[0] == 0.0
    assert times == sorted(times)
    assert times[-1] >= 2.5
    assert_colour(video.frames[-1], BLUE if times[-1] < 3 else WHITE)


def test_frames_are_scaled_to_max_side() -> None:
    video = decode(max_side=64, want_audio=False)
    assert {(f.image.width, f.image.height) for f in video.frames} == {(64, 48)}
    assert_colour(video.frames[1], GREEN)


def test_frames_keep_their_aspect_when_the_scale_is_not_whole() -> None:
    video = decode(max_side=50, want_audio=False)
    assert {(f.image.width, f.image.height) for f in video.frames} == {(50, 38)}
    assert len(video.frames[0].image.rgb) == 50 * 38 * 3
    assert_colour(video.frames[2], BLUE)


def test_frames_over_the_image_pixel_limit_are_refused_from_the_header() -> None:
    with pytest.raises(MediaError) as info:
        decode(max_pixels=128 * 96 - 1)
    assert "128x96 = 12288 pixels" in str(info.value)
    assert "limit is 12287 pixels per frame" in str(info.value)


def test_the_pixel_limit_applies_only_to_frames_the_model_will_see() -> None:
    video = decode(max_pixels=100, want_frames=False)
    assert video.frames == ()
    assert video.audio is not None


def test_want_frames_false_decodes_only_the_sound() -> None:
    video = decode(want_frames=False)
    assert video.frames == ()
    assert video.audio is not None
    assert video.audio.seconds == pytest.approx(3.9, abs=0.15)


def test_want_audio_false_skips_the_sound_track() -> None:
    video = decode(want_audio=False)
    assert video.audio is None
    assert len(video.frames) == 4


def test_a_video_without_a_sound_track_has_no_audio() -> None:
    video = decode(video_only_mp4())
    assert video.audio is None
    assert len(video.frames) == 4
    assert_colour(video.frames[3], WHITE)


def test_a_video_over_the_length_cap_is_refused_before_decoding() -> None:
    with pytest.raises(MediaError) as info:
        decode(max_seconds=2)
    assert "4.0 seconds long" in str(info.value)
    assert "limit is 2 seconds" in str(info.value)


def test_audio_is_not_a_video() -> None:
    with pytest.raises(MediaError, match="no video stream"):
        decode(MEDIA / "speech.wav")


@pytest.mark.parametrize(
    "data",
    [b"", fixture_bytes("clip.mp4")[:1000], bytes(range(256)) * 40],
)
def test_corrupt_data_is_a_media_error(data: bytes) -> None:
    with pytest.raises(MediaError, match="could not be decoded as video"):
        decode(data)


def test_a_video_stream_of_an_unknown_codec_is_a_media_error() -> None:
    """FFmpeg opens the container but has no decoder for a codec tag it does not know: the
    stream has no codec context, and the frame size check must not trip over that."""
    data = fixture_bytes("clip.mp4").replace(b"avc1", b"zzzz")
    with pytest.raises(MediaError, match="codec is unknown"):
        decode(data)
