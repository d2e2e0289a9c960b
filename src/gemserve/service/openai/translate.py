"""A turn's events as chat completions: the whole ``chat.completion``, or its chunks (the
answer's pieces as ``delta.content``, the thought's as ``delta.reasoning_content``; the last
chunk carries ``finish_reason``, then a usage chunk when ``stream_options.include_usage``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gemserve.engine import FinishReason, TextDelta, ThoughtDelta
from gemserve.errors import Internal
from gemserve.protocol.openai.response import (
    chat_completion,
    chunk,
    completion_usage,
    tool_call,
)
from gemserve.service.turn import StartedTurn
from gemserve.service.turn_events import CallArguments, CallEnd, CallStart, TurnDone, TurnUsage

FINISH_REASONS = {
    FinishReason.STOP: "stop",
    FinishReason.MAX_TOKENS: "length",
    FinishReason.CONTEXT: "length",
    FinishReason.CANCELLED: "stop",
}
GENERATION_FAILED = {
    "error": {"message": "Generation failed.", "type": "server_error", "param": None, "code": None}
}


@dataclass(frozen=True)
class CompletionShape:
    """What every response of one request repeats."""

    completion_id: str
    created: int
    model: str


async def stream_chunks(
    turn: StartedTurn, shape: CompletionShape, *, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    ident = (shape.completion_id, shape.created, shape.model)
    calls = 0
    try:
        yield chunk(*ident, {"role": "assistant", "content": ""})
        async for event in turn.events():
            if isinstance(event, CallStart):
                start = {"index": event.index, **tool_call(event.id, event.name, "")}
                yield chunk(*ident, {"tool_calls": [start]})
            elif isinstance(event, CallArguments):
                piece = {"index": event.index, "function": {"arguments": event.text}}
                yield chunk(*ident, {"tool_calls": [piece]})
            elif isinstance(event, CallEnd):
                calls += 1
            elif type(event) is TextDelta:
                yield chunk(*ident, {"content": event.text})
            elif type(event) is ThoughtDelta:
                if turn.summaries:
                    yield chunk(*ident, {"reasoning_content": event.text})
            elif isinstance(event, TurnDone):
                if event.error is not None:
                    yield GENERATION_FAILED
                    return
                yield chunk(*ident, {}, _finish(event.reason, calls))
                if include_usage:
                    yield chunk(*ident, None, usage=_usage(event.usage))
    finally:
        turn.cancel()  # closing the stream early must stop generation


async def whole_completion(turn: StartedTurn, shape: CompletionShape) -> dict[str, Any]:
    whole = await turn.collect()
    if whole.done.error is not None:
        raise Internal("Generation failed.")
    return chat_completion(
        shape.completion_id,
        shape.created,
        shape.model,
        whole.answer,
        _finish(whole.done.reason, len(whole.calls)),
        _usage(whole.done.usage),
        whole.thought if turn.summaries else None,
        [tool_call(c.id, c.name, json.dumps(c.arguments, ensure_ascii=False)) for c in whole.calls],
    )


def _finish(reason: FinishReason, calls: int) -> str:
    return "tool_calls" if calls and reason is FinishReason.STOP else FINISH_REASONS[reason]


def _usage(usage: TurnUsage) -> dict[str, Any]:
    return completion_usage(
        usage.input_tokens, usage.output_tokens, usage.thought_tokens, usage.cached_tokens
    )
