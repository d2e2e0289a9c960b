"""Images: format sniffing, pixel caps before decoding, RGB pixels for vision models."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from gemserve.media.errors import MediaError

log = logging.getLogger("gemserve.media")

# Declared MIME type → the format Pillow must find in the bytes.
IMAGE_FORMATS: dict[str, str] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}
# Formats of the Gemini schema this server cannot decode (no HEIF codec in Pillow's wheel).
UNSUPPORTED_IMAGE_TYPES = frozenset({"image/heic", "image/heif"})


@dataclass(frozen=True, slots=True)
class DecodedImage:
    width: int
    height: int
    rgb: bytes  # width * height * 3 bytes, row-major
    digest: str  # identifies the pixels (for prompt caching)


def decode_image(
    source: bytes | Path, mime_type: str, *, max_pixels: int, max_side: int
) -> DecodedImage:
    """Decode ``source`` to RGB, scaled down to at most ``max_side`` pixels per side.

    The pixel count is read from the header and checked before any pixel is decoded.
    """
    expected = IMAGE_FORMATS.get(mime_type)
    if expected is None:
        if mime_type in UNSUPPORTED_IMAGE_TYPES:
            raise MediaError(
                f"{mime_type} images are not supported by this server; send PNG, "
                "JPEG, WebP, GIF, BMP or TIFF."
            )
        raise MediaError(f"{mime_type!r} is not an image type this server decodes.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            found = image.format
            width, height = image.size
            if found != expected:
                raise MediaError(
                    f"The data is {found or 'not a known image format'}, but its MIME type says "
                    f"{mime_type}."
                )
            if width * height > max_pixels:
                raise MediaError(
                    f"The image is {width}x{height} = {width * height} pixels; the limit is "
                    f"{max_pixels}."
                )
            if max(width, height) > max_side:
                # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: far less work.
                image.draft("RGB", (max_side, max_side))
            image.seek(0)  # the first frame of an animation
            rgb = image.convert("RGB")
            if max(rgb.size) > max_side:
                rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
            pixels = rgb.tobytes()
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard saw a huge size in the header first; its message has the count.
        count = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{count.group(1)} pixels" if count else f"more than {max_pixels} pixels"
        raise MediaError(f"The image is {size}; the limit is {max_pixels}.") from None
    except UnidentifiedImageError:
        raise MediaError(f"The data could not be decoded as {mime_type}.") from None
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        log.info("image decoding failed: %r", exc)
        raise MediaError(f"The data could not be decoded as {mime_type}: it is corrupt.") from None
    digest = hashlib.sha256(pixels).hexdigest()
    return DecodedImage(rgb.width, rgb.height, pixels, digest)
