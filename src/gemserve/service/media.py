"""Media parts of an interaction: loaded (inline data or a file), decoded under the caps, and
rendered as what the chosen model can take in.

A part becomes text and media for the engine: images go to vision models as pixels; audio goes
as sound to models with an audio projector, and otherwise becomes a delimited transcript
(Whisper); video becomes frames at about one per second plus
the transcript of its sound; documents become their text page by page (plus page images for
vision models). A part the model cannot take in any way is a 400 that names the part, the
model, and the models that could. Nothing is dropped silently.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import anyio

from gemserve.config import Limits
from gemserve.engine import (
    MEDIA_PLACEHOLDER,
    AudioInput,
    ImageInput,
    MediaInput,
    ModelCapabilities,
    without_media_placeholder,
)
from gemserve.errors import InvalidArgument, NotFound, Unavailable
from gemserve.hosts import is_loopback
from gemserve.media import MediaError
from gemserve.media.audio import SAMPLE_RATE, DecodedAudio, decode_audio
from gemserve.media.document import DOCUMENT_TYPES, PDF, decode_document
from gemserve.media.image import DecodedImage, decode_image
from gemserve.media.transcribe import Transcriber
from gemserve.media.video import decode_video
from gemserve.protocol.files import FILE_NAME
from gemserve.service.fetch import RemoteFetcher
from gemserve.service.files import FileService
from gemserve.service.turn_input import (
    FunctionCallPart,
    FunctionResultPart,
    MediaKind,
    MediaPart,
    Message,
    TextPart,
)
from gemserve.store.blobs import BlobNotFound

log = logging.getLogger("gemserve.media")
transcripts_log = logging.getLogger("gemserve.media.transcripts")

T = TypeVar("T")

# Images are scaled to at most this many pixels per side before the projector sees them (it
# resizes again to its own size); it bounds memory, not quality.
MAX_IMAGE_SIDE = 2048
# Transcripts kept in memory, so a conversation's earlier audio is not transcribed every turn.
TRANSCRIPT_CACHE = 256
GOOGLE_FILES_HOST = "generativelanguage.googleapis.com"
_FILE_URI_PATH = re.compile(r"^(?:/.*)?/v\d+(?:alpha|beta)?\d*/files/([^/]+)$")


@dataclass(frozen=True, slots=True)
class RenderedPart:
    """A content part as the model takes it: text with an image placeholder per image."""

    text: str
    media: tuple[MediaInput, ...] = ()
    call: FunctionCallPart | FunctionResultPart | None = None  # a call or result, as sent


@dataclass
class RenderedStep:
    role: str  # "user" | "assistant"
    parts: list[RenderedPart]


@dataclass
class PreparedInput:
    steps: list[RenderedStep]
    # The modality of each image, in prompt order (a video frame counts as video).
    media_modalities: list[str] = field(default_factory=list)
    # Text the server derived from media (transcripts, document text), by modality.
    derived_text: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Budget:
    """What one request may still decode."""

    parts: int
    audio_seconds: float
    video_seconds: float
    pages: int


def file_name_from_uri(uri: str, own_hosts: frozenset[str]) -> str | None:
    """The file name a uri refers to, or None for a remote URL (never fetched)."""
    if uri.startswith("files/"):
        return uri.removeprefix("files/")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    match = _FILE_URI_PATH.fullmatch(parts.path)
    if match is None:
        return None
    if host == GOOGLE_FILES_HOST or parts.netloc.lower() in own_hosts or is_loopback(host):
        return match.group(1)
    return None


class MediaPipeline:
    def __init__(
        self,
        files: FileService,
        limits: Limits,
        transcriber: Transcriber | None,
        *,
        fetcher: RemoteFetcher | None = None,
        decode_threads: int = 2,
    ) -> None:
        self._files = files
        self._fetcher = fetcher
        self._limits = limits
        self._transcriber = transcriber
        self._limiter = anyio.CapacityLimiter(decode_threads)
        self._transcripts: OrderedDict[str, str] = OrderedDict()

    @property
    def transcribes(self) -> bool:
        return self._transcriber is not None

    async def prepare(
        self,
        messages: Sequence[Message],
        *,
        tenant: str,
        model: ModelCapabilities,
        others: Mapping[str, ModelCapabilities],
        own_hosts: frozenset[str] = frozenset(),
    ) -> PreparedInput:
        limits = self._limits
        budget = _Budget(
            limits.max_media_parts,
            limits.max_audio_seconds,
            limits.max_video_seconds,
            limits.max_document_pages,
        )
        prepared = PreparedInput(steps=[])
        for message in messages:
            rendered = RenderedStep("user" if message.role == "user" else "assistant", [])
            for part in message.parts:
                if isinstance(part, TextPart):
                    rendered.parts.append(RenderedPart(without_media_placeholder(part.text)))
                    continue
                if isinstance(part, FunctionCallPart | FunctionResultPart):
                    rendered.parts.append(RenderedPart("", call=part))
                    continue
                context = _PartContext(
                    part.where, tenant, model, others, own_hosts, budget, prepared
                )
                rendered.parts.append(await self._render(part, context))
            prepared.steps.append(rendered)
        return prepared

    # ----- one part --------------------------------------------------------------------------

    async def _render(self, part: MediaPart, ctx: _PartContext) -> RenderedPart:
        if ctx.budget.parts <= 0:
            raise InvalidArgument(
                f"The input has more than {self._limits.max_media_parts} media parts "
                "(the conversation's history included); that is the limit per request."
            )
        ctx.budget.parts -= 1
        if part.kind is not None:
            self._check_capability(part.kind, ctx)
        # A stored file's local copy (from a remote blob store) lasts while the part decodes.
        async with contextlib.AsyncExitStack() as held:
            source, mime, label = await self._load(part, ctx, held)
            return await self._decode_part(part, ctx, source, mime, label)

    async def _decode_part(
        self, part: MediaPart, ctx: _PartContext, source: bytes | Path, mime: str, label: str
    ) -> RenderedPart:
        kind = part.kind or kind_of_mime(mime)
        if part.kind is None:  # a file named without a MIME type: its own says what it is
            self._check_capability(kind, ctx)
        # Both come from the client and go into the prompt: they must not place images.
        mime, label = without_media_placeholder(mime), without_media_placeholder(label)
        try:
            if kind == "image":
                return await self._image(source, mime, ctx)
            if kind == "audio":
                return await self._audio(source, mime, label, ctx)
            if kind == "video":
                return await self._video(source, mime, label, ctx)
            return await self._document(source, mime, label, ctx)
        except MediaError as exc:
            raise InvalidArgument(f"Invalid value at '{ctx.where}': {exc}") from None

    def _check_capability(self, kind: str, ctx: _PartContext) -> None:
        if _can_take(kind, ctx.model, self.transcribes):
            return
        able = sorted(
            name for name, caps in ctx.others.items() if _can_take(kind, caps, self.transcribes)
        )
        if able:
            alternatives = "models that can: " + ", ".join(able) + "."
        else:
            alternatives = "no model served here can" + (
                " (speech recognition is switched off)."
                if kind == "audio"
                else " (see the README: adding a vision model)."
            )
        raise InvalidArgument(
            f"Invalid value at '{ctx.where}': model {ctx.model.model_id!r} cannot take {kind} "
            f"input; {alternatives}"
        )

    async def _load(
        self, part: MediaPart, ctx: _PartContext, held: contextlib.AsyncExitStack
    ) -> tuple[bytes | Path, str, str]:
        """The part's bytes (or a stored file's path, valid while ``held`` is open), its MIME
        type and a label for prompts."""
        if (part.data is None) == (part.uri is None):
            raise InvalidArgument(
                f"Invalid value at '{ctx.where}': a {part.kind or 'media'} part needs exactly "
                "one of 'data' (base64) or 'uri'."
            )
        if part.data is not None:
            if not part.mime_type:
                raise InvalidArgument(f"Missing required field '{ctx.where}.mime_type'.")
            try:
                data = base64.b64decode(part.data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument(
                    f"Invalid value at '{ctx.where}.data': not valid base64."
                ) from None
            return data, self._mime(part.mime_type, part.kind, ctx), part.kind or "file"
        assert part.uri is not None
        name = file_name_from_uri(part.uri, ctx.own_hosts)
        if name is None:
            if self._fetcher is not None and self._fetcher.allows(part.uri):
                fetched = await self._fetcher.fetch(part.uri, f"{ctx.where}.{part.uri_field}")
                mime = part.mime_type or fetched.mime_type
                if not mime:
                    raise InvalidArgument(f"Missing required field '{ctx.where}.mime_type'.")
                return fetched.data, self._mime(mime, part.kind, ctx), part.kind or "file"
            raise InvalidArgument(
                f"Invalid value at '{ctx.where}.{part.uri_field}': this server does not fetch "
                "URLs from this host; upload the file with the Files API and pass the uri it "
                "returns."
            )
        if not FILE_NAME.fullmatch(name):
            raise InvalidArgument(
                f"Invalid value at '{ctx.where}.{part.uri_field}': {part.uri!r} names no file."
            )
        try:
            record = await self._files.get(ctx.tenant, name)
            mime = self._mime(part.mime_type or record.mime_type, part.kind, ctx)
            path = await held.enter_async_context(self._files.local_file(record))
        except (NotFound, BlobNotFound):  # the blob: deleted since the row was read
            raise InvalidArgument(
                f"Invalid value at '{ctx.where}.{part.uri_field}': file 'files/{name}' was not "
                "found; it may have expired (files are kept 48 hours) or been deleted."
            ) from None
        return path, mime, record.display_name or part.kind or "file"

    @staticmethod
    def _mime(raw: str, kind: str | None, ctx: _PartContext) -> str:
        mime = raw.split(";")[0].strip().lower()
        family = mime.split("/")[0]
        kind = kind or kind_of_mime(mime)
        matches = (
            mime in DOCUMENT_TYPES
            if kind == "document"
            else family == kind or (kind == "audio" and mime in ("application/ogg",))
        )
        if not matches:
            raise InvalidArgument(
                f"Invalid value at '{ctx.where}.mime_type': {raw!r} is not "
                f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} type"
                + (" (PDF, plain text, CSV, Markdown or HTML)." if kind == "document" else ".")
            )
        return mime

    async def _decode(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def _image(self, source: bytes | Path, mime: str, ctx: _PartContext) -> RenderedPart:
        image = await self._decode(
            lambda: decode_image(
                source, mime, max_pixels=self._limits.max_image_pixels, max_side=MAX_IMAGE_SIDE
            )
        )
        ctx.prepared.media_modalities.append("image")
        return RenderedPart(MEDIA_PLACEHOLDER, (_engine_image(image),))

    async def _audio(
        self, source: bytes | Path, mime: str, label: str, ctx: _PartContext
    ) -> RenderedPart:
        seconds_left = ctx.budget.audio_seconds
        audio = await self._decode(lambda: decode_audio(source, max_seconds=seconds_left))
        ctx.budget.audio_seconds -= audio.seconds
        if "audio" in ctx.model.input_modalities:
            # The model hears: the sound itself, through its audio projector.
            ctx.prepared.media_modalities.append("audio")
            return RenderedPart(MEDIA_PLACEHOLDER, (_engine_audio(audio, _digest(source)),))
        transcript = await self._transcribe(audio.samples, _digest(source), ctx.where)
        text = without_media_placeholder(
            f"[Audio {label!r} ({mime}, {audio.seconds:.1f} s), transcribed by the server]\n"
            f"{transcript or '(no speech recognised)'}\n[End of audio transcript]"
        )
        ctx.prepared.derived_text.append(("audio", text))
        return RenderedPart(text)

    async def _video(
        self, source: bytes | Path, mime: str, label: str, ctx: _PartContext
    ) -> RenderedPart:
        sees = "image" in ctx.model.input_modalities
        hears = "audio" in ctx.model.input_modalities
        video = await self._decode(
            lambda: decode_video(
                source,
                max_seconds=ctx.budget.video_seconds,
                max_frames=self._limits.max_video_frames,
                max_side=MAX_IMAGE_SIDE,
                max_pixels=self._limits.max_image_pixels,
                want_frames=sees,
                want_audio=hears or self.transcribes,
            )
        )
        ctx.budget.video_seconds -= video.seconds
        if not sees and video.audio is None:
            raise InvalidArgument(
                f"Invalid value at '{ctx.where}': the video has no sound track, and model "
                f"{ctx.model.model_id!r} cannot see its frames."
            )
        lines = [f"[Video {label!r} ({mime}, {video.seconds:.1f} s)]"]
        media: list[MediaInput] = []
        if sees:
            for frame in video.frames:
                minutes, seconds = divmod(int(frame.seconds), 60)
                lines.append(f"[{minutes:02d}:{seconds:02d}] {MEDIA_PLACEHOLDER}")
                media.append(_engine_image(frame.image))
                ctx.prepared.media_modalities.append("video")
        elif hears:
            lines.append("[This model cannot see video frames; only the sound track follows.]")
        else:
            lines.append(
                "[This model cannot see video frames; only the transcript of the video's sound "
                "track follows.]"
            )
        if video.audio is not None and hears:
            lines.append(f"[Sound track] {MEDIA_PLACEHOLDER}")
            media.append(_engine_audio(video.audio, _digest(source)))
            ctx.prepared.media_modalities.append("video")
        elif video.audio is not None:
            transcript = await self._transcribe(video.audio.samples, _digest(source), ctx.where)
            derived = without_media_placeholder(
                "[Transcript of the video's sound track]\n"
                f"{transcript or '(no speech recognised)'}\n[End of transcript]"
            )
            ctx.prepared.derived_text.append(("video", derived))
            lines.append(derived)
        lines.append("[End of video]")
        return RenderedPart("\n".join(lines), tuple(media))

    async def _document(
        self, source: bytes | Path, mime: str, label: str, ctx: _PartContext
    ) -> RenderedPart:
        sees = "image" in ctx.model.input_modalities and mime == PDF
        pages_left = ctx.budget.pages
        document = await self._decode(
            lambda: decode_document(
                source,
                mime,
                max_pages=pages_left,
                max_chars=self._limits.max_text_chars,
                render_pages=sees,
                max_side=MAX_IMAGE_SIDE,
            )
        )
        ctx.budget.pages -= len(document.pages)
        if not sees and not document.text.strip():
            raise InvalidArgument(
                f"Invalid value at '{ctx.where}': the document has no text to extract (a scanned "
                f"PDF?), and model {ctx.model.model_id!r} cannot read page images."
            )
        lines = [f"[Document {label!r} ({mime}, {len(document.pages)} pages)]"]
        images: list[MediaInput] = []
        for page in document.pages:
            text = without_media_placeholder(page.text)
            lines.append(f"[Page {page.number}]" if mime == PDF else "")
            if page.image is not None:
                lines.append(MEDIA_PLACEHOLDER)
                images.append(_engine_image(page.image))
                ctx.prepared.media_modalities.append("document")
            if text:
                lines.append(text)
                ctx.prepared.derived_text.append(("document", text))
        lines.append("[End of document]")
        return RenderedPart("\n".join(line for line in lines if line), tuple(images))

    async def _transcribe(self, samples: object, key: str, where: str) -> str:
        cached = self._transcripts.get(key)
        if cached is None:
            if self._transcriber is None or not self._transcriber.ready:
                raise Unavailable("Speech recognition is still loading; retry shortly.")
            cached = await self._transcriber.transcribe(samples)  # type: ignore[arg-type]
            self._transcripts[key] = cached
            if len(self._transcripts) > TRANSCRIPT_CACHE:
                self._transcripts.popitem(last=False)
        else:
            self._transcripts.move_to_end(key)
        # For operators checking what the model was given; transcripts are user content.
        transcripts_log.debug("%s transcript: %s", where, cached)
        return cached


@dataclass
class _PartContext:
    where: str
    tenant: str
    model: ModelCapabilities
    others: Mapping[str, ModelCapabilities]
    own_hosts: frozenset[str]
    budget: _Budget
    prepared: PreparedInput


def kind_of_mime(mime: str) -> MediaKind:
    """The kind of part a MIME type makes: image, audio, video, or else a document."""
    family = mime.split(";")[0].strip().lower().split("/")[0]
    if family in ("image", "audio", "video"):
        return family  # type: ignore[return-value]
    return "audio" if mime.lower().startswith("application/ogg") else "document"


def _can_take(kind: str, caps: ModelCapabilities, transcribes: bool) -> bool:
    sees = "image" in caps.input_modalities
    if kind == "image":
        return sees
    if kind == "audio":
        return transcribes or "audio" in caps.input_modalities
    if kind == "video":
        return sees or transcribes or "audio" in caps.input_modalities
    return True  # documents: their text always, page images too for vision models


def _engine_image(image: DecodedImage) -> ImageInput:
    return ImageInput(image.width, image.height, image.rgb, image.digest)


def _engine_audio(audio: DecodedAudio, digest: str) -> AudioInput:
    return AudioInput(audio.samples.tobytes(), SAMPLE_RATE, digest)


def _digest(source: bytes | Path) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    return "file:" + source.name  # blob keys are unique and blobs immutable
