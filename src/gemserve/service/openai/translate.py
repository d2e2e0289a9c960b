"""A turn's events as chat completions: the whole ``chat.completion``, or its chunks (the
answer's pieces as ``delta.content``, the thought's as ``delta.reasoning_content``; the last
chunk carries ``finish_reason``, then a usage chunk when ``stream_options.include_usage``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from gemserve.engine import FinishReason, TextDelta, ThoughtDelta, TokenLogprob
from gemserve.errors import Internal
from gemserve.protocol.openai.response import (
    chat_completion,
    chunk,
    completion_usage,
    logprobs_content,
    tool_call,
)
from gemserve.service.merge import merged
from gemserve.service.turn import Candidates, StartedTurn
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


async def _choice_chunks(
    turn: StartedTurn, shape: CompletionShape, index: int, usages: list[TurnUsage]
) -> AsyncIterator[dict[str, Any]]:
    ident = (shape.completion_id, shape.created, shape.model)
    calls = 0
    pending: list[TokenLogprob] = []
    yield chunk(*ident, {"role": "assistant", "content": ""}, index=index)
    async for event in turn.events():
        if isinstance(event, TokenLogprob):
            pending.append(event)
        elif isinstance(event, CallStart):
            start = {"index": event.index, **tool_call(event.id, event.name, "")}
            yield chunk(*ident, {"tool_calls": [start]}, index=index)
        elif isinstance(event, CallArguments):
            piece = {"index": event.index, "function": {"arguments": event.text}}
            yield chunk(*ident, {"tool_calls": [piece]}, index=index)
        elif isinstance(event, CallEnd):
            calls += 1
        elif type(event) is TextDelta:
            logprobs = logprobs_content(pending) if pending else None
            pending = []
            yield chunk(*ident, {"content": event.text}, index=index, logprobs=logprobs)
        elif type(event) is ThoughtDelta:
            if turn.summaries:
                yield chunk(*ident, {"reasoning_content": event.text}, index=index)
        elif isinstance(event, TurnDone):
            if event.error is not None:
                yield GENERATION_FAILED
                return
            usages.append(event.usage)
            yield chunk(*ident, {}, _finish(event.reason, calls), index=index)


async def stream_chunks(
    turns: Candidates, shape: CompletionShape, *, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    """The choices' chunks as they come (each with its ``index``), then the request's usage
    when ``stream_options.include_usage``."""
    usages: list[TurnUsage] = []
    try:
        streams = [_choice_chunks(turn, shape, i, usages) for i, turn in enumerate(turns.turns)]
        async for _, item in merged(streams):
            yield item
            if item is GENERATION_FAILED:
                return
        if include_usage:
            ident = (shape.completion_id, shape.created, shape.model)
            yield chunk(*ident, None, usage=_usage(_total(usages)))
    finally:
        turns.cancel()  # closing the stream early must stop generation


async def whole_completion(turns: Candidates, shape: CompletionShape) -> dict[str, Any]:
    try:
        wholes = await asyncio.gather(*(turn.collect() for turn in turns.turns))
    finally:
        turns.cancel()
    if any(whole.done.error is not None for whole in wholes):
        raise Internal("Generation failed.")
    choices: list[dict[str, Any]] = []
    for index, whole in enumerate(wholes):
        calls = [
            tool_call(c.id, c.name, json.dumps(c.arguments, ensure_ascii=False))
            for c in whole.calls
        ]
        single = chat_completion(
            shape.completion_id,
            shape.created,
            shape.model,
            whole.answer,
            _finish(whole.done.reason, len(whole.calls)),
            {},
            whole.thought if turns.summaries else None,
            calls,
        )
        choice = {**single["choices"][0], "index": index}
        if whole.logprobs:
            choice["logprobs"] = logprobs_content(whole.logprobs)
        choices.append(choice)
    usage = _usage(_total([w.done.usage for w in wholes]))
    return {**single, "choices": choices, "usage": usage}


def _total(usages: list[TurnUsage]) -> TurnUsage:
    """One request's usage: the prompt once (the choices share it), every answer."""
    first = usages[0]
    return replace(
        first,
        output_tokens=sum(u.output_tokens for u in usages),
        thought_tokens=sum(u.thought_tokens for u in usages),
        estimated=any(u.estimated for u in usages),
    )


def _finish(reason: FinishReason, calls: int) -> str:
    return "tool_calls" if calls and reason is FinishReason.STOP else FINISH_REASONS[reason]


def _usage(usage: TurnUsage) -> dict[str, Any]:
    return completion_usage(
        usage.input_tokens,
        usage.output_tokens,
        usage.thought_tokens,
        usage.cached_tokens,
        estimated=usage.estimated,
    )
