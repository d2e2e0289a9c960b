"""MediaPipeline: resolving parts (inline data or Files API uris), caps, rendering per model.

A real FileService (SQLite and a local blob store in tmp_path) and the real decoders; only the
speech recogniser is faked, so that what reaches the prompt is known exactly.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pypdf
import pytest
from PIL import Image

from gemserve.config import Limits
from gemserve.engine import (
    MEDIA_PLACEHOLDER,
    AudioInput,
    Finished,
    FinishReason,
    ModelCapabilities,
)
from gemserve.errors import InvalidArgument, Unavailable
from gemserve.media.transcribe import Transcriber
from gemserve.protocol.interactions import (
    MediaContent,
    ModelOutputStep,
    TextContent,
    UserInputStep,
)
from gemserve.service.files import FileService
from gemserve.service.interactions.turns import conversation_items
from gemserve.service.media import MediaPipeline, PreparedInput, file_name_from_uri
from gemserve.service.turn_input import Message
from gemserve.service.usage import InputAccounting
from gemserve.store import SqlStore
from gemserve.store.blobs import LocalBlobStore
from gemserve.store.files import FileRecord
from gemserve.store.sql_files import SqlFileStore
from tests.support.media import (
    PAGE_TEXTS,
    SENTENCE,
    encode,
    fixture_bytes,
    noise,
    video_only_mp4,
)

TENANT = "tenant-a"
OWN_HOST = "gemserve.example:8080"
TEXT = ModelCapabilities("text-model", 4096, 1024)
VISION = ModelCapabilities("vision-model", 4096, 1024, frozenset({"text", "image"}))
OTHER_VISION = ModelCapabilities("another-vision", 4096, 1024, frozenset({"text", "image"}))
SERVED = {"text-model": TEXT, "vision-model": VISION, "another-vision": OTHER_VISION}

PIXELS = noise(40, 30, seed=5)
PNG = encode(Image.fromarray(PIXELS), "PNG")
WAV = fixture_bytes("speech.wav")
MP4 = fixture_bytes("clip.mp4")
PDF = fixture_bytes("recipe.pdf")


class FakeTranscriber(Transcriber):
    """Returns a fixed transcript and records what it was given (no Whisper needed)."""

    def __init__(self, text: str = SENTENCE, *, ready: bool = True) -> None:
        self.text = text
        self.loaded = ready
        self.calls: list[int] = []

    @property
    def ready(self) -> bool:
        return self.loaded

    async def transcribe(self, samples: npt.NDArray[np.float32]) -> str:
        self.calls.append(len(samples))
        return self.text


@pytest.fixture
def files(store: SqlStore, tmp_path: Path) -> FileService:
    blobs = LocalBlobStore(tmp_path / "files")
    blobs.start()
    return FileService(SqlFileStore(store), blobs, Limits())


async def upload(
    files: FileService,
    data: bytes,
    mime: str,
    *,
    tenant: str = TENANT,
    display_name: str | None = None,
) -> FileRecord:
    """A file stored the way the Files API stores one: a session, then one finalizing chunk."""
    meta: dict[str, Any] = {"mime_type": mime}
    if display_name is not None:
        meta["display_name"] = display_name
    token = await files.start_upload(
        tenant, {"file": meta}, header_size=str(len(data)), header_mime_type=None
    )

    async def body() -> AsyncIterator[bytes]:
        yield data

    outcome = await files.upload_chunk(token, 0, body(), finalize=True)
    assert outcome.file is not None
    return outcome.file


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def text(value: str) -> TextContent:
    return TextContent(type="text", text=value)


def inline(kind: str, data: bytes, mime: str | None) -> MediaContent:
    return MediaContent(type=kind, data=b64(data), mime_type=mime)  # type: ignore[arg-type]


def by_uri(kind: str, uri: str, mime: str | None = None) -> MediaContent:
    return MediaContent(type=kind, uri=uri, mime_type=mime)  # type: ignore[arg-type]


def user(*parts: TextContent | MediaContent) -> UserInputStep:
    return UserInputStep(type="user_input", content=list(parts))


def model(*parts: TextContent | MediaContent) -> ModelOutputStep:
    return ModelOutputStep(type="model_output", content=list(parts))


async def prepare(
    pipeline: MediaPipeline,
    *steps: UserInputStep | ModelOutputStep,
    caps: ModelCapabilities = VISION,
    others: Mapping[str, ModelCapabilities] = SERVED,
    tenant: str = TENANT,
) -> PreparedInput:
    # Wire steps through the Interactions adapter, so parts are named as a client named them.
    messages = [item for item in conversation_items(steps) if isinstance(item, Message)]
    return await pipeline.prepare(
        messages, tenant=tenant, model=caps, others=others, own_hosts=frozenset({OWN_HOST})
    )


async def refused(pipeline: MediaPipeline, *steps: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidArgument) as info:
        await prepare(pipeline, *steps, **kwargs)
    return info.value.message


def pipeline_of(
    files: FileService, transcriber: Transcriber | None = None, **limits: Any
) -> MediaPipeline:
    return MediaPipeline(files, Limits(**limits), transcriber)


def placeholders_match(prepared: PreparedInput) -> None:
    """What the engine relies on: one placeholder per image, in every part."""
    for step in prepared.steps:
        for part in step.parts:
            assert part.text.count(MEDIA_PLACEHOLDER) == len(part.media), part.text


# ----- capabilities ---------------------------------------------------------------------------


async def test_capability_error_names_the_part_the_model_and_the_models_that_can(
    files: FileService,
) -> None:
    message = await refused(
        pipeline_of(files),
        user(text("Hi")),
        model(text("Hello")),
        user(text("Look"), text("at this"), inline("image", PNG, "image/png")),
        caps=TEXT,
    )
    assert message == (
        "Invalid value at 'input[2].content[2]': model 'text-model' cannot take image input; "
        "models that can: another-vision, vision-model."
    )


async def test_capability_error_says_when_no_served_model_can(files: FileService) -> None:
    message = await refused(
        pipeline_of(files), user(inline("image", PNG, "image/png")), caps=TEXT, others={"t": TEXT}
    )
    assert "model 'text-model' cannot take image input" in message
    assert "no model served here can" in message


async def test_capability_is_checked_before_the_data_is_even_read(files: FileService) -> None:
    bad = MediaContent(type="image", data="@@not base64@@", mime_type="image/png")
    message = await refused(pipeline_of(files), user(bad), caps=TEXT)
    assert "cannot take image input" in message


async def test_without_a_transcriber_audio_is_a_capability_error(files: FileService) -> None:
    message = await refused(pipeline_of(files), user(inline("audio", WAV, "audio/wav")))
    assert message.startswith(
        "Invalid value at 'input[0].content[0]': model 'vision-model' cannot take audio input;"
    )
    assert "no model served here can" in message


async def test_without_a_transcriber_video_needs_a_vision_model(files: FileService) -> None:
    pipeline = pipeline_of(files)
    message = await refused(pipeline, user(inline("video", MP4, "video/mp4")), caps=TEXT)
    assert "model 'text-model' cannot take video input; models that can: " in message
    assert "another-vision, vision-model." in message
    prepared = await prepare(pipeline, user(inline("video", MP4, "video/mp4")))
    assert prepared.media_modalities == ["video"] * 4
    assert prepared.derived_text == []  # frames only: no sound without a recogniser


async def test_speech_recognition_still_loading_is_unavailable(files: FileService) -> None:
    pipeline = pipeline_of(files, FakeTranscriber(ready=False))
    with pytest.raises(Unavailable, match="still loading"):
        await prepare(pipeline, user(inline("audio", WAV, "audio/wav")))


# ----- loading a part -------------------------------------------------------------------------


async def test_inline_data_without_a_mime_type_is_refused(files: FileService) -> None:
    message = await refused(pipeline_of(files), user(text("x"), inline("image", PNG, None)))
    assert message == "Missing required field 'input[0].content[1].mime_type'."


@pytest.mark.parametrize("data", ["@@@@", "iVBORw0KGgo", "aGVsbG8=\n!"])
async def test_invalid_base64_is_refused(files: FileService, data: str) -> None:
    part = MediaContent(type="image", data=data, mime_type="image/png")
    message = await refused(pipeline_of(files), user(part))
    assert message == "Invalid value at 'input[0].content[0].data': not valid base64."


@pytest.mark.parametrize(
    "part",
    [
        MediaContent(type="image", data=b64(PNG), uri="files/abc", mime_type="image/png"),
        MediaContent(type="image", mime_type="image/png"),
    ],
    ids=["both", "neither"],
)
async def test_a_part_needs_exactly_one_of_data_and_uri(
    files: FileService, part: MediaContent
) -> None:
    message = await refused(pipeline_of(files), user(part))
    assert "needs exactly one of 'data' (base64) or 'uri'" in message
    assert "input[0].content[0]" in message


@pytest.mark.parametrize(
    "uri",
    [
        "https://example.com/v1beta/files/abc",
        "https://example.com/cat.png",
        "http://169.254.169.254/latest/meta-data",
        "gs://bucket/cat.png",
        "file:///etc/passwd",
    ],
)
async def test_remote_urls_are_never_fetched(files: FileService, uri: str) -> None:
    message = await refused(pipeline_of(files), user(by_uri("image", uri, "image/png")))
    assert "input[0].content[0].uri" in message
    assert "this server does not fetch" in message
    assert "upload the file with the Files API" in message


async def test_an_unknown_file_is_a_400_naming_it(files: FileService) -> None:
    message = await refused(pipeline_of(files), user(by_uri("image", "files/nope", "image/png")))
    assert message.startswith(
        "Invalid value at 'input[0].content[0].uri': file 'files/nope' was not found"
    )


@pytest.mark.parametrize("uri", ["files/", "files/UPPER", "files/a/b", "files/-dash"])
async def test_a_uri_that_names_no_file_is_refused(files: FileService, uri: str) -> None:
    message = await refused(pipeline_of(files), user(by_uri("image", uri, "image/png")))
    assert "names no file" in message


@pytest.mark.parametrize(
    "template",
    [
        "files/{name}",
        "http://" + OWN_HOST + "/v1beta/files/{name}",
        "https://generativelanguage.googleapis.com/v1beta/files/{name}",
        "http://127.0.0.1:9999/v1/files/{name}",
    ],
)
async def test_file_uris_resolve_to_the_tenants_file(files: FileService, template: str) -> None:
    record = await upload(files, PNG, "image/png")
    prepared = await prepare(
        pipeline_of(files), user(by_uri("image", template.format(name=record.name)))
    )
    [part] = prepared.steps[0].parts
    assert part.text == MEDIA_PLACEHOLDER
    [image] = part.media
    assert (image.width, image.height) == (40, 30)
    assert image.rgb == PIXELS.tobytes()


async def test_another_tenants_file_is_not_found(files: FileService) -> None:
    record = await upload(files, PNG, "image/png", tenant="tenant-b")
    pipeline = pipeline_of(files)
    mine = await refused(pipeline, user(by_uri("image", f"files/{record.name}")))
    unknown = await refused(pipeline, user(by_uri("image", "files/zzzzzzzzzzzzzzzz")))
    assert mine == unknown.replace("zzzzzzzzzzzzzzzz", record.name)  # nothing leaks
    prepared = await prepare(
        pipeline, user(by_uri("image", f"files/{record.name}")), tenant="tenant-b"
    )
    assert len(prepared.steps[0].parts[0].media) == 1


async def test_a_deleted_file_is_not_found(files: FileService) -> None:
    record = await upload(files, PNG, "image/png")
    await files.delete(TENANT, record.name)
    message = await refused(pipeline_of(files), user(by_uri("image", f"files/{record.name}")))
    assert "was not found" in message


async def test_the_declared_mime_type_must_match_the_part_kind(files: FileService) -> None:
    message = await refused(pipeline_of(files), user(inline("image", PNG, "audio/wav")))
    assert message.startswith("Invalid value at 'input[0].content[0].mime_type': 'audio/wav'")
    record = await upload(files, PNG, "image/png")
    message = await refused(pipeline_of(files), user(by_uri("document", f"files/{record.name}")))
    assert "'image/png' is not a document type" in message


async def test_a_uri_part_may_override_the_stored_mime_type(files: FileService) -> None:
    record = await upload(files, PNG, "application/octet-stream")
    uri = f"files/{record.name}"
    prepared = await prepare(pipeline_of(files), user(by_uri("image", uri, "image/png")))
    assert len(prepared.steps[0].parts[0].media) == 1
    message = await refused(pipeline_of(files), user(by_uri("image", uri, "image/jpeg")))
    assert "The data is PNG, but its MIME type says image/jpeg." in message


async def test_decoder_errors_name_the_part(files: FileService) -> None:
    message = await refused(
        pipeline_of(files), user(text("x"), inline("image", PNG[:100], "image/png"))
    )
    assert message.startswith("Invalid value at 'input[0].content[1]': The data could not be")


# ----- budgets across parts -------------------------------------------------------------------


async def test_max_media_parts_counts_every_step(files: FileService) -> None:
    pipeline = pipeline_of(files, max_media_parts=2)
    image = inline("image", PNG, "image/png")
    assert len((await prepare(pipeline, user(image), model(text("ok")), user(image))).steps) == 3
    message = await refused(pipeline, user(image), model(image), user(text("and"), image))
    assert "more than 2 media parts" in message


async def test_audio_seconds_are_summed_across_parts(files: FileService) -> None:
    speech = inline("audio", WAV, "audio/wav")
    ok = pipeline_of(files, FakeTranscriber(), max_audio_seconds=8.0)
    assert len((await prepare(ok, user(speech, speech))).derived_text) == 2
    tight = pipeline_of(files, FakeTranscriber(), max_audio_seconds=7.0)
    message = await refused(tight, user(speech, text("and"), speech))
    assert message.startswith("Invalid value at 'input[0].content[2]': The audio is")
    assert "seconds long" in message


async def test_video_seconds_are_summed_across_parts(files: FileService) -> None:
    clip = inline("video", MP4, "video/mp4")
    assert (
        len(
            (
                await prepare(pipeline_of(files, max_video_seconds=8.0), user(clip, clip))
            ).media_modalities
        )
        == 8
    )
    message = await refused(pipeline_of(files, max_video_seconds=6.0), user(clip, clip))
    assert message.startswith("Invalid value at 'input[0].content[1]': The video is 4.0 seconds")


async def test_document_pages_are_summed_across_parts(files: FileService) -> None:
    doc = inline("document", PDF, "application/pdf")
    await prepare(pipeline_of(files, max_document_pages=4), user(doc, doc), caps=TEXT)
    message = await refused(pipeline_of(files, max_document_pages=3), user(doc, doc), caps=TEXT)
    assert message == (
        "Invalid value at 'input[0].content[1]': The PDF has 2 pages; the limit is 1 per request."
    )


async def test_the_image_pixel_cap_applies(files: FileService) -> None:
    message = await refused(
        pipeline_of(files, max_image_pixels=1000), user(inline("image", PNG, "image/png"))
    )
    assert "40x30 = 1200 pixels; the limit is 1000" in message


async def test_the_image_pixel_cap_applies_to_video_frames(files: FileService) -> None:
    clip = inline("video", MP4, "video/mp4")
    message = await refused(pipeline_of(files, max_image_pixels=12_000), user(clip))
    assert "frames are 128x96 = 12288 pixels; the limit is 12000 pixels per frame" in message


# ----- rendering ------------------------------------------------------------------------------


async def test_audio_becomes_a_delimited_transcript_cached_by_content(files: FileService) -> None:
    whisper = FakeTranscriber()
    pipeline = pipeline_of(files, whisper)
    record = await upload(files, WAV, "audio/wav", display_name="Voicemail")
    prepared = await prepare(
        pipeline,
        user(inline("audio", WAV, "audio/wav"), by_uri("audio", f"files/{record.name}")),
        caps=TEXT,
    )
    first, second = (part.text for part in prepared.steps[0].parts)
    assert first.startswith("[Audio 'audio' (audio/wav, 3.9 s), transcribed by the server]\n")
    assert second.startswith("[Audio 'Voicemail' (audio/wav, 3.9 s), transcribed by the server]")
    for rendered in (first, second):
        assert SENTENCE in rendered
        assert rendered.endswith("[End of audio transcript]")
    assert prepared.derived_text == [("audio", first), ("audio", second)]
    assert prepared.media_modalities == []
    # 16 kHz samples reached the recogniser; the same bytes again are not transcribed again.
    assert whisper.calls == [pytest.approx(62042, abs=800)] * 2
    await prepare(pipeline, user(inline("audio", WAV, "audio/wav")), caps=TEXT)
    assert len(whisper.calls) == 2


async def test_video_on_a_vision_model_is_timed_frames_and_the_transcript(
    files: FileService,
) -> None:
    prepared = await prepare(
        pipeline_of(files, FakeTranscriber()),
        user(text("What?"), inline("video", MP4, "video/mp4")),
    )
    part = prepared.steps[0].parts[1]
    lines = part.text.splitlines()
    assert lines[0] == "[Video 'video' (video/mp4, 4.0 s)]"
    assert lines[1:5] == [f"[00:0{s}] {MEDIA_PLACEHOLDER}" for s in range(4)]
    assert SENTENCE in part.text
    assert lines[-1] == "[End of video]"
    assert [(i.width, i.height) for i in part.media] == [(128, 96)] * 4
    red = np.frombuffer(part.media[0].rgb, np.uint8).reshape(-1, 3).mean(axis=0)
    assert red[0] > 240
    assert red[1:].max() < 15
    assert prepared.media_modalities == ["video"] * 4
    assert [m for m, _ in prepared.derived_text] == ["video"]
    placeholders_match(prepared)


async def test_video_on_a_text_model_is_its_transcript(files: FileService) -> None:
    whisper = FakeTranscriber()
    pipeline = pipeline_of(files, whisper)
    prepared = await prepare(pipeline, user(inline("video", MP4, "video/mp4")), caps=TEXT)
    [part] = prepared.steps[0].parts
    assert part.media == ()
    assert "cannot see video frames" in part.text
    assert SENTENCE in part.text
    assert MEDIA_PLACEHOLDER not in part.text
    assert len(whisper.calls) == 1
    silent = inline("video", video_only_mp4(), "video/mp4")
    message = await refused(pipeline, user(silent), caps=TEXT)
    assert "has no sound track, and model 'text-model' cannot see its frames" in message


async def test_a_pdf_is_its_page_texts_and_for_vision_models_page_images(
    files: FileService,
) -> None:
    pipeline = pipeline_of(files)
    doc = inline("document", PDF, "application/pdf")
    for_text = await prepare(pipeline, user(text("Secret?"), doc), caps=TEXT)
    part = for_text.steps[0].parts[1]
    assert part.text == (
        "[Document 'document' (application/pdf, 2 pages)]\n"
        f"[Page 1]\n{PAGE_TEXTS[0]}\n[Page 2]\n{PAGE_TEXTS[1]}\n[End of document]"
    )
    assert part.media == ()
    assert for_text.derived_text == [("document", PAGE_TEXTS[0]), ("document", PAGE_TEXTS[1])]
    for_vision = await prepare(pipeline, user(doc))
    part = for_vision.steps[0].parts[0]
    assert len(part.media) == 2
    assert for_vision.media_modalities == ["document", "document"]
    assert PAGE_TEXTS[1] in part.text
    placeholders_match(for_vision)


async def test_a_pdf_without_text_needs_a_vision_model(files: FileService) -> None:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=100, height=100)
    out = io.BytesIO()
    writer.write(out)
    scanned = inline("document", out.getvalue(), "application/pdf")
    message = await refused(pipeline_of(files), user(text("x"), scanned), caps=TEXT)
    assert "no text to extract" in message
    prepared = await prepare(pipeline_of(files), user(text("x"), scanned))
    assert prepared.media_modalities == ["document"]


async def test_modalities_follow_prompt_order(files: FileService) -> None:
    prepared = await prepare(
        pipeline_of(files),
        user(
            inline("document", PDF, "application/pdf"),
            inline("image", PNG, "image/png"),
            inline("video", MP4, "video/mp4"),
        ),
        others={},
    )
    assert prepared.media_modalities == ["document"] * 2 + ["image"] + ["video"] * 4
    images = [i for step in prepared.steps for part in step.parts for i in part.media]
    assert images[2].rgb == PIXELS.tobytes()


# ----- placeholders ---------------------------------------------------------------------------


async def test_placeholders_in_user_and_model_text_are_stripped(files: FileService) -> None:
    prepared = await prepare(
        pipeline_of(files),
        user(text(f"look {MEDIA_PLACEHOLDER}here"), inline("image", PNG, "image/png")),
        model(text(f"I see{MEDIA_PLACEHOLDER}.")),
    )
    user_parts, model_parts = (step.parts for step in prepared.steps)
    assert user_parts[0].text == "look here"
    assert model_parts[0].text == "I see."
    assert user_parts[1].text == MEDIA_PLACEHOLDER
    placeholders_match(prepared)


async def test_placeholders_in_derived_text_are_stripped(files: FileService) -> None:
    whisper = FakeTranscriber(f"say {MEDIA_PLACEHOLDER} now")
    note = f"Page text with {MEDIA_PLACEHOLDER} inside".encode()
    record = await upload(files, WAV, "audio/wav", display_name=f"a{MEDIA_PLACEHOLDER}b")
    prepared = await prepare(
        pipeline_of(files, whisper),
        user(
            inline("document", note, "text/plain"),
            by_uri("audio", f"files/{record.name}"),
            inline("video", MP4, "video/mp4"),
        ),
    )
    assert MEDIA_PLACEHOLDER not in prepared.steps[0].parts[0].text
    assert MEDIA_PLACEHOLDER not in prepared.steps[0].parts[1].text
    assert "say  now" in prepared.steps[0].parts[2].text
    assert all(MEDIA_PLACEHOLDER not in t for _, t in prepared.derived_text)
    placeholders_match(prepared)


@pytest.mark.parametrize("vector", ["video mime_type", "document display_name"])
async def test_client_labels_cannot_place_an_image(files: FileService, vector: str) -> None:
    if vector == "video mime_type":
        part = inline("video", MP4, f"video/{MEDIA_PLACEHOLDER}")
    else:
        record = await upload(files, PDF, "application/pdf", display_name=f"x{MEDIA_PLACEHOLDER}y")
        part = by_uri("document", f"files/{record.name}")
    placeholders_match(await prepare(pipeline_of(files), user(part)))


# ----- file uris ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("files/abc123", "abc123"),
        ("files/", ""),
        ("https://generativelanguage.googleapis.com/v1beta/files/abc123", "abc123"),
        ("https://GenerativeLanguage.googleapis.com/v1/files/abc123?alt=media", "abc123"),
        ("http://" + OWN_HOST + "/v1beta/files/abc123", "abc123"),
        ("http://" + OWN_HOST + "/prefix/v1alpha/files/abc123", "abc123"),
        ("http://localhost:8080/v1beta/files/abc123", "abc123"),
        ("http://127.0.0.1:1234/v1/files/abc123", "abc123"),
        ("http://[::1]:8080/v1beta/files/abc123", "abc123"),
        ("http://other.example:8080/v1beta/files/abc123", None),
        ("http://gemserve.example:9090/v1beta/files/abc123", None),  # another port
        ("https://generativelanguage.googleapis.com/v1beta/models/abc123", None),
        ("https://generativelanguage.googleapis.com/v1beta/files/a/b", None),
        ("https://generativelanguage.googleapis.com/files/abc123", None),
        ("ftp://generativelanguage.googleapis.com/v1beta/files/abc123", None),
        ("gs://bucket/v1beta/files/abc123", None),
        ("abc123", None),
    ],
)
def test_file_name_from_uri(uri: str, name: str | None) -> None:
    assert file_name_from_uri(uri, frozenset({OWN_HOST})) == name


def test_a_host_name_starting_with_127_is_remote() -> None:
    assert file_name_from_uri("http://127.evil.example/v1beta/files/abc123", frozenset()) is None


# ----- usage by modality ----------------------------------------------------------------------


def finished(prompt_tokens: int, media_tokens: Sequence[int]) -> Finished:
    return Finished(FinishReason.STOP, prompt_tokens, 5, media_tokens=tuple(media_tokens))


def test_input_accounting_splits_the_prompt_by_modality() -> None:
    accounting = InputAccounting(
        media_modalities=("image", "video", "video"),
        derived_tokens=(("audio", 10), ("video", 7), ("document", 20)),
    )
    counts = accounting.by_modality(finished(200, (32, 32, 32)))
    assert counts == {"text": 67, "image": 32, "video": 71, "audio": 10, "document": 20}
    assert sum(counts.values()) == 200


def test_input_accounting_without_media_is_all_text() -> None:
    assert InputAccounting().by_modality(finished(42, ())) == {"text": 42}


# ----- models that hear -----------------------------------------------------------------------

HEARING = ModelCapabilities("hearing-model", 4096, 1024, frozenset({"text", "audio"}))


async def test_a_model_with_an_audio_projector_gets_the_sound_not_a_transcript(
    files: FileService,
) -> None:
    transcriber = FakeTranscriber()
    prepared = await prepare(
        pipeline_of(files, transcriber),
        user(text("What was said?"), inline("audio", WAV, "audio/wav")),
        caps=HEARING,
    )
    placeholders_match(prepared)
    [part] = [p for p in prepared.steps[0].parts if p.media]
    [sound] = part.media
    assert isinstance(sound, AudioInput)
    assert sound.sample_rate == 16_000
    assert len(sound.samples) // 4 == pytest.approx(3.88 * 16_000, rel=0.02)
    assert transcriber.calls == []  # nothing transcribed
    assert prepared.media_modalities == ["audio"]
    assert prepared.derived_text == []


async def test_a_hearing_model_gets_a_videos_sound_track_as_sound(files: FileService) -> None:
    prepared = await prepare(
        pipeline_of(files, None),
        user(text("What is said?"), inline("video", MP4, "video/mp4")),
        caps=HEARING,
        others={"hearing-model": HEARING},
    )
    placeholders_match(prepared)
    [part] = [p for p in prepared.steps[0].parts if p.media]
    assert [type(m) for m in part.media] == [AudioInput]
    assert "cannot see video frames; only the sound track follows" in part.text
    assert prepared.media_modalities == ["video"]
