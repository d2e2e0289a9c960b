"""Documents: PDF text page by page (and page images for vision models), plain-text types."""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pypdf
import pypdfium2
from pypdf.errors import DependencyError, PyPdfError

from gemserve.media.errors import MediaError
from gemserve.media.image import DecodedImage

log = logging.getLogger("gemserve.media")

TEXT_TYPES = frozenset({"text/plain", "text/csv", "text/markdown", "text/html", "text/xml"})
PDF = "application/pdf"
DOCUMENT_TYPES = TEXT_TYPES | {PDF}


@dataclass(frozen=True, slots=True)
class DocumentPage:
    number: int  # 1-based
    text: str
    image: DecodedImage | None = None


@dataclass(frozen=True, slots=True)
class DecodedDocument:
    pages: tuple[DocumentPage, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages)


def decode_document(
    source: bytes | Path,
    mime_type: str,
    *,
    max_pages: int,
    max_chars: int,
    render_pages: bool,
    max_side: int,
) -> DecodedDocument:
    if mime_type == PDF:
        return _pdf(source, max_pages=max_pages, render_pages=render_pages, max_side=max_side)
    if mime_type in TEXT_TYPES:
        data = source if isinstance(source, bytes) else _read_head(source, max_chars * 4 + 4)
        if len(data) > max_chars * 4:
            raise MediaError(f"The document is longer than the limit of {max_chars} characters.")
        text = _decode_text(data, mime_type)
        if mime_type == "text/html":
            text = _html_text(text)
        return DecodedDocument((DocumentPage(1, text),))
    raise MediaError(
        f"{mime_type!r} documents are not supported; send PDF, plain text, CSV, Markdown or HTML."
    )


def _read_head(path: Path, limit: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(limit)


def _decode_text(data: bytes, mime_type: str) -> str:
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MediaError(f"The {mime_type} data is not UTF-8 text.") from None


class _TextOfHtml(HTMLParser):
    _SKIPPED = frozenset({"script", "style", "head", "template", "noscript"})
    _BREAKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _TextOfHtml()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError as exc:
        # The standard library's parser asserts on some malformed markup ("<![x[", "<![<"):
        # a client's data, so a 400, never a 500.
        log.info("HTML parsing failed: %r", exc)
        raise MediaError(
            "The text/html data could not be parsed: its markup is malformed."
        ) from None
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _pdf(
    source: bytes | Path, *, max_pages: int, render_pages: bool, max_side: int
) -> DecodedDocument:
    head = source[:5] if isinstance(source, bytes) else _read_head(source, 5)
    if head != b"%PDF-":
        raise MediaError("The data is not a PDF (it does not start with %PDF-).")
    try:
        reader = pypdf.PdfReader(io.BytesIO(source) if isinstance(source, bytes) else source)
        count = len(reader.pages)
        if count > max_pages:
            raise MediaError(f"The PDF has {count} pages; the limit is {max_pages} per request.")
        texts = [(page.extract_text() or "").strip() for page in reader.pages]
    except MediaError:
        raise
    except (PyPdfError, DependencyError) as exc:
        log.info("PDF reading failed: %r", exc)
        raise MediaError(
            "The data could not be read as a PDF: it is corrupt, or encrypted with a password."
        ) from None
    except Exception as exc:  # pypdf raises assorted errors on hostile input
        log.info("PDF reading failed: %r", exc)
        raise MediaError("The data could not be read as a PDF: it is corrupt.") from None
    images: list[DecodedImage | None] = [None] * count
    if render_pages and count:
        images = list(_render(source, count, max_side))
    pages = tuple(DocumentPage(i + 1, text, images[i]) for i, text in enumerate(texts))
    return DecodedDocument(pages)


def _render(source: bytes | Path, count: int, max_side: int) -> list[DecodedImage | None]:
    try:
        pdf = pypdfium2.PdfDocument(source)
    except pypdfium2.PdfiumError as exc:
        log.info("PDF rendering failed: %r", exc)
        raise MediaError("The PDF's pages could not be rendered: it is corrupt.") from None
    out: list[DecodedImage | None] = []
    try:
        for index in range(count):
            page = pdf[index]
            width, height = page.get_size()
            scale = min(2.0, max_side / max(width, height, 1.0))
            image = page.render(scale=scale).to_pil().convert("RGB")
            rgb = image.tobytes()
            out.append(
                DecodedImage(image.width, image.height, rgb, hashlib.sha256(rgb).hexdigest())
            )
    except pypdfium2.PdfiumError as exc:
        # pypdf read the page tree, yet PDFium cannot load a page (found by bench/fuzz_media.py).
        log.info("PDF rendering failed: %r", exc)
        raise MediaError("The PDF's pages could not be rendered: it is corrupt.") from None
    finally:
        pdf.close()
    return out
