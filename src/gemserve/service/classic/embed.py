"""``:embedContent`` and ``:batchEmbedContents`` on the shared embedding service: each
request's ``content`` becomes one text (its text parts, joined by newlines), ``taskType``
picks the model's prompt for the task, ``title`` goes with ``RETRIEVAL_DOCUMENT``."""

from __future__ import annotations

from typing import Any

from gemserve.config.models import EMBEDDING_TASK_TYPES
from gemserve.errors import InvalidArgument
from gemserve.protocol.classic.embed import (
    BatchEmbedContentsRequest,
    EmbedContentRequest,
    batch_embed_contents_response,
    embed_content_response,
)
from gemserve.protocol.classic.request import Content
from gemserve.service.embeddings import EmbeddingService, EmbedItem

UNSPECIFIED = "task_type_unspecified"


class ClassicEmbeddings:
    def __init__(self, embeddings: EmbeddingService) -> None:
        self._embeddings = embeddings

    async def embed_content(self, model: str, body: Any) -> dict[str, Any]:
        request = EmbedContentRequest.parse(body)
        items = [self.item(model, request, "")]
        result = await self._embeddings.embed(model, items, field="content")
        return embed_content_response(result.vectors[0], result.total_tokens)

    async def batch_embed_contents(self, model: str, body: Any) -> dict[str, Any]:
        batch = BatchEmbedContentsRequest.parse(body)
        requests = batch.requests or []
        items = [self.item(model, r, f"requests[{i}]") for i, r in enumerate(requests)]
        result = await self._embeddings.embed(model, items, field="requests")
        return batch_embed_contents_response(result.vectors, result.total_tokens)

    def item(self, model: str, request: EmbedContentRequest, path: str) -> EmbedItem:
        """One request as the embedding service takes it; ``path`` prefixes the fields it
        names in errors (empty: the request is the whole body)."""

        def at(name: str) -> str:
            return f"{path}.{name}" if path else name

        if request.model is not None:
            named = self._embeddings.model(request.model).id
            if named != self._embeddings.model(model).id:
                raise InvalidArgument(
                    f"Invalid value at '{at('model')}': {request.model!r} is not the model "
                    f"of the request's path ({model!r})."
                )
        task = _task(request.task_type, at("task_type"))
        if request.title is not None and task != "retrieval_document":
            raise InvalidArgument(
                f"Invalid value at '{at('title')}': a title goes with task_type RETRIEVAL_DOCUMENT."
            )
        return EmbedItem(
            text=_text(request.content, at("content")),
            where=at("content"),
            task=task,
            title=request.title,
            dimensions=request.output_dimensionality,
            dimensions_where=at("output_dimensionality"),
        )


def _task(raw: str | None, where: str) -> str | None:
    if raw is None:
        return None
    name = raw.lower()
    if name in ("", UNSPECIFIED):
        return None
    if name not in EMBEDDING_TASK_TYPES:
        known = ", ".join(t.upper() for t in EMBEDDING_TASK_TYPES)
        raise InvalidArgument(f"Invalid value at '{where}': {raw!r} is not one of {known}.")
    return name


def _text(content: Content | None, where: str) -> str:
    if content is None:
        raise InvalidArgument(f"Missing required field '{where}'.")
    if not content.parts:
        raise InvalidArgument(f"Missing required field '{where}.parts'.")
    texts: list[str] = []
    for j, part in enumerate(content.parts):
        if part.text is None or part.model_fields_set - {"text"}:
            raise InvalidArgument(
                f"Invalid value at '{where}.parts[{j}]': embeddings are made from text parts."
            )
        texts.append(part.text)
    return "\n".join(texts)
