"""Images and sound through llama.cpp's multimodal library (libmtmd), for the batched
scheduler.

``Projector.tokenize`` (any thread: libmtmd documents it thread-safe) turns a rendered prompt
with media markers into one flat list of positions: text tokens, and for every image or audio
chunk a run of negative keys standing for its embeddings (they let the scheduler's prefix
cache match media like tokens). ``encode`` (engine thread only: two concurrent encodes on one
context crash libmtmd) computes a chunk's embeddings, which the scheduler decodes in an
embedding batch.
"""

from __future__ import annotations

import ctypes
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp as llama
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
import numpy.typing as npt

from gemserve.engine.base import ImageInput, MediaInput
from gemserve.engine.llama.native import LoadedModel, init_backend

_KEY_MASK = (1 << 62) - 1


class ProjectorError(ValueError):
    """The media could not be prepared for this model (the message is safe to show)."""


@dataclass(eq=False)
class MediaSpan:
    """One image or audio chunk in a prompt: positions ``start`` … ``start + n_tokens - 1``."""

    start: int
    n_tokens: int
    chunk: Any  # an owned mtmd_input_chunk*, freed by Projector.free
    non_causal: bool
    embeddings: npt.NDArray[np.float32] | None = None


@dataclass(eq=False)
class MultimodalPrompt:
    tokens: list[int]  # token ids, and negative keys at image positions
    spans: list[MediaSpan] = field(default_factory=list)
    media_tokens: tuple[int, ...] = ()  # positions taken by each image or sound, in order


class Projector:
    """An mmproj file (vision, audio or both) loaded next to a text model."""

    def __init__(self, mmproj: Path, model: LoadedModel, *, threads: int) -> None:
        if not mmproj.is_file():
            raise FileNotFoundError(f"mmproj file not found: {mmproj}")
        init_backend()
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = threads
        params.print_timings = False
        # A marker no client can guess, so text can never smuggle in an image slot.
        self._marker = f"<__gemserve_media_{secrets.token_hex(8)}__>".encode()
        params.media_marker = self._marker
        ctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), model.ptr, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not load the projector {mmproj}")
        self._ctx = ctx
        self.vision = bool(mtmd.mtmd_support_vision(ctx))
        self.audio = bool(mtmd.mtmd_support_audio(ctx))
        self.audio_sample_rate = int(mtmd.mtmd_get_audio_sample_rate(ctx)) if self.audio else 0
        if not (self.vision or self.audio):
            self.close()
            raise RuntimeError(f"{mmproj} projects neither images nor audio")
        if mtmd.mtmd_decode_use_mrope(ctx):
            self.close()
            raise RuntimeError(
                f"{mmproj} needs M-RoPE positions (Qwen2-VL family), which gemserve's scheduler "
                "does not support yet"
            )
        self.n_embd: int = llama.llama_model_n_embd_inp(model.ptr)

    @property
    def marker(self) -> str:
        return self._marker.decode()

    def tokenize(self, text: str, media: Sequence[MediaInput]) -> MultimodalPrompt:
        """Split ``text`` (one marker per item of ``media``) into text tokens and chunks."""
        bitmaps = []
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            for index, item in enumerate(media):
                bitmap = self._bitmap(item)
                bitmaps.append(bitmap)
                mtmd.mtmd_bitmap_set_id(bitmap, f"{index}:{item.digest[:32]}".encode())
            encoded = text.encode()
            prompt = mtmd.mtmd_input_text()
            prompt.text = encoded
            prompt.text_len = len(encoded)
            prompt.add_special = True
            prompt.parse_special = True
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            rc = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(prompt), array, len(bitmaps))
            if rc != 0:
                raise ProjectorError(f"the media could not be tokenized (libmtmd code {rc})")
            return self._collect(chunks, len(media))
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)

    def _bitmap(self, item: MediaInput) -> Any:
        if isinstance(item, ImageInput):
            if not self.vision:
                raise ProjectorError("this model's projector takes no images")
            pixels = (ctypes.c_uint8 * len(item.rgb)).from_buffer_copy(item.rgb)
            bitmap = mtmd.mtmd_bitmap_init(item.width, item.height, pixels)
        else:
            if not self.audio:
                raise ProjectorError("this model's projector takes no audio")
            if item.sample_rate != self.audio_sample_rate:
                raise ProjectorError(f"audio must be sampled at {self.audio_sample_rate} Hz")
            n = len(item.samples) // 4
            samples = (ctypes.c_float * n).from_buffer_copy(item.samples)
            bitmap = mtmd.mtmd_bitmap_init_from_audio(n, samples)
        if not bitmap:
            raise ProjectorError("a media part could not be prepared for the model")
        return bitmap

    def _collect(self, chunks: Any, n_media: int) -> MultimodalPrompt:
        out = MultimodalPrompt(tokens=[])
        per_item = [0] * n_media
        part_of: dict[bytes, int] = {}
        try:
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                kind = mtmd.mtmd_input_chunk_get_type(chunk)
                if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t(0)
                    ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    out.tokens.extend(ptr[j] for j in range(n.value))
                    continue
                if kind not in (mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE, mtmd.MTMD_INPUT_CHUNK_TYPE_AUDIO):
                    raise ProjectorError("this model's projector produced an unknown chunk")
                n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                if mtmd.mtmd_input_chunk_get_n_pos(chunk) != n_tokens:
                    raise ProjectorError("this projector's position layout is not supported")
                image_id = mtmd.mtmd_input_chunk_get_id(chunk) or b""
                owned = mtmd.mtmd_input_chunk_copy(chunk)
                span = MediaSpan(
                    start=len(out.tokens),
                    n_tokens=n_tokens,
                    chunk=owned,
                    non_causal=bool(mtmd.mtmd_decode_use_non_causal(self._ctx, owned)),
                )
                out.spans.append(span)
                # Several chunks of one item (tiles, audio windows) share its id; keys differ.
                tile = part_of.get(image_id, 0)
                part_of[image_id] = tile + 1
                out.tokens.extend(
                    -1 - (hash((image_id, tile, row)) & _KEY_MASK) for row in range(n_tokens)
                )
                index = int(image_id.split(b":", 1)[0] or 0)
                if 0 <= index < n_media:
                    per_item[index] += n_tokens
        except BaseException:
            self.free(out)
            raise
        out.media_tokens = tuple(per_item)
        return out

    def encode(self, span: MediaSpan) -> npt.NDArray[np.float32]:
        """The chunk's embeddings, ``n_tokens × n_embd``. Engine thread only."""
        rc = mtmd.mtmd_encode_chunk(self._ctx, span.chunk)
        if rc != 0:
            raise ProjectorError(f"media encoding failed (libmtmd code {rc})")
        ptr = mtmd.mtmd_get_output_embd(self._ctx)
        flat = np.ctypeslib.as_array(ptr, shape=(span.n_tokens * self.n_embd,))
        # Copy: the next encode overwrites this buffer.
        return flat.reshape(span.n_tokens, self.n_embd).copy()

    def free(self, prompt: MultimodalPrompt) -> None:
        for span in prompt.spans:
            if span.chunk is not None:
                mtmd.mtmd_input_chunk_free(span.chunk)
                span.chunk = None
            span.embeddings = None

    def close(self) -> None:
        if self._ctx:
            mtmd.mtmd_free(self._ctx)
            self._ctx = None
