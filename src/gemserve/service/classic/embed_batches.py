"""The requests of embedding batches (``models/{model}:asyncBatchEmbedContent``): each is
checked when the batch is created, as ``:embedContent`` would check it, so a bad one is a 400
before anything is stored; the batch runner then embeds each one alone through the shared
embedding service (whose engine packs the texts of all callers into shared batches)."""

from __future__ import annotations

from typing import Any

from gemserve.config import ModelSpec
from gemserve.errors import InvalidArgument, NotFound
from gemserve.protocol.classic.embed import EmbedContentRequest
from gemserve.protocol.classic.embed_batches import stored_embed_response
from gemserve.service.classic.embed import ClassicEmbeddings
from gemserve.service.embeddings import EmbeddingService, EmbedItem


class BatchEmbeddings:
    def __init__(self, embeddings: EmbeddingService) -> None:
        self._embeddings = embeddings
        self._classic = ClassicEmbeddings(embeddings)

    def model(self, name: str) -> ModelSpec:
        """The served model of a name (404 unknown, 503 still loading)."""
        return self._embeddings.model(name)

    def check(self, model: str, body: Any) -> None:
        """A 400 naming the field (within the request) that ``:embedContent`` would refuse:
        not an embedding request, a non-text part, an empty text, a model that makes no
        embeddings, too many dimensions."""
        self._embeddings.check(model, [self._item(model, body)], field="content")

    async def embed(self, model: str, body: Any) -> dict[str, Any]:
        """The request's ``EmbedContentResponse``, as stored JSON."""
        result = await self._embeddings.embed(model, [self._item(model, body)], field="content")
        return stored_embed_response(result.vectors[0], result.total_tokens)

    def _item(self, model: str, body: Any) -> EmbedItem:
        request = EmbedContentRequest.parse(body)
        try:
            return self._classic.item(model, request, "")
        except NotFound as exc:
            # A request naming a model this server does not serve: the request is wrong.
            raise InvalidArgument(f"Invalid value at 'model': {exc.message}") from None
