"""Coverage-guided fuzzing (atheris, libFuzzer) of the media decoders' entry points.

Each input's first byte picks a decoder (an image type, audio, video, PDF, HTML or plain
text) and the rest is the file. The oracle is the server's: a decoder returns a result or
raises ``MediaError`` (answered as a 400); any other exception is a finding. Nothing here
touches the network: the decoders read bytes from memory (FFmpeg may only probe the plain
container formats of ``gemserve.media.audio.CONTAINERS``, never a protocol).

The corpus starts from valid samples (the test fixtures and small generated images), written
to ``bench/out/fuzz_media/corpus``. By default the run keeps going after a finding: each
distinct exception (type and innermost frame) is printed once and its input written to
``bench/out/fuzz_media/crash-<n>.bin``; ``--strict`` stops at the first (plain libFuzzer).
Without ``-runs=`` or ``-max_total_time=`` the run lasts 60 s; ``-timeout`` defaults to 10 s
per input and ``-rss_limit_mb`` to 2048 (a hang or a huge allocation is a finding too).

Usage:
    .venv/bin/python bench/fuzz_media.py [--strict] [libFuzzer flags, e.g. -max_total_time=60]
    .venv/bin/python bench/fuzz_media.py bench/out/fuzz_media/crash-1.bin   # replay one input
"""

from __future__ import annotations

import io
import logging
import sys
import traceback
from pathlib import Path

try:
    import atheris
except ImportError:  # pragma: no cover - the message is the point
    sys.exit(
        "atheris is not installed: `.venv/bin/pip install atheris` (wheels for CPython "
        "3.8-3.11 on x86-64 Linux; other platforms build it from source with clang and "
        "libFuzzer). The property tests in tests/media/test_header_properties.py check the "
        "same oracle without it."
    )

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "fuzz_media"
sys.path.insert(0, str(REPO / "src"))

with atheris.instrument_imports(include=["gemserve.media", "PIL", "pypdf"]):
    from PIL import Image

    from gemserve.media.audio import decode_audio
    from gemserve.media.document import decode_document
    from gemserve.media.errors import MediaError
    from gemserve.media.image import decode_image
    from gemserve.media.video import decode_video

# pypdf and the decoders log every corrupt input; the findings are what this run prints.
logging.disable(logging.CRITICAL)

MAX_PIXELS = 50_000_000  # Settings.max_image_pixels' default
IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp", "image/tiff"]
DECODERS = [
    *(
        (lambda data, mime=mime: decode_image(data, mime, max_pixels=MAX_PIXELS, max_side=64))
        for mime in IMAGE_TYPES
    ),
    lambda data: decode_audio(data, max_seconds=30),
    lambda data: decode_video(
        data, max_seconds=30, max_frames=4, max_side=64, want_frames=True, want_audio=True
    ),
    *(
        (
            lambda data, mime=mime: decode_document(
                data, mime, max_pages=10, max_chars=100_000, render_pages=True, max_side=64
            )
        )
        for mime in ("application/pdf", "text/html", "text/plain")
    ),
]
PIL_FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]
FIXTURES = REPO / "tests" / "fixtures" / "media"

seen: set[tuple[str, str]] = set()


def seeds() -> list[bytes]:
    """One valid input per decoder (the selector byte, then the file)."""
    image = Image.new("RGB", (24, 16))
    image.putdata(
        [(x * 10 % 256, y * 15 % 256, (x * y) % 256) for y in range(16) for x in range(24)]
    )
    out = []
    for i, fmt in enumerate(PIL_FORMATS):
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        out.append(bytes([i]) + buf.getvalue())
    audio, video, pdf = len(IMAGE_TYPES), len(IMAGE_TYPES) + 1, len(IMAGE_TYPES) + 2
    for name in ("speech.ogg", "speech.mp3"):
        out.append(bytes([audio]) + (FIXTURES / name).read_bytes())
    out.append(bytes([video]) + (FIXTURES / "clip.mp4").read_bytes())
    out.append(bytes([pdf]) + (FIXTURES / "recipe.pdf").read_bytes())
    out.append(bytes([pdf + 1]) + b"<p>caf\xc3\xa9 &amp; <b>tea</b><br><![CDATA[x]]><!--c--></p>")
    out.append(bytes([pdf + 2]) + "Grüße 🙂\n".encode())
    return out


def test_one_input(data: bytes) -> None:
    if not data:
        return
    decoder = DECODERS[data[0] % len(DECODERS)]
    try:
        decoder(data[1:])
    except MediaError:
        pass
    except Exception as exc:
        if STRICT:
            raise
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        key = (type(exc).__name__, f"{frame.filename}:{frame.lineno}")
        if key not in seen:
            seen.add(key)
            path = OUT / f"crash-{len(seen)}.bin"
            path.write_bytes(data)
            print(
                f"\nFINDING {len(seen)}: {type(exc).__name__}: {exc} at {key[1]} "
                f"(decoder {data[0] % len(DECODERS)}, input {path})",
                file=sys.stderr,
                flush=True,
            )


STRICT = "--strict" in sys.argv


def main() -> None:
    argv = [a for a in sys.argv if a != "--strict"]
    flags = [a for a in argv[1:] if a.startswith("-")]
    files = [a for a in argv[1:] if not a.startswith("-")]
    if files and all(Path(f).is_file() for f in files):  # replay: libFuzzer runs each once
        atheris.Setup(argv, test_one_input)
        atheris.Fuzz()
        return
    corpus = OUT / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    if not any(f.startswith(("-runs=", "-max_total_time=")) for f in flags):
        argv.append("-max_total_time=60")
    if not any(f.startswith("-timeout=") for f in flags):
        argv.append("-timeout=10")
    if not any(f.startswith("-rss_limit_mb=") for f in flags):
        argv.append("-rss_limit_mb=2048")
    if not files:
        argv.append(str(corpus))
    print("command:", " ".join([sys.executable, *argv]), file=sys.stderr, flush=True)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
