"""A GGUF file's header: its metadata and tensor types, read without loading the model.

Pure Python and a few milliseconds (it never touches the tensor data), for `gemserve models
list` and `gemserve models pull`. The format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

# ggml_type ids (ggml.h) of the tensor types a GGUF may hold.
GGML_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}  # fmt: skip

# llama_ftype ids (llama.h): the ``general.file_type`` a quantizer writes ("mostly Q4_K_M").
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}  # fmt: skip

# Weight types llama.cpp's CPU backend decodes a batch of sequences with per-row dot products
# (it repacks Q4_0, IQ4_NL and Q4_K for matrix-matrix kernels instead): several requests
# decoding together gain much less from batching. Measured (README, "Which quantization, for
# concurrent users on CPU"; bench/RESULTS.md 2026-11-25c): 8 concurrent streams against one,
# 1.7x with the bundled Q4_1 file, 2.8x with a Q4_0 one.
PER_ROW_CPU_TYPES: frozenset[str] = frozenset({"Q4_1", "Q5_0", "Q5_1", "Q8_0"})
CPU_REPACKED_TYPES: tuple[str, ...] = ("Q4_0", "IQ4_NL", "Q4_K")

# Metadata arrays longer than this (a vocabulary) are counted, not kept.
_MAX_KEPT_ARRAY = 64
_SCALARS: dict[int, str] = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
    11: "<q", 12: "<d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """Not a GGUF file, or a truncated or corrupt header."""


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    # Elements per tensor type, over every tensor.
    type_elements: dict[str, int] = field(default_factory=dict)

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        """The context the model was trained for (``<arch>.context_length``)."""
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def weight_type(self) -> str | None:
        """The tensor type holding most of the weights (by element count)."""
        if not self.type_elements:
            return None
        return Counter(self.type_elements).most_common(1)[0][0]

    @property
    def quantization(self) -> str | None:
        """``general.file_type`` as llama.cpp names it (``Q4_K_M``), else the weight type."""
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int) and file_type in FILE_TYPES:
            return FILE_TYPES[file_type]
        return self.weight_type

    @property
    def batches_badly_on_cpu(self) -> bool:
        """Whether most weights are of a type that llama.cpp's CPU backend does not repack."""
        return self.weight_type in PER_ROW_CPU_TYPES

    def has(self, key: str) -> bool:
        return bool(self.metadata.get(key))


def read_header(path: Path) -> GGUFHeader:
    """Parse ``path``'s GGUF header (metadata and tensor infos); raises GGUFError or OSError."""
    with path.open("rb") as fh:
        try:
            return _Reader(fh).header()
        except struct.error:
            raise GGUFError(f"{path}: truncated GGUF header") from None


def cpu_batching_warning(weight_type: str) -> str:
    """The warning for a model whose weights are ``weight_type`` (in PER_ROW_CPU_TYPES)."""
    return (
        f"most weights are {weight_type}, which llama.cpp's CPU backend does not repack: "
        "concurrent requests gain little from batching (8 streams: 1.7x with Q4_1 against "
        "2.8x with Q4_0; README, 'Which quantization'). For several users on CPU prefer a "
        f"{', '.join(CPU_REPACKED_TYPES[:-1])} or {CPU_REPACKED_TYPES[-1]} file (e.g. Q4_K_M)."
    )


class _Reader:
    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def _read(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = self._fh.read(size)
        if len(data) != size:
            raise GGUFError("truncated GGUF header")
        return struct.unpack(fmt, data)[0]

    def _string(self) -> str:
        length = self._read("<Q")
        if length > 1 << 30:
            raise GGUFError("corrupt GGUF header (a string longer than 1 GiB)")
        data = self._fh.read(length)
        if len(data) != length:
            raise GGUFError("truncated GGUF header")
        return data.decode("utf-8", errors="replace")

    def _value(self, kind: int) -> Any:
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            item_kind = self._read("<I")
            count = self._read("<Q")
            if count > 1 << 32:
                raise GGUFError("corrupt GGUF header (an array of over 2^32 items)")
            if item_kind in _SCALARS and count > _MAX_KEPT_ARRAY:
                # Skip a large numeric array in one seek.
                self._fh.seek(struct.calcsize(_SCALARS[item_kind]) * count, 1)
                return count
            items = [self._value(item_kind) for _ in range(count)]
            return items if count <= _MAX_KEPT_ARRAY else count
        fmt = _SCALARS.get(kind)
        if fmt is None:
            raise GGUFError(f"corrupt GGUF header (unknown value type {kind})")
        return self._read(fmt)

    def header(self) -> GGUFHeader:
        if self._fh.read(4) != b"GGUF":
            raise GGUFError("not a GGUF file (no GGUF magic)")
        version = self._read("<I")
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version} (or a big-endian file)")
        tensors = self._read("<Q")
        kv_count = self._read("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = self._string()
            metadata[key] = self._value(self._read("<I"))
        elements: Counter[str] = Counter()
        for _ in range(tensors):
            self._string()
            n_dims = self._read("<I")
            if n_dims > 8:
                raise GGUFError("corrupt GGUF header (a tensor of over 8 dimensions)")
            count = 1
            for _ in range(n_dims):
                count *= self._read("<Q")
            kind = self._read("<I")
            self._read("<Q")  # offset
            elements[GGML_TYPES.get(kind, f"type{kind}")] += count
        return GGUFHeader(version, metadata, dict(elements))
