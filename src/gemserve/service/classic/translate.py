"""A turn's events as classic responses: stream chunks (one per decoded piece, the last with
``finishReason`` and ``usageMetadata``), or the whole ``GenerateContentResponse``.

The thought's signature goes on the first answer part after it (``thoughtSignature``), as
Gemini 3 returns it; thought text is returned as ``thought: true`` parts only with
``includeThoughts``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from gemserve.engine import FinishReason, TextDelta, ThoughtDelta, TokenLogprob
from gemserve.errors import Internal
from gemserve.protocol.classic.response import (
    FINISH_MAX_TOKENS,
    FINISH_STOP,
    candidate,
    generate_content_response,
    text_part,
    usage_metadata,
)
from gemserve.service.merge import merged
from gemserve.service.turn import Candidates, StartedTurn
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
        index: int = 0,
        logprobs: list[TokenLogprob] | None = None,
    ) -> dict[str, Any]:
        made = candidate(parts, finish_reason=finish, index=index, logprobs=logprobs)
        return self.candidates([made], usage=usage)

    def candidates(
        self, candidates: list[dict[str, Any]], *, usage: TurnUsage | None = None
    ) -> dict[str, Any]:
        return generate_content_response(
            candidates,
            model_version=self.model_version,
            response_id=self.response_id,
            usage=None if usage is None else _usage(usage),
        )


@dataclass(frozen=True, slots=True)
class _Piece:
    """One candidate's next parts; its finish reason and usage once it ends."""

    parts: list[dict[str, Any]]
    finish: str | None = None
    usage: TurnUsage | None = None
    failed: bool = False
    logprobs: list[TokenLogprob] | None = None


async def _pieces(turn: StartedTurn) -> AsyncIterator[_Piece]:
    signature: str | None = None
    logprobs: list[TokenLogprob] = []
    async for event in turn.events():
        if isinstance(event, TokenLogprob):
            logprobs.append(event)
        elif type(event) is TextDelta:
            yield _Piece([text_part(event.text, signature=signature)], logprobs=logprobs)
            signature = None
            logprobs = []
        elif type(event) is ThoughtDelta:
            if turn.summaries:
                yield _Piece([text_part(event.text, thought=True)])
        elif isinstance(event, ThoughtEnd):
            signature = event.signature
        elif isinstance(event, CallEnd):
            # The whole call in one chunk, as Gemini sends it on this API.
            yield _Piece([call_part(event, signature)])
            signature = None
        elif isinstance(event, TurnDone):
            if event.error is not None:
                yield _Piece([], failed=True)
                return
            parts = [] if signature is None else [text_part("", signature=signature)]
            yield _Piece(parts, FINISH_REASONS[event.reason], event.usage)


async def stream_chunks(turns: Candidates, shape: ResponseShape) -> AsyncIterator[dict[str, Any]]:
    """One chunk per piece of text of one candidate (its ``index``); the usage of the whole
    request on the last chunk; a failure after the first byte is an ``error`` chunk."""
    usages: list[TurnUsage] = []
    try:
        async for index, piece in merged([_pieces(t) for t in turns.turns]):
            if piece.failed:
                yield {"error": GENERATION_FAILED}
                return
            usage = None
            if piece.usage is not None:
                usages.append(piece.usage)
                if len(usages) == len(turns.turns):
                    usage = _total(usages)
            yield shape.body(
                piece.parts, finish=piece.finish, usage=usage, index=index, logprobs=piece.logprobs
            )
    finally:
        turns.cancel()  # closing the stream early must stop generation


async def whole_response(turns: Candidates, shape: ResponseShape) -> dict[str, Any]:
    try:
        wholes = await asyncio.gather(*(turn.collect() for turn in turns.turns))
    finally:
        turns.cancel()
    if any(whole.done.error is not None for whole in wholes):
        raise Internal("Generation failed.")
    candidates = []
    for index, whole in enumerate(wholes):
        parts: list[dict[str, Any]] = []
        if turns.summaries and whole.thought:
            parts.append(text_part(whole.thought, thought=True))
        signature = whole.signature
        if whole.answer or (signature is not None and not whole.calls):
            parts.append(text_part(whole.answer, signature=signature))
            signature = None
        for call in whole.calls:
            parts.append(call_part(call, signature))
            signature = None
        finish = FINISH_REASONS[whole.done.reason]
        candidates.append(
            candidate(parts, finish_reason=finish, index=index, logprobs=whole.logprobs)
        )
    return shape.candidates(candidates, usage=_total([w.done.usage for w in wholes]))


def _total(usages: list[TurnUsage]) -> TurnUsage:
    """One request's usage: the prompt once (the candidates share it), every answer."""
    first = usages[0]
    return replace(
        first,
        output_tokens=sum(u.output_tokens for u in usages),
        thought_tokens=sum(u.thought_tokens for u in usages),
        estimated=any(u.estimated for u in usages),
    )


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
        estimated=usage.estimated,
    )
