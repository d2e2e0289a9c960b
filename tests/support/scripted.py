"""A scripted engine for testing orchestration (never evidence that generation works: the
tests in tests/engine run the real one). It emits the thought and text pieces it is given,
and records every request it was handed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence

import numpy as np

from gemserve.engine import (
    EmbeddingInput,
    Embeddings,
    EngineEvent,
    EngineStats,
    Finished,
    FinishReason,
    GenerationRequest,
    ModelCapabilities,
    PromptCount,
    TextDelta,
    ThoughtDelta,
    TokenLogprob,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
)
from gemserve.errors import GemserveError, InvalidEmbeddingInput

DEFAULT_PIECES = ("Hello", ", ", "world")


class ScriptedStream:
    def __init__(
        self,
        pieces: list[str],
        reason: FinishReason,
        delay: float,
        error: str | None,
        thoughts: list[str] | None = None,
        calls: list[tuple[str, str]] | None = None,
        logprobs: int | None = None,
    ):
        self.prompt_tokens = 5
        self._logprobs = logprobs
        self._pieces = pieces
        self._thoughts = thoughts or []
        self._calls = calls or []
        self._reason = reason
        self._delay = delay
        self._error = error
        self.cancelled = False
        self.finished = False

    def cancel(self) -> None:
        self.cancelled = True

    async def __aiter__(self) -> AsyncIterator[EngineEvent]:
        try:
            for thought in self._thoughts:
                await asyncio.sleep(self._delay)
                if self.cancelled:
                    yield Finished(FinishReason.CANCELLED, self.prompt_tokens, 0)
                    return
                yield ThoughtDelta(thought)
            for piece in self._pieces:
                await asyncio.sleep(self._delay)
                if self.cancelled:
                    yield Finished(FinishReason.CANCELLED, self.prompt_tokens, 0)
                    return
                if self._logprobs is not None:
                    top = tuple((f"alt{i}", -1.0 - i) for i in range(self._logprobs))
                    yield TokenLogprob(piece, -0.5, top)
                yield TextDelta(piece)
            for index, (name, arguments) in enumerate(self._calls):
                await asyncio.sleep(self._delay)
                yield ToolCallStart(index, name)
                half = len(arguments) // 2
                yield ToolCallArguments(index, arguments[:half])
                yield ToolCallArguments(index, arguments[half:])
                yield ToolCallEnd(index, name, arguments)
            yield Finished(
                self._reason,
                self.prompt_tokens,
                len(self._thoughts) + len(self._pieces),
                self._error,
                thought_tokens=len(self._thoughts),
            )
        finally:
            self.finished = True


class ScriptedEngine:
    def __init__(
        self,
        pieces: list[str] | None = None,
        reason: FinishReason = FinishReason.STOP,
        delay: float = 0.0,
        error: str | None = None,
        thoughts: list[str] | None = None,
        *,
        calls: list[tuple[str, str]] | None = None,
        model_id: str = "smollm2-135m-instruct",
        modalities: frozenset[str] = frozenset({"text"}),
        context_length: int = 4096,
    ) -> None:
        """``thoughts`` are emitted as a native reasoning model's thought, before the pieces;
        ``calls`` (settable: name, arguments JSON) as tool calls after them.
        ``refuse`` (settable) is raised by ``generate`` instead of admitting, as a real engine
        refuses a prompt over the context (InvalidArgument) or a full queue
        (ResourceExhausted); ``loaded`` (settable) is what ``ready`` says."""
        self.pieces = pieces if pieces is not None else list(DEFAULT_PIECES)
        self.thoughts = thoughts
        self.calls = calls
        self.reason = reason
        self.delay = delay
        self.error = error
        self.model_id = model_id
        self.modalities = modalities
        self.context_length = context_length
        self.refuse: GemserveError | None = None
        self.loaded = True
        self.requests: list[GenerationRequest] = []
        self.streams: list[ScriptedStream] = []
        # countTokens and embeddings: the requests counted, each embed call's inputs, and
        # the size of the (hash-derived, unit-length) vectors embed returns.
        self.counted: list[GenerationRequest] = []
        self.embedded: list[list[EmbeddingInput]] = []
        self.embedding_dimensions = 8

    @property
    def ready(self) -> bool:
        return self.loaded

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(
            self.model_id,
            self.context_length,
            self.context_length,
            self.modalities,
            embedding_dimensions=self.embedding_dimensions,
        )

    async def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    async def generate(self, request: GenerationRequest) -> ScriptedStream:
        self.requests.append(request)
        if self.refuse is not None:
            raise self.refuse
        stream = ScriptedStream(
            self.pieces,
            self.reason,
            self.delay,
            self.error,
            self.thoughts,
            self.calls,
            request.sampling.logprobs,
        )
        self.streams.append(stream)
        return stream

    async def count_prompt(self, request: GenerationRequest) -> PromptCount:
        """What a stream of ``generate`` reports as its prompt (5 tokens)."""
        self.counted.append(request)
        if self.refuse is not None:
            raise self.refuse
        return PromptCount(5)

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> Embeddings:
        """A vector derived from each input's hash; a word (or a token id) is a token."""
        self.embedded.append(list(inputs))
        if self.refuse is not None:
            raise self.refuse
        vectors = np.zeros((len(inputs), self.embedding_dimensions), dtype=np.float32)
        tokens: list[int] = []
        for i, item in enumerate(inputs):
            n = len(item.split()) if isinstance(item, str) else len(item)
            if n == 0:
                raise InvalidEmbeddingInput("there is nothing to embed.", index=i)
            if n > self.context_length:
                raise InvalidEmbeddingInput(f"the input is {n} tokens long.", index=i)
            seed = hashlib.sha256(repr(item).encode()).digest()
            row = np.random.default_rng(list(seed)).standard_normal(self.embedding_dimensions)
            vectors[i] = row / np.linalg.norm(row)
            tokens.append(n)
        return Embeddings(vectors, tuple(tokens))

    def stats(self) -> EngineStats:
        return EngineStats(1, 0, 0, 0, 0)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
