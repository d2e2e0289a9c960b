"""Embeddings for every surface: the model resolved as for generation, each text framed by
its task type's prompt, the engine's pooled unit vectors, then Matryoshka-style truncation.

``outputDimensionality`` (classic) and ``dimensions`` (OpenAI) keep the first *n* values and
scale them back to unit length, as Gemini's embedding models do. That is exact for a model
trained with Matryoshka representation learning; for any other model the first *n*
coordinates are only a projection, so cosine similarities are approximate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gemserve.config import Limits, ModelSpec
from gemserve.engine import EmbeddingInput, Engine
from gemserve.errors import InvalidArgument, InvalidEmbeddingInput
from gemserve.service.turn import TurnPipeline


@dataclass(frozen=True)
class EmbedItem:
    """One input: a text (or token ids), the field naming it in errors (``requests[2].content``,
    ``input[1]``), its task type (lower-case) and title, and the dimensions asked for."""

    text: str | Sequence[int]
    where: str
    task: str | None = None
    title: str | None = None
    dimensions: int | None = None
    dimensions_where: str = "output_dimensionality"


@dataclass(frozen=True)
class EmbedResult:
    spec: ModelSpec
    vectors: list[npt.NDArray[np.float32]]
    tokens: tuple[int, ...]  # each input's

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)


class EmbeddingService:
    def __init__(self, turns: TurnPipeline, limits: Limits) -> None:
        self._turns = turns
        self._limits = limits

    def model(self, name: str) -> ModelSpec:
        """The served model a name resolves to (404 unknown, 503 still loading)."""
        spec, _ = self._turns.model(name)
        return spec

    async def embed(self, model: str, items: Sequence[EmbedItem], *, field: str) -> EmbedResult:
        """Every client error is raised before the engine starts: the number of inputs, their
        size, each dimensionality, and (from the engine) each input's tokens."""
        spec, engine, inputs = self.check(model, items, field=field)
        try:
            result = await engine.embed(inputs)
        except InvalidEmbeddingInput as exc:
            raise InvalidArgument(
                f"Invalid value at '{items[exc.index].where}': {exc.message}"
            ) from None
        vectors = [truncate(result.vectors[i], item.dimensions) for i, item in enumerate(items)]
        return EmbedResult(spec, vectors, result.tokens)

    def check(
        self, model: str, items: Sequence[EmbedItem], *, field: str
    ) -> tuple[ModelSpec, Engine, list[EmbeddingInput]]:
        """What ``embed`` checks before the engine (the number of inputs, their size, the
        model, each dimensionality): a batch checks its requests this way when it is created.
        The model, its engine and the texts to embed, framed."""
        limit = self._limits.max_embedding_inputs
        if not items:
            raise InvalidArgument(f"Missing required field '{field}'.")
        if len(items) > limit:
            raise InvalidArgument(
                f"Invalid value at '{field}': {len(items)} inputs; at most {limit} per request."
            )
        chars = sum(len(item.text) for item in items if isinstance(item.text, str))
        if chars > self._limits.max_text_chars:
            raise InvalidArgument(
                f"Invalid value at '{field}': {chars} characters of text; at most "
                f"{self._limits.max_text_chars} per request."
            )
        spec, engine = self._turns.model(model)
        size = engine.capabilities().embedding_dimensions
        if size is None:
            raise InvalidArgument(f"Model {spec.id!r} does not make embeddings.")
        inputs: list[EmbeddingInput] = []
        for item in items:
            if isinstance(item.text, str) and not item.text:
                raise InvalidArgument(f"Invalid value at '{item.where}': the text is empty.")
            if item.dimensions is not None and item.dimensions > size:
                raise InvalidArgument(
                    f"Invalid value at '{item.dimensions_where}': {item.dimensions} "
                    f"dimensions asked, but model {spec.id!r} makes vectors of {size}."
                )
            inputs.append(framed(item, spec))
        return spec, engine, inputs


def framed(item: EmbedItem, spec: ModelSpec) -> str | Sequence[int]:
    """The text the model embeds: the task's prompt around it (token ids go as they are)."""
    if not isinstance(item.text, str) or item.task is None:
        return item.text
    template = spec.embedding_prompts.get(item.task)
    if template is None:
        return item.text
    return template.format(text=item.text, title=item.title or "none")


def truncate(vector: npt.NDArray[np.float32], dimensions: int | None) -> npt.NDArray[np.float32]:
    """The first ``dimensions`` values at unit length again (Matryoshka-style)."""
    if dimensions is None or dimensions >= vector.shape[0]:
        return vector
    head = vector[:dimensions]
    norm = float(np.linalg.norm(head))
    out: npt.NDArray[np.float32] = (head / norm if norm > 0 else head).astype(np.float32)
    return out
