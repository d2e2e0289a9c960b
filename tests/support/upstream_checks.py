"""Checks that the remote engine must pass against every real upstream (llama-server,
llama-cpp-python), each test module naming its own test for each: a cancel that stops the
upstream's decoding, JSON Schema and grammar output, and ``<think>`` tags parsed into
thoughts. ``decoding`` is how a module asks its upstream whether it is busy (a blocking
HTTP call: it runs in a thread)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import jsonschema

from gemserve.engine import (
    Constraint,
    FinishReason,
    ReasoningControl,
    TextDelta,
    ThoughtDelta,
)
from gemserve.engine.remote import RemoteEngine
from tests.support.remote import ask, drain, text_of, thought_of
from tests.support.wait import wait_for_async

# Long enough for a slow upstream to notice that the client went away; not a timing check.
STOP_DECODING_S = 5.0


async def stops_decoding(decoding: Callable[[], bool], what: str) -> None:
    """Waits (boundedly) until the upstream says it is not decoding."""

    async def idle() -> bool:
        return not await asyncio.to_thread(decoding)

    await wait_for_async(idle, seconds=STOP_DECODING_S, interval=0.05, what=what)


async def cancel_stops_the_upstream(
    upstream: RemoteEngine, decoding: Callable[[], bool], name: str
) -> None:
    """Cancels a long answer at its third text delta, while the upstream ``name`` is seen
    decoding it: the stream ends CANCELLED, the upstream stops, and no request is left."""
    request = ask("Write a very long story about a dragon.", max_tokens=2000, temperature=0.8)
    stream = await upstream.generate(request)
    seen = 0
    async for event in stream:
        if isinstance(event, TextDelta):
            seen += 1
            if seen == 3:
                assert await asyncio.to_thread(decoding)  # decoding right now
                stream.cancel()
        last = event
    assert last.reason is FinishReason.CANCELLED  # type: ignore[union-attr]
    await stops_decoding(decoding, f"{name} to stop decoding after the cancel")
    assert upstream.stats().active == 0


async def json_schema_output_validates(upstream: RemoteEngine) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    request = ask(
        "Invent a person; answer in JSON.",
        max_tokens=80,
        constraint=Constraint(json.dumps(schema), syntax="json_schema"),
    )
    events, finished = await drain(await upstream.generate(request))
    assert finished.reason is FinishReason.STOP
    jsonschema.validate(json.loads(text_of(events)), schema)


async def enum_output_is_one_of_the_values(upstream: RemoteEngine) -> None:
    request = ask(
        "Is the sky blue?",
        max_tokens=10,
        constraint=Constraint('start: "yes" | "no" | "maybe"', syntax="lark"),
    )
    events, _ = await drain(await upstream.generate(request))
    assert text_of(events) in ("yes", "no", "maybe")


async def think_tags_become_thoughts(upstream: RemoteEngine) -> None:
    """A ``<think>…</think>`` the model writes (forced by a grammar: the bundled model does
    not think) is the answer's thought, and no tag reaches its text or its thought."""
    grammar = 'root ::= "<think>" [a-z ]{4,30} "</think>" " "? [A-Za-z ]{2,30}'
    request = ask(
        "Say something.",
        max_tokens=60,
        temperature=0.7,
        reasoning=ReasoningControl(budget=200),
        constraint=Constraint(grammar, scope="output"),
    )
    events, finished = await drain(await upstream.generate(request))
    assert [type(e) for e in events][:1] == [ThoughtDelta]
    assert thought_of(events).strip()
    assert text_of(events).strip()
    assert "<think>" not in text_of(events) + thought_of(events)
    assert 0 < finished.thought_tokens <= finished.output_tokens
