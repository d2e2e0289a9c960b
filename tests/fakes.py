"""A scripted engine for unit-testing orchestration (never evidence that generation works)."""

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

    def cancel(self) -> None:
        self.cancelled = True

    async def __aiter__(self) -> AsyncIterator[EngineEvent]:
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


class ScriptedEngine:
    def __init__(
        self,
        pieces: list[str] | None = None,
        reason: FinishReason = FinishReason.STOP,
        delay: float = 0.0,
        error: str | None = None,
        thoughts: list[str] | None = None,
    ) -> None:
        """``thoughts`` are emitted as a native reasoning model's thought, before the pieces."""
        self.pieces = pieces if pieces is not None else ["Hello", ", ", "world"]
        self.thoughts = thoughts
        self.reason = reason
        self.delay = delay
        self.error = error
        self.requests: list[GenerationRequest] = []
        self.streams: list[ScriptedStream] = []

    @property
    def ready(self) -> bool:
        return True

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities("smollm2-135m-instruct", 4096, 4096)

    async def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    async def generate(self, request: GenerationRequest) -> ScriptedStream:
        self.requests.append(request)
        stream = ScriptedStream(self.pieces, self.reason, self.delay, self.error, self.thoughts)
        self.streams.append(stream)
        return stream

    def stats(self) -> EngineStats:
        return EngineStats(1, 0, 0, 0, 0)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
