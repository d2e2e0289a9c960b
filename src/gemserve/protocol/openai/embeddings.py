"""``POST /v1beta/openai/embeddings``: the request the ``openai`` SDK sends, and OpenAI's list
envelope (``encoding_format: base64`` is little-endian float32, which the SDK decodes; it asks
for base64 by default)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BeforeValidator, Field, StrictInt, StrictStr

from gemserve.errors import InvalidArgument
from gemserve.protocol.common import validate_body
from gemserve.protocol.openai.request import OpenAIModel

INPUT_SHAPES = "a string, a list of strings, token ids, or a list of lists of token ids"


def _inputs(raw: Any) -> str | list[str] | list[int] | list[list[int]]:
    """OpenAI's four shapes of ``input``, with one message for anything else."""

    def token(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        if all(isinstance(item, str) for item in raw) or all(token(item) for item in raw):
            return raw
        if all(isinstance(item, list) and all(token(t) for t in item) for item in raw):
            return raw
    raise ValueError(f"expected {INPUT_SHAPES}")


class EmbeddingRequest(OpenAIModel):
    model: StrictStr
    input: Annotated[str | list[str] | list[int] | list[list[int]], BeforeValidator(_inputs)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(default=None, ge=1)
    user: StrictStr | None = None

    @classmethod
    def parse(cls, body: Any) -> EmbeddingRequest:
        request = validate_body(cls, body)
        if request.input == []:
            raise InvalidArgument("Invalid value at 'input': it must not be empty.")
        return request

    def inputs(self) -> list[tuple[str | list[int], str]]:
        """Each input (a text, or token ids) and the field that names it."""
        raw = self.input
        if isinstance(raw, str):
            return [(raw, "input")]
        if all(isinstance(item, int) for item in raw):
            return [([int(t) for t in raw if isinstance(t, int)], "input")]
        out: list[tuple[str | list[int], str]] = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                out.append((item, f"input[{i}]"))
            elif isinstance(item, list):
                out.append((list(item), f"input[{i}]"))
        return out


def _encoded(vector: npt.NDArray[np.float32], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def embedding_list(
    vectors: Sequence[npt.NDArray[np.float32]], model: str, tokens: int, encoding: str
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encoded(v, encoding)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
