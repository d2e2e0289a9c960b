"""Image decoding: real format vs declared MIME type, the pixel cap before decoding, scaling."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemserve.media import MediaError
from gemserve.media.image import DecodedImage, decode_image
from tests.support.media import as_path, encode, noise

BIG = 50_000_000  # the default max_image_pixels


def decode(
    data: bytes | Path, mime: str, *, max_pixels: int = BIG, side: int = 2048
) -> DecodedImage:
    return decode_image(data, mime, max_pixels=max_pixels, max_side=side)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming ``width``x``height``, with almost no pixel data.

    A decoder that allocated before checking the size would need width*height*3 bytes.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_png_round_trips_exact_pixels_and_digest() -> None:
    pixels = noise(80, 60)
    image = decode(encode(Image.fromarray(pixels), "PNG"), "image/png")
    assert (image.width, image.height) == (80, 60)
    assert image.rgb == pixels.tobytes()
    assert image.digest == hashlib.sha256(pixels.tobytes()).hexdigest()


def test_the_digest_identifies_pixels_not_bytes(tmp_path: Path) -> None:
    """The same picture in three lossless containers caches as one image; another does not."""
    picture = Image.fromarray(noise(40, 30))
    digests = {
        decode(encode(picture, "PNG"), "image/png").digest,
        decode(encode(picture, "BMP"), "image/bmp").digest,
        decode(as_path(tmp_path, "p.tiff", encode(picture, "TIFF")), "image/tiff").digest,
    }
    assert len(digests) == 1
    other = decode(encode(Image.fromarray(noise(40, 30, seed=1)), "PNG"), "image/png")
    assert other.digest not in digests


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("JPEG", "image/jpg"),
        ("WEBP", "image/webp"),
        ("GIF", "image/gif"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_every_supported_type_decodes_to_rgb(fmt: str, mime: str) -> None:
    # A smooth gradient survives lossy codecs closely enough to compare.
    ramp = np.linspace(0, 255, 48, dtype=np.uint8)
    pixels = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 128), axis=-1)
    pixels = pixels.astype(np.uint8)
    image = decode(encode(Image.fromarray(pixels), fmt), mime)
    assert (image.width, image.height) == (48, 48)
    assert len(image.rgb) == 48 * 48 * 3
    got = np.frombuffer(image.rgb, np.uint8).reshape(48, 48, 3).astype(int)
    assert np.abs(got - pixels.astype(int)).mean() < 12


@pytest.mark.parametrize(
    ("data_fmt", "found", "declared"),
    [("PNG", "PNG", "image/jpeg"), ("JPEG", "JPEG", "image/png"), ("GIF", "GIF", "image/webp")],
)
def test_mime_type_that_lies_about_the_format_is_refused_naming_both(
    data_fmt: str, found: str, declared: str
) -> None:
    data = encode(Image.fromarray(noise(8, 8)), data_fmt)
    with pytest.raises(MediaError) as info:
        decode(data, declared)
    assert found in str(info.value)
    assert declared in str(info.value)


def test_heic_is_refused_as_unsupported_and_unknown_types_too() -> None:
    data = encode(Image.fromarray(noise(8, 8)), "PNG")
    with pytest.raises(MediaError, match="image/heic images are not supported"):
        decode(data, "image/heic")
    with pytest.raises(MediaError, match="'image/x-unknown' is not an image type"):
        decode(data, "image/x-unknown")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_png_is_a_media_error(cut: float) -> None:
    data = encode(Image.fromarray(noise(64, 64)), "PNG")
    with pytest.raises(MediaError, match="could not be decoded as image/png"):
        decode(data[: int(len(data) * cut)], "image/png")


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", b"\x89PNG\r\n\x1a\n", bytes(np.random.default_rng(3).integers(0, 256, 4096))],
)
def test_garbage_is_a_media_error_never_a_library_exception(data: bytes) -> None:
    with pytest.raises(MediaError, match="could not be decoded as image/png"):
        decode(data, "image/png")


def test_pixel_cap_is_checked_from_the_header_before_decoding() -> None:
    header = png_header_only(5000, 5000)  # 25 Mpx claimed in ~100 bytes
    started = time.perf_counter()
    with pytest.raises(MediaError) as info:
        decode(header, "image/png", max_pixels=1_000_000)
    assert time.perf_counter() - started < 0.5
    assert "5000x5000 = 25000000 pixels" in str(info.value)
    assert "limit is 1000000" in str(info.value)


def test_pixel_cap_boundary_is_inclusive() -> None:
    data = encode(Image.fromarray(noise(10, 10)), "PNG")
    assert decode(data, "image/png", max_pixels=100).width == 10
    with pytest.raises(MediaError, match="10x10 = 100 pixels; the limit is 99"):
        decode(data, "image/png", max_pixels=99)


def test_a_huge_claimed_size_is_refused_quickly() -> None:
    """20000x20000 would be 1.2 GB of RGB: refused from the header, nothing allocated."""
    started = time.perf_counter()
    with pytest.raises(MediaError):
        decode(png_header_only(20000, 20000), "image/png")
    assert time.perf_counter() - started < 0.5


def test_a_huge_claimed_size_is_refused_naming_the_pixel_limit() -> None:
    with pytest.raises(MediaError) as info:
        decode(png_header_only(20000, 20000), "image/png")
    # Pillow's own bomb guard reads the header first; its pixel count is passed on.
    assert "400000000 pixels" in str(info.value)
    assert f"limit is {BIG}" in str(info.value)


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_large_images_are_scaled_down_to_max_side_keeping_the_aspect(fmt: str, mime: str) -> None:
    """JPEG goes through draft mode (decoded at 1/8 scale) and must still land on max_side."""
    big = Image.fromarray(noise(1600, 1200, seed=4))
    image = decode(encode(big, fmt), mime, side=200)
    assert (image.width, image.height) == (200, 150)
    assert len(image.rgb) == 200 * 150 * 3
    small = decode(encode(Image.fromarray(noise(120, 90)), fmt), mime, side=200)
    assert (small.width, small.height) == (120, 90)


def test_scaled_image_keeps_its_content() -> None:
    """Left half black, right half white: scaling must not scramble or recolour it."""
    pixels = np.zeros((300, 400, 3), np.uint8)
    pixels[:, 200:] = 255
    image = decode(encode(Image.fromarray(pixels), "PNG"), "image/png", side=100)
    got = np.frombuffer(image.rgb, np.uint8).reshape(image.height, image.width, 3)
    assert got[:, :45].max() < 10
    assert got[:, 55:].min() > 245


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    image = decode(data, "image/gif")
    got = np.frombuffer(image.rgb, np.uint8).reshape(10, 20, 3)
    assert (got == (255, 0, 0)).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "I;16"])
def test_other_pixel_modes_become_rgb(mode: str) -> None:
    image = Image.new("RGB", (6, 4), (200, 100, 50)).convert(mode)
    decoded = decode(encode(image, "PNG"), "image/png")
    assert len(decoded.rgb) == 6 * 4 * 3


def test_a_path_decodes_like_the_same_bytes(tmp_path: Path) -> None:
    data = encode(Image.fromarray(noise(33, 17)), "PNG")
    assert decode(as_path(tmp_path, "x.png", data), "image/png") == decode(data, "image/png")
