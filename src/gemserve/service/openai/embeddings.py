"""``POST /v1beta/openai/embeddings`` on the shared embedding service: ``input`` as a string,
a list of strings, token ids or lists of token ids; ``dimensions`` truncates (Matryoshka)."""

from __future__ import annotations

from typing import Any

from gemserve.protocol.openai.embeddings import EmbeddingRequest, embedding_list
from gemserve.service.embeddings import EmbeddingService, EmbedItem


class OpenAIEmbeddings:
    def __init__(self, embeddings: EmbeddingService) -> None:
        self._embeddings = embeddings

    async def create(self, body: Any) -> dict[str, Any]:
        request = EmbeddingRequest.parse(body)
        items = [
            EmbedItem(text, where, dimensions=request.dimensions, dimensions_where="dimensions")
            for text, where in request.inputs()
        ]
        result = await self._embeddings.embed(request.model, items, field="input")
        return embedding_list(
            result.vectors, request.model, result.total_tokens, request.encoding_format
        )
