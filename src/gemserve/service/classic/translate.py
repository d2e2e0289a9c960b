"""A turn's events as classic responses: stream chunks (one per decoded piece, the last with
``finishReason`` and ``usageMetadata``), or the whole ``GenerateContentResponse``.

The thought's signature goes on the first answer part after it (``thoughtSignature``), as
Gemini 3 returns it; thought text is returned as ``thought: true`` parts only with
``includeThoughts``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gemserve.engine import FinishReason, TextDelta, ThoughtDelta
from gemserve.errors import Internal
from gemserve.protocol.classic.response import (
    FINISH_MAX_TOKENS,
    FINISH_STOP,
    candidate,
    generate_content_response,
    text_part,
    usage_metadata,
)
from gemserve.service.turn import StartedTurn
from gemserve.service.turn_events import CallEnd, ThoughtEnd, TurnDone, TurnUsage

FINISH_REASONS = {
    FinishReason.STOP: FINISH_STOP,
    FinishReason.MAX_TOKENS: FINISH_MAX_TOKENS,
    FinishReason.CONTEXT: FINISH_MAX_TOKENS,
    FinishReason.CANCELLED: "OTHER",
}
GENERATION_FAILED = {"code": 500, "message": "Generation failed.", "status": "INTERNAL"}


class ResponseShape:
    """What every response of one request repeats."""

    def __init__(self, model_version: str, response_id: str) -> None:
        self.model_version = model_version
        self.response_id = response_id

    def body(
        self,
        parts: list[dict[str, Any]],
        *,
        finish: str | None = None,
        usage: TurnUsage | None = None,
    ) -> dict[str, Any]:
        return generate_content_response(
            [candidate(parts, finish_reason=finish)],
            model_version=self.model_version,
            response_id=self.response_id,
            usage=None if usage is None else _usage(usage),
        )


async def stream_chunks(turn: StartedTurn, shape: ResponseShape) -> AsyncIterator[dict[str, Any]]:
    """One chunk per piece of text; a failure after the first byte is an ``error`` chunk."""
    signature: str | None = None
    try:
        async for event in turn.events():
            if type(event) is TextDelta:
                yield shape.body([text_part(event.text, signature=signature)])
                signature = None
            elif type(event) is ThoughtDelta:
                if turn.summaries:
                    yield shape.body([text_part(event.text, thought=True)])
            elif isinstance(event, ThoughtEnd):
                signature = event.signature
            elif isinstance(event, CallEnd):
                # The whole call in one chunk, as Gemini sends it on this API.
                yield shape.body([call_part(event, signature)])
                signature = None
            elif isinstance(event, TurnDone):
                if event.error is not None:
                    yield {"error": GENERATION_FAILED}
                    return
                parts = [] if signature is None else [text_part("", signature=signature)]
                yield shape.body(parts, finish=FINISH_REASONS[event.reason], usage=event.usage)
    finally:
        turn.cancel()  # closing the stream early must stop generation


async def whole_response(turn: StartedTurn, shape: ResponseShape) -> dict[str, Any]:
    whole = await turn.collect()
    if whole.done.error is not None:
        raise Internal("Generation failed.")
    parts: list[dict[str, Any]] = []
    if turn.summaries and whole.thought:
        parts.append(text_part(whole.thought, thought=True))
    signature = whole.signature
    if whole.answer or (signature is not None and not whole.calls):
        parts.append(text_part(whole.answer, signature=signature))
        signature = None
    for call in whole.calls:
        parts.append(call_part(call, signature))
        signature = None
    return shape.body(parts, finish=FINISH_REASONS[whole.done.reason], usage=whole.done.usage)


def call_part(call: CallEnd, signature: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {
        "functionCall": {"id": call.id, "name": call.name, "args": call.arguments}
    }
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def _usage(usage: TurnUsage) -> dict[str, Any]:
    return usage_metadata(
        usage.input_tokens,
        usage.output_tokens,
        usage.thought_tokens,
        cached=usage.cached_tokens,
        prompt_by_modality=usage.input_by_modality,
    )
