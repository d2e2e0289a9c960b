"""Images through llama.cpp's multimodal library (libmtmd), for the batched scheduler.

``VisionProjector.tokenize`` (any thread: libmtmd documents it thread-safe) turns a rendered
prompt with image markers into one flat list of positions: text tokens, and for every image
chunk a run of negative keys standing for its embeddings (they let the scheduler's prefix
cache match images like tokens). ``encode`` (engine thread only: two concurrent encodes on
one context crash libmtmd) computes a chunk's embeddings, which the scheduler decodes in an
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

from gemserve.engine.base import ImageInput
from gemserve.engine.llama.native import LoadedModel, init_backend

_KEY_MASK = (1 << 62) - 1


class VisionError(ValueError):
    """The images could not be prepared for this model (the message is safe to show)."""


@dataclass(eq=False)
class MediaSpan:
    """One image chunk in a prompt: positions ``start`` … ``start + n_tokens - 1``."""

    start: int
    n_tokens: int
    chunk: Any  # an owned mtmd_input_chunk*, freed by VisionProjector.free
    non_causal: bool
    embeddings: npt.NDArray[np.float32] | None = None


@dataclass(eq=False)
class MultimodalPrompt:
    tokens: list[int]  # token ids, and negative keys at image positions
    spans: list[MediaSpan] = field(default_factory=list)
    image_tokens: tuple[int, ...] = ()  # positions taken by each input image, in order


class VisionProjector:
    """An mmproj file loaded next to a text model."""

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
        if not mtmd.mtmd_support_vision(ctx):
            self.close()
            raise RuntimeError(f"{mmproj} is not a vision projector")
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

    def tokenize(self, text: str, images: Sequence[ImageInput]) -> MultimodalPrompt:
        """Split ``text`` (one marker per image) into text tokens and image chunks."""
        bitmaps = []
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            for index, image in enumerate(images):
                pixels = (ctypes.c_uint8 * len(image.rgb)).from_buffer_copy(image.rgb)
                bitmap = mtmd.mtmd_bitmap_init(image.width, image.height, pixels)
                if not bitmap:
                    raise VisionError("an image could not be prepared for the model")
                bitmaps.append(bitmap)
                mtmd.mtmd_bitmap_set_id(bitmap, f"{index}:{image.digest[:32]}".encode())
            encoded = text.encode()
            prompt = mtmd.mtmd_input_text()
            prompt.text = encoded
            prompt.text_len = len(encoded)
            prompt.add_special = True
            prompt.parse_special = True
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            rc = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(prompt), array, len(bitmaps))
            if rc != 0:
                raise VisionError(f"the images could not be tokenized (libmtmd code {rc})")
            return self._collect(chunks, len(images))
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)

    def _collect(self, chunks: Any, n_images: int) -> MultimodalPrompt:
        out = MultimodalPrompt(tokens=[])
        per_image = [0] * n_images
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
                if kind != mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    raise VisionError("this model's projector produced a non-image chunk")
                n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                if mtmd.mtmd_input_chunk_get_n_pos(chunk) != n_tokens:
                    raise VisionError("this projector's position layout is not supported")
                image_id = mtmd.mtmd_input_chunk_get_id(chunk) or b""
                owned = mtmd.mtmd_input_chunk_copy(chunk)
                span = MediaSpan(
                    start=len(out.tokens),
                    n_tokens=n_tokens,
                    chunk=owned,
                    non_causal=bool(mtmd.mtmd_decode_use_non_causal(self._ctx, owned)),
                )
                out.spans.append(span)
                # Several chunks of one image (tiles) share its id; keys differ by tile.
                tile = part_of.get(image_id, 0)
                part_of[image_id] = tile + 1
                out.tokens.extend(
                    -1 - (hash((image_id, tile, row)) & _KEY_MASK) for row in range(n_tokens)
                )
                index = int(image_id.split(b":", 1)[0] or 0)
                if 0 <= index < n_images:
                    per_image[index] += n_tokens
        except BaseException:
            self.free(out)
            raise
        out.image_tokens = tuple(per_image)
        return out

    def encode(self, span: MediaSpan) -> npt.NDArray[np.float32]:
        """The chunk's embeddings, ``n_tokens × n_embd``. Engine thread only."""
        rc = mtmd.mtmd_encode_chunk(self._ctx, span.chunk)
        if rc != 0:
            raise VisionError(f"image encoding failed (libmtmd code {rc})")
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
