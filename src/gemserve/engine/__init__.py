"""Engines turn a conversation into a stream of text deltas and know nothing of HTTP or storage."""

from gemserve.engine.base import (
    IMAGE_PLACEHOLDER,
    ChatMessage,
    Engine,
    EngineEvent,
    EngineStats,
    Finished,
    FinishReason,
    GenerationRequest,
    GenerationStream,
    ImageInput,
    ModelCapabilities,
    ReasoningControl,
    SamplingParams,
    TextDelta,
    ThoughtDelta,
)

__all__ = [
    "IMAGE_PLACEHOLDER",
    "ChatMessage",
    "Engine",
    "EngineEvent",
    "EngineStats",
    "FinishReason",
    "Finished",
    "GenerationRequest",
    "GenerationStream",
    "ImageInput",
    "ModelCapabilities",
    "ReasoningControl",
    "SamplingParams",
    "TextDelta",
    "ThoughtDelta",
]
