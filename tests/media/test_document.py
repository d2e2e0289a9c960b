"""Documents: PDF text page by page (and page images), plain-text types, hostile input."""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import numpy as np
import pypdf
import pytest

from gemserve.media import MediaError
from gemserve.media.document import DecodedDocument, decode_document
from tests.support.media import MEDIA, PAGE_TEXTS, fixture_bytes

PDF = "application/pdf"
RECIPE = MEDIA / "recipe.pdf"


def decode(
    source: bytes | Path,
    mime: str = PDF,
    *,
    max_pages: int = 100,
    max_chars: int = 100_000,
    render: bool = False,
    side: int = 256,
) -> DecodedDocument:
    return decode_document(
        source, mime, max_pages=max_pages, max_chars=max_chars, render_pages=render, max_side=side
    )


def blank_pdf(pages: int, *, password: str | None = None) -> bytes:
    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    if password is not None:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("source", [RECIPE, fixture_bytes("recipe.pdf")], ids=["path", "bytes"])
def test_pdf_text_page_by_page(source: bytes | Path) -> None:
    document = decode(source)
    assert [(p.number, p.text) for p in document.pages] == [(1, PAGE_TEXTS[0]), (2, PAGE_TEXTS[1])]
    assert document.text == PAGE_TEXTS[0] + "\n\n" + PAGE_TEXTS[1]
    assert all(p.image is None for p in document.pages)


def test_pdf_pages_render_as_images_within_max_side() -> None:
    document = decode(RECIPE, render=True, side=256)
    images = [p.image for p in document.pages]
    assert all(image is not None for image in images)
    digests = set()
    for image in images:
        assert image is not None
        assert max(image.width, image.height) == 256
        assert len(image.rgb) == image.width * image.height * 3
        pixels = np.frombuffer(image.rgb, np.uint8)
        # A white page with dark text on it: rendered, not blank or black.
        assert np.median(pixels) == 255
        assert pixels.min() < 160
        assert (pixels < 200).sum() > 100
        digests.add(image.digest)
    assert len(digests) == 2
    assert [p.text for p in document.pages] == list(PAGE_TEXTS)


def test_the_page_cap_is_enforced() -> None:
    with pytest.raises(MediaError, match="The PDF has 2 pages; the limit is 1"):
        decode(RECIPE, max_pages=1)
    assert len(decode(RECIPE, max_pages=2).pages) == 2


def test_a_long_pdf_is_refused_by_its_page_count() -> None:
    with pytest.raises(MediaError, match="has 150 pages; the limit is 100"):
        decode(blank_pdf(150), max_pages=100, render=True)


@pytest.mark.parametrize(
    "data", [b"", b"hello, not a pdf", fixture_bytes("speech.wav"), b"%PD"], ids=repr
)
def test_non_pdf_bytes_declared_pdf_are_refused(data: bytes) -> None:
    with pytest.raises(MediaError, match="not a PDF"):
        decode(data)


@pytest.mark.parametrize("keep", [0.5, 0.2])
def test_a_truncated_pdf_is_refused(keep: float) -> None:
    data = fixture_bytes("recipe.pdf")
    with pytest.raises(MediaError, match="could not be read as a PDF"):
        decode(data[: int(len(data) * keep)], render=True)


def test_garbage_after_the_pdf_signature_is_refused() -> None:
    with pytest.raises(MediaError, match="could not be read as a PDF"):
        decode(b"%PDF-1.7\n" + bytes(range(256)) * 8)


def test_a_password_protected_pdf_is_refused_saying_so() -> None:
    with pytest.raises(MediaError, match="encrypted with a password"):
        decode(blank_pdf(1, password="secret"))


def test_html_becomes_its_visible_text() -> None:
    html = (
        "<html><head><title>Tab title</title><style>p { color: red }</style>"
        "<script>var leaked = 'head script';</script></head><body>"
        "<h1>Opening  hours</h1><p>Mon&ndash;Fri &amp; Sat</p>"
        "<script>alert('body script')</script><noscript>enable js</noscript>"
        "<ul><li>one</li><li>two</li></ul></body></html>"
    )
    text = decode(html.encode(), "text/html").text
    assert text == "Opening hours\nMon–Fri & Sat\none\ntwo"
    for hidden in ("Tab title", "color", "script", "alert", "enable js"):
        assert hidden not in text


@pytest.mark.parametrize("mime", ["text/plain", "text/csv", "text/markdown"])
def test_plain_text_types_pass_through_exactly(mime: str) -> None:
    body = "name,city\nZoë,Zürich\n# not a heading <b>kept</b>\n"
    document = decode(body.encode(), mime)
    assert document.text == body
    assert [p.number for p in document.pages] == [1]


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (codecs.BOM_UTF8 + "héllo".encode(), "héllo"),
        ("héllo".encode("utf-16"), "héllo"),
        (codecs.BOM_UTF16_BE + "héllo".encode("utf-16-be"), "héllo"),
    ],
)
def test_byte_order_marks_choose_the_encoding(data: bytes, text: str) -> None:
    assert decode(data, "text/plain").text == text


@pytest.mark.parametrize("mime", ["text/plain", "text/csv", "text/html"])
def test_text_that_is_not_utf8_is_refused(mime: str) -> None:
    with pytest.raises(MediaError, match=f"The {mime} data is not UTF-8 text"):
        decode("Café crème".encode("latin-1"), mime)


def test_text_over_the_character_limit_is_refused() -> None:
    with pytest.raises(MediaError, match="longer than the limit of 10 characters"):
        decode(b"x" * 41, "text/plain", max_chars=10)
    assert decode(b"x" * 10, "text/plain", max_chars=10).text == "x" * 10


def test_a_text_file_path_is_read_under_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Notes\nbuy milk\n")
    assert decode(path, "text/markdown").text == "# Notes\nbuy milk\n"
    big = tmp_path / "big.txt"
    big.write_bytes(b"y" * 1000)
    with pytest.raises(MediaError, match="longer than the limit"):
        decode(big, "text/plain", max_chars=100)


@pytest.mark.parametrize(
    "mime",
    ["application/msword", "application/vnd.oasis.opendocument.text", "image/png"],
)
def test_unsupported_document_types_are_refused_by_name(mime: str) -> None:
    with pytest.raises(MediaError, match=f"'{mime}' documents are not supported"):
        decode(b"whatever", mime)
