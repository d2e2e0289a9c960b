"""Property tests of the media decoders on truncated and mutated files.

Valid samples (every image format, WAV/OGG/MP3, MP4, PDF, text and HTML) are cut short at a
random point and have random bytes overwritten. Each decoder must return a result or raise
``MediaError`` (which the service answers as a 400 naming the part), never another exception,
within a per-example time limit (SIGALRM: it interrupts Python code, and FFmpeg's or Pillow's
loops when they call back). Images whose header claims more than ``max_image_pixels`` pixels
(up to 2^31 per side) are refused before any pixel is decoded: quickly and without growing the
process's peak memory.
"""

from __future__ import annotations

import contextlib
import io
import resource
import signal
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image

from gemserve.media.audio import decode_audio
from gemserve.media.document import decode_document
from gemserve.media.errors import MediaError
from gemserve.media.image import decode_image
from gemserve.media.video import decode_video
from tests.support.media import encode, fixture_bytes, noise, sine_wav

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Pillow warns about what it skips in a corrupt file; expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MAX_PIXELS = 50_000_000  # Settings.max_image_pixels' default
TIME_LIMIT = 10.0  # seconds per example


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the decoder ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _image(fmt: str, **options: object) -> bytes:
    return encode(Image.fromarray(noise(24, 16, seed=1)), fmt, **options)


# (decoder, sample bytes) by name; the decoders take the caps the server uses by default,
# smaller where that only makes the test faster.
Decoder = Callable[[bytes], Any]
IMAGE_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
}


def image_decoder(mime: str) -> Decoder:
    return lambda data: decode_image(data, mime, max_pixels=MAX_PIXELS, max_side=64)


def document_decoder(mime: str) -> Decoder:
    return lambda data: decode_document(
        data, mime, max_pages=10, max_chars=100_000, render_pages=True, max_side=64
    )


SAMPLES: dict[str, tuple[Decoder, Callable[[], bytes]]] = {
    **{
        f"image-{fmt.lower()}": (image_decoder(mime), lambda fmt=fmt: _image(fmt))  # type: ignore[misc]
        for fmt, mime in IMAGE_TYPES.items()
    },
    "audio-wav": (
        lambda d: decode_audio(d, max_seconds=30),
        lambda: sine_wav(rate=8000, channels=1, seconds=0.5, hz=440),
    ),
    "audio-ogg": (lambda d: decode_audio(d, max_seconds=30), lambda: fixture_bytes("speech.ogg")),
    "audio-mp3": (lambda d: decode_audio(d, max_seconds=30), lambda: fixture_bytes("speech.mp3")),
    "video-mp4": (
        lambda d: decode_video(
            d,
            max_seconds=30,
            max_frames=4,
            max_side=64,
            max_pixels=1 << 20,
            want_frames=True,
            want_audio=True,
        ),
        lambda: fixture_bytes("clip.mp4"),
    ),
    "document-pdf": (document_decoder("application/pdf"), lambda: fixture_bytes("recipe.pdf")),
    "document-html": (
        document_decoder("text/html"),
        lambda: (
            b"<html><head><style>p{}</style></head><body><p>caf\xc3\xa9 &amp; <b>tea"
            b"</b><br><![CDATA[x]]><!-- c --><script>1</script></p></body></html>"
        ),
    ),
    "document-text": (document_decoder("text/plain"), lambda: "Grüße 🙂\n".encode() * 4),
}
_cache: dict[str, bytes] = {}


def sample(name: str) -> bytes:
    if name not in _cache:
        _cache[name] = SAMPLES[name][1]()
    return _cache[name]


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` cut short, and some bytes overwritten (or neither: the sample itself)."""
    out = bytearray(data)
    if draw(st.booleans()):
        del out[draw(st.integers(0, len(out))) :]
    for _ in range(draw(st.integers(0, 8))):
        if out:
            # Headers are at the start: overwrite there more often.
            limit = len(out) - 1 if draw(st.booleans()) else min(len(out) - 1, 64)
            out[draw(st.integers(0, limit))] = draw(st.integers(0, 255))
    if draw(st.integers(0, 9)) == 0:  # now and then, bytes of the sample spliced in again
        at = draw(st.integers(0, len(out)))
        out[at:at] = data[: draw(st.integers(0, min(len(data), 256)))]
    return bytes(out)


def check(decoder: Decoder, data: bytes) -> None:
    """The oracle: a result or MediaError, in time; anything else fails the test."""
    with time_limit(TIME_LIMIT), contextlib.suppress(MediaError):
        decoder(data)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", [n for n in SAMPLES if n.startswith(("image", "document"))])
@FAST
@given(data=st.data())
def test_images_and_documents_decode_or_refuse(name: str, data: st.DataObject) -> None:
    check(SAMPLES[name][0], data.draw(mutations(sample(name))))


@pytest.mark.parametrize("name", [n for n in SAMPLES if n.startswith(("audio", "video"))])
@SLOW
@given(data=st.data())
def test_audio_and_video_decode_or_refuse(name: str, data: st.DataObject) -> None:
    check(SAMPLES[name][0], data.draw(mutations(sample(name))))


HTML_TOKENS = ("<![", "<!", "<?", "[", "]]>", "CDATA", "if", "foo", "<", ">", "</", "<p>",
               "<!--", "-->", "&amp;", "&#", "x", " ", "=", '"', "<script>")  # fmt: skip


@FAST
@given(html=st.lists(st.sampled_from(HTML_TOKENS), max_size=20).map("".join))
def test_any_html_text_decodes_or_refuses(html: str) -> None:
    check(SAMPLES["document-html"][0], html.encode())


# ----- headers that claim too many pixels ---------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def gif_header(width: int, height: int) -> bytes:
    return (
        b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
        + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
        + b"\x02\x02\x44\x01\x00\x3b"
    )  # fmt: skip


def bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 14 + 40) + info + b"\0" * 16


HEADERS = {"image/png": png_header, "image/gif": gif_header, "image/bmp": bmp_header}
SIDE_LIMITS = {"image/png": 2**31 - 1, "image/gif": 2**16 - 1, "image/bmp": 2**31 - 1}


@settings(max_examples=150, deadline=None)
@given(mime=st.sampled_from(sorted(HEADERS)), data=st.data())
def test_a_header_over_the_pixel_limit_is_refused_before_decoding(
    mime: str, data: st.DataObject
) -> None:
    top = SIDE_LIMITS[mime]
    width = data.draw(st.integers(1, top), label="width")
    low = MAX_PIXELS // width + 1  # width * height > MAX_PIXELS
    if low > top:
        width, low = top, MAX_PIXELS // top + 1
    height = data.draw(st.integers(low, top), label="height")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    started = time.monotonic()
    with time_limit(TIME_LIMIT), pytest.raises(MediaError, match="pixels"):
        decode_image(HEADERS[mime](width, height), mime, max_pixels=MAX_PIXELS, max_side=64)
    assert time.monotonic() - started < 2.0
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < 100 * 1024, f"peak memory grew by {grown} KiB"


def test_the_crafted_headers_are_read_as_images() -> None:
    """The crafted headers are what Pillow reads (else the refusal above proves nothing)."""
    for mime, make in HEADERS.items():
        with Image.open(io.BytesIO(make(300, 200))) as image:
            assert image.size == (300, 200), mime


@pytest.mark.parametrize("html", [b"<p>a<![foo[ x ]]>b</p>", b"<![<html>", b"<![C<html>"])
def test_markup_the_html_parser_asserts_on_is_a_400(html: bytes) -> None:
    """html.parser raises AssertionError on these (a 500 before): now MediaError, a 400."""
    with pytest.raises(MediaError, match="markup is malformed"):
        SAMPLES["document-html"][0](html)


def test_a_pdf_whose_page_pdfium_cannot_load_is_a_400() -> None:
    """Found by bench/fuzz_media.py: recipe.pdf less a span of its objects still reads with
    pypdf, but PDFium raised PdfiumError ("Failed to load page") while rendering: a 500."""
    pdf = fixture_bytes("recipe.pdf")
    with pytest.raises(MediaError, match="could not be rendered"):
        SAMPLES["document-pdf"][0](pdf[:131] + pdf[240:])
