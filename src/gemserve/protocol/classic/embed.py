"""Wire models and bodies of ``models/{model}:embedContent`` and ``:batchEmbedContents``
(what ``client.models.embed_content`` calls), and of ``:countTokens``.

Vectors go out as float32 numpy arrays: the JSON encoder (``api/responses.py``) writes each
value as its shortest float32 text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, StrictStr

from gemserve.errors import InvalidArgument
from gemserve.protocol.classic.request import Content, GenerateContentRequest
from gemserve.protocol.common import ProtoInt, WireModel, validate_body


class EmbedContentRequest(WireModel):
    """The body of ``:embedContent``, and each item of ``:batchEmbedContents``."""

    model: StrictStr | None = None  # the SDK repeats the path's model in every item
    content: Content | None = None
    task_type: StrictStr | None = None
    title: StrictStr | None = None
    output_dimensionality: ProtoInt | None = Field(default=None, ge=1)

    @classmethod
    def parse(cls, body: Any) -> EmbedContentRequest:
        return validate_body(cls, body)


class BatchEmbedContentsRequest(WireModel):
    requests: list[EmbedContentRequest] | None = None

    @classmethod
    def parse(cls, body: Any) -> BatchEmbedContentsRequest:
        request = validate_body(cls, body)
        if not request.requests:
            raise InvalidArgument("Missing required field 'requests'.")
        return request


class CountTokensRequest(WireModel):
    """``{contents}`` (what the SDKs send), or a whole ``generateContentRequest`` (system
    instruction, tools, config), as Gemini takes it. Each is validated as a generateContent
    body, so a count sees what a generation would."""

    contents: list[Any] | None = None
    generate_content_request: dict[str, Any] | None = None

    @classmethod
    def parse(cls, body: Any) -> GenerateContentRequest:
        request = validate_body(cls, body)
        if request.generate_content_request is not None:
            if request.contents is not None:
                raise InvalidArgument(
                    "Invalid value at 'generate_content_request': set contents or "
                    "generate_content_request, not both."
                )
            return GenerateContentRequest.parse(request.generate_content_request)
        return GenerateContentRequest.parse({"contents": request.contents})


def _usage(tokens: int) -> dict[str, Any]:
    return {
        "promptTokenCount": tokens,
        "totalTokenCount": tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
    }


def embed_content_response(vector: npt.NDArray[np.float32], tokens: int) -> dict[str, Any]:
    return {"embedding": {"values": vector}, "usageMetadata": _usage(tokens)}


def batch_embed_contents_response(
    vectors: Sequence[npt.NDArray[np.float32]], tokens: int
) -> dict[str, Any]:
    return {"embeddings": [{"values": v} for v in vectors], "usageMetadata": _usage(tokens)}
