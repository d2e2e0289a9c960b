"""A scripted engine for testing orchestration (never evidence that generation works: the
tests in tests/engine run the real one). It emits the thought and text pieces it is given,
and records every request it was handed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gemserve.engine import (
    EngineEvent,
    EngineStats,
    Finished,
    FinishReason,
    GenerationRequest,
    ModelCapabilities,
    TextDelta,
    ThoughtDelta,
)
from gemserve.errors import GemserveError

DEFAULT_PIECES = ("Hello", ", ", "world")


class ScriptedStream:
    def __init__(
        self,
        pieces: list[str],
        reason: FinishReason,
        delay: float,
        error: str | None,
        thoughts: list[str] | None = None,
    ):
        self.prompt_tokens = 5
        self._pieces = pieces
        self._thoughts = thoughts or []
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
                yield TextDelta(piece)
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
        model_id: str = "smollm2-135m-instruct",
        modalities: frozenset[str] = frozenset({"text"}),
        context_length: int = 4096,
    ) -> None:
        """``thoughts`` are emitted as a native reasoning model's thought, before the pieces.
        ``refuse`` (settable) is raised by ``generate`` instead of admitting, as a real engine
        refuses a prompt over the context (InvalidArgument) or a full queue
        (ResourceExhausted); ``loaded`` (settable) is what ``ready`` says."""
        self.pieces = pieces if pieces is not None else list(DEFAULT_PIECES)
        self.thoughts = thoughts
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

    @property
    def ready(self) -> bool:
        return self.loaded

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(
            self.model_id, self.context_length, self.context_length, self.modalities
        )

    async def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    async def generate(self, request: GenerationRequest) -> ScriptedStream:
        self.requests.append(request)
        if self.refuse is not None:
            raise self.refuse
        stream = ScriptedStream(self.pieces, self.reason, self.delay, self.error, self.thoughts)
        self.streams.append(stream)
        return stream

    def stats(self) -> EngineStats:
        return EngineStats(1, 0, 0, 0, 0)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
