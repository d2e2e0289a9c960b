"""Media parts over HTTP, in-process: loaded inline, from the Files API or an allow-listed URL,
decoded under the caps and rendered for the model; every refusal a 400 naming the part
(service/media.py, service/fetch.py). Scripted engines say which modalities a model takes;
a scripted transcriber stands in for Whisper."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from pypdf import PdfWriter

from gemserve.engine import ImageInput
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi, ScriptedTranscriber
from tests.support.media import (
    PAGE_TEXTS,
    encode,
    fixture_bytes,
    noise,
    sine_wav,
    video_only_mp4,
)
from tests.support.origin import serve_origin
from tests.support.scripted import ScriptedEngine
from tests.support.server import free_port

SEER = {"id": "seer", "source": "/nowhere/seer.gguf", "mmproj": "/nowhere/seer-mmproj.gguf"}
HEARER = {"id": "hearer", "source": "/nowhere/hearer.gguf", "mmproj": "/nowhere/hearer.gguf"}
WHERE = "input[0].content[1]"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def with_part(part: dict[str, Any], text: str = "What is this?") -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}, part]


def document(data: bytes, mime: str | None = "text/plain") -> dict[str, Any]:
    part: dict[str, Any] = {"type": "document", "data": b64(data)}
    if mime is not None:
        part["mime_type"] = mime
    return part


def png(width: int = 32, height: int = 24) -> bytes:
    return encode(Image.fromarray(noise(width, height)), "PNG")


def blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
async def models(make_api: MakeApi) -> InProcessApi:
    """The default text model, a vision model ("seer") and one that hears ("hearer")."""
    return await make_api(
        models=[SEER, HEARER],
        engines={
            "seer": ScriptedEngine(model_id="seer", modalities=frozenset({"text", "image"})),
            "hearer": ScriptedEngine(model_id="hearer", modalities=frozenset({"text", "audio"})),
        },
    )


# ----- rendered for the model -----------------------------------------------------------------


async def test_an_image_reaches_a_vision_model_as_pixels(models: InProcessApi) -> None:
    part = {"type": "image", "data": b64(png(32, 24)), "mime_type": "image/png"}
    response = await models.create(model="seer", input=with_part(part))
    assert response.status_code == 200, response.text
    (message,) = models.engines["seer"].requests[0].messages
    (image,) = message.media
    assert isinstance(image, ImageInput)
    assert (image.width, image.height) == (32, 24)
    usage = response.json()["usage"]
    assert {m["modality"] for m in usage["input_tokens_by_modality"]} >= {"text"}


async def test_a_text_document_becomes_its_text(api: InProcessApi) -> None:
    part = document(b"The secret is cardamom.")
    response = await api.create(input=with_part(part))
    assert response.status_code == 200, response.text
    (message,) = api.engine.requests[0].messages
    assert "The secret is cardamom." in message.text
    assert message.media == ()


async def test_a_pdf_becomes_its_pages_text(api: InProcessApi) -> None:
    part = document(fixture_bytes("recipe.pdf"), "application/pdf")
    assert (await api.create(input=with_part(part))).status_code == 200
    text = api.engine.requests[0].messages[0].text
    assert all(page in text for page in PAGE_TEXTS)
    assert "[Page 2]" in text


async def test_audio_for_a_text_model_is_transcribed_once(make_api: MakeApi) -> None:
    api = await make_api(transcriber=ScriptedTranscriber("send the blue package"))
    part = {"type": "audio", "data": b64(sine_wav(rate=16000, channels=1, seconds=1, hz=440))}
    part["mime_type"] = "audio/wav"
    first = await api.create(input=with_part(part))
    assert first.status_code == 200, first.text
    text = api.engine.requests[0].messages[0].text
    assert "transcribed by the server" in text
    assert "send the blue package" in text
    # The conversation's earlier audio is not transcribed again.
    follow = await api.create(input="And?", previous_interaction_id=first.json()["id"])
    assert follow.status_code == 200, follow.text
    assert api.transcriber is not None
    assert api.transcriber.calls == 1


async def test_audio_while_speech_recognition_loads_is_503(make_api: MakeApi) -> None:
    api = await make_api(transcriber=ScriptedTranscriber(loaded=False))
    part = {"type": "audio", "data": b64(sine_wav(rate=8000, channels=1, seconds=1, hz=440))}
    part["mime_type"] = "audio/wav"
    response = await api.create(input=with_part(part))
    assert_envelope(response, 503, "UNAVAILABLE", "Speech recognition is still loading")
    assert response.headers["retry-after"] == "1"
    assert api.engine.requests == []


async def test_an_uploaded_file_is_used_by_its_name_or_its_uri(api: InProcessApi) -> None:
    file = await api.upload(b"Bake for forty minutes.", display_name="recipe.txt")
    by_name = {"type": "document", "uri": file["name"]}
    by_uri = {"type": "document", "uri": file["uri"], "mime_type": "text/plain"}
    for part in (by_name, by_uri):
        response = await api.create(input=with_part(part))
        assert response.status_code == 200, response.text
        text = api.engine.requests[-1].messages[0].text
        assert "Bake for forty minutes." in text
        assert "recipe.txt" in text


# ----- refused, naming the part ---------------------------------------------------------------


async def test_an_image_for_a_text_model_names_the_models_that_can(models: InProcessApi) -> None:
    part = {"type": "image", "data": b64(png()), "mime_type": "image/png"}
    response = await models.create(input=with_part(part))
    assert_envelope(
        response,
        400,
        "INVALID_ARGUMENT",
        f"Invalid value at '{WHERE}'",
        "model 'smollm2-135m-instruct' cannot take image input",
        "models that can: seer.",
    )
    assert models.engine.requests == []


async def test_when_no_model_can_take_it_the_message_says_so(api: InProcessApi) -> None:
    image = {"type": "image", "data": b64(png()), "mime_type": "image/png"}
    assert_envelope(
        await api.create(input=with_part(image)),
        400,
        "INVALID_ARGUMENT",
        "no model served here can (see the README",
    )
    audio = {"type": "audio", "data": "AAAA", "mime_type": "audio/wav"}
    assert_envelope(
        await api.create(input=with_part(audio)),
        400,
        "INVALID_ARGUMENT",
        "cannot take audio input",
        "speech recognition is switched off",
    )


async def test_more_media_parts_than_the_limit_counting_the_history(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_media_parts": 1})
    first = await api.create(input=with_part(document(b"one")))
    assert first.status_code == 200, first.text
    response = await api.create(
        input=with_part(document(b"two")), previous_interaction_id=first.json()["id"]
    )
    assert_envelope(
        response, 400, "INVALID_ARGUMENT", "more than 1 media parts", "history included"
    )


@pytest.mark.parametrize(
    ("part", "fragments"),
    [
        (
            {"type": "document", "mime_type": "text/plain"},
            (f"Invalid value at '{WHERE}'", "needs exactly one of 'data' (base64) or 'uri'"),
        ),
        (
            {"type": "document", "data": "aGk=", "uri": "files/abc", "mime_type": "text/plain"},
            (f"Invalid value at '{WHERE}'", "needs exactly one of"),
        ),
        (document(b"hi", mime=None), (f"Missing required field '{WHERE}.mime_type'",)),
        (
            {"type": "document", "data": "@@ not base64 @@", "mime_type": "text/plain"},
            (f"Invalid value at '{WHERE}.data'", "not valid base64"),
        ),
        (
            {"type": "document", "data": "AAAA", "mime_type": "application/msword"},
            (f"Invalid value at '{WHERE}.mime_type'", "PDF, plain text"),
        ),
        (
            document(b"%PDF-1.7 this is not a PDF", "application/pdf"),
            (f"Invalid value at '{WHERE}'",),
        ),
        (
            {"type": "document", "uri": "files/Not_A_Name!", "mime_type": "text/plain"},
            (f"Invalid value at '{WHERE}.uri'", "'files/Not_A_Name!' names no file"),
        ),
        (
            {"type": "document", "uri": "files/no-such-file", "mime_type": "text/plain"},
            (f"Invalid value at '{WHERE}.uri'", "file 'files/no-such-file' was not found"),
        ),
        (
            {"type": "document", "uri": "https://example.com/a.txt", "mime_type": "text/plain"},
            (f"Invalid value at '{WHERE}.uri'", "does not fetch URLs from this host"),
        ),
    ],
)
async def test_a_bad_part_is_400_naming_it(
    api: InProcessApi, part: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    assert_envelope(await api.create(input=with_part(part)), 400, "INVALID_ARGUMENT", *fragments)
    assert api.engine.requests == []


async def test_a_mime_type_of_another_kind_is_400(models: InProcessApi) -> None:
    part = {"type": "audio", "data": "AAAA", "mime_type": "image/png"}
    response = await models.create(model="hearer", input=with_part(part))
    assert_envelope(
        response,
        400,
        "INVALID_ARGUMENT",
        f"Invalid value at '{WHERE}.mime_type'",
        "'image/png' is not an audio type",
    )


async def test_an_image_that_does_not_decode_is_400(models: InProcessApi) -> None:
    part = {"type": "image", "data": b64(b"\x89PNG\r\n\x1a\nnot really"), "mime_type": "image/png"}
    response = await models.create(model="seer", input=with_part(part))
    assert_envelope(response, 400, "INVALID_ARGUMENT", f"Invalid value at '{WHERE}': ")


async def test_a_video_without_sound_for_a_model_that_cannot_see_is_400(
    models: InProcessApi,
) -> None:
    part = {"type": "video", "data": b64(video_only_mp4()), "mime_type": "video/mp4"}
    response = await models.create(model="hearer", input=with_part(part))
    assert_envelope(response, 400, "INVALID_ARGUMENT", "the video has no sound track", "'hearer'")


async def test_a_pdf_without_text_for_a_model_that_cannot_see_is_400(api: InProcessApi) -> None:
    response = await api.create(input=with_part(document(blank_pdf(), "application/pdf")))
    assert_envelope(
        response, 400, "INVALID_ARGUMENT", "no text to extract", "cannot read page images"
    )


# ----- fetched from an allow-listed host (service/fetch.py) -----------------------------------

BODY = b"Fetched text. " * 300  # 4200 bytes


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """An HTTP server on localhost (a private address: fetched only when the operator allows)."""
    files = {"/doc.txt": ("text/plain; charset=utf-8", BODY), "/untyped": (None, BODY)}
    with serve_origin(files, moved_to="/doc.txt") as url:
        yield url


def fetched(url: str, mime: str | None = None) -> list[dict[str, Any]]:
    part: dict[str, Any] = {"type": "document", "uri": url}
    if mime is not None:
        part["mime_type"] = mime
    return with_part(part)


async def test_an_allow_listed_url_is_fetched(make_api: MakeApi, origin: str) -> None:
    api = await make_api(media_fetch_hosts=["localhost"], media_fetch_private=True)
    response = await api.create(input=fetched(f"{origin}/doc.txt"))
    assert response.status_code == 200, response.text
    assert "Fetched text." in api.engine.requests[0].messages[0].text


async def test_fetch_refusals_are_400_naming_the_part(make_api: MakeApi, origin: str) -> None:
    api = await make_api(
        media_fetch_hosts=["localhost", "no-such-host.invalid"],
        media_fetch_private=True,
        limits={"max_body_bytes": 4096},
    )
    closed = f"http://localhost:{free_port()}/doc.txt"
    port = origin.rsplit(":", 1)[1]
    cases = [
        (fetched(f"http://user:pw@localhost:{port}/doc.txt"), "credentials in URLs are refused"),
        (fetched(f"{origin}/moved"), "redirects are not followed"),
        (fetched(f"{origin}/missing", "text/plain"), "the URL answered HTTP 404"),
        (fetched(f"{origin}/doc.txt"), "larger than 4096 bytes"),
        (fetched(closed, "text/plain"), "the URL could not be fetched"),
        (fetched("http://no-such-host.invalid/a.txt", "text/plain"), "host does not resolve"),
    ]
    for parts, fragment in cases:
        response = await api.create(input=parts)
        assert_envelope(response, 400, "INVALID_ARGUMENT", f"'{WHERE}.uri'", fragment)
    assert api.engine.requests == []


async def test_a_host_that_resolves_to_nothing_is_400(
    make_api: MakeApi, origin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getaddrinfo raises rather than answer nothing; should it ever answer nothing, the URL
    is refused all the same."""
    api = await make_api(media_fetch_hosts=["localhost"], media_fetch_private=True)

    async def nothing(*_args: Any, **_kwargs: Any) -> list[Any]:
        return []

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", nothing)
    response = await api.create(input=fetched(f"{origin}/doc.txt"))
    assert_envelope(response, 400, "INVALID_ARGUMENT", "host does not resolve")


async def test_a_fetched_body_without_a_type_needs_the_parts_mime_type(
    make_api: MakeApi, origin: str
) -> None:
    api = await make_api(media_fetch_hosts=["localhost"], media_fetch_private=True)
    response = await api.create(input=fetched(f"{origin}/untyped"))
    assert_envelope(
        response, 400, "INVALID_ARGUMENT", f"Missing required field '{WHERE}.mime_type'"
    )
    typed = await api.create(input=fetched(f"{origin}/untyped", "text/plain"))
    assert typed.status_code == 200, typed.text


async def test_a_private_address_is_not_fetched_unless_allowed(
    make_api: MakeApi, origin: str
) -> None:
    api = await make_api(media_fetch_hosts=["localhost"])
    response = await api.create(input=fetched(f"{origin}/doc.txt"))
    assert_envelope(response, 400, "INVALID_ARGUMENT", "resolves to a private or reserved address")
