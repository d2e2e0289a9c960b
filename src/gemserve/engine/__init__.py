"""Engines turn a conversation into a stream of text deltas and know nothing of HTTP or storage."""

from gemserve.engine.base import (
    ChatMessage,
    Engine,
    EngineEvent,
    EngineStats,
    Finished,
    FinishReason,
    GenerationRequest,
    GenerationStream,
    ModelCapabilities,
    SamplingParams,
    TextDelta,
)

__all__ = [
    "ChatMessage",
    "Engine",
    "EngineEvent",
    "EngineStats",
    "FinishReason",
    "Finished",
    "GenerationRequest",
    "GenerationStream",
    "ModelCapabilities",
    "SamplingParams",
    "TextDelta",
]
