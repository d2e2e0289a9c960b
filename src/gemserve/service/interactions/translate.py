"""A turn's events as the Interactions stream: ``interaction.created``, a ``thought`` step when
the model thought, the ``model_output`` step (always last, even when empty: the docs read
``steps[-1]``), then ``interaction.completed``. Per token this builds one small dict."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gemserve.engine import FinishReason, TextDelta, ThoughtDelta
from gemserve.protocol.common import iso_utc
from gemserve.protocol.interactions.events import GENERATION_FAILED, Event, EventSequencer
from gemserve.protocol.interactions.views import usage_dict
from gemserve.service.clock import Clock
from gemserve.service.turn import StartedTurn
from gemserve.service.turn_events import CallArguments, CallEnd, CallStart, ThoughtEnd, TurnDone

STATUS_BY_FINISH = {
    FinishReason.STOP: "completed",
    FinishReason.MAX_TOKENS: "incomplete",
    FinishReason.CONTEXT: "incomplete",
    FinishReason.CANCELLED: "cancelled",
    FinishReason.ERROR: "failed",
}


async def interaction_events(
    header: dict[str, Any], turn: StartedTurn, make: EventSequencer, clock: Clock
) -> AsyncIterator[Event]:
    try:
        yield make.created({**header, "status": "in_progress"})
        yield make.status_update(header["id"], "in_progress")
        index = -1
        thought_open = output_open = False
        calls = 0
        call_index: dict[int, int] = {}  # the turn's call number -> its step index
        done: TurnDone | None = None
        async for event in turn.events():
            if isinstance(event, CallStart):
                if output_open:
                    yield make.step_stop(index)
                    output_open = False
                index += 1
                call_index[event.index] = index
                step = {"type": "function_call", "id": event.id, "name": event.name}
                yield make.step_start(index, {**step, "arguments": {}})
            elif isinstance(event, CallArguments):
                yield make.arguments_delta(call_index[event.index], event.text)
            elif isinstance(event, CallEnd):
                calls += 1
                yield make.step_stop(call_index[event.index])
            elif type(event) is TextDelta:
                if not output_open:
                    index += 1
                    output_open = True
                    yield make.step_start(index, {"type": "model_output"})
                yield make.text_delta(index, event.text)
            elif type(event) is ThoughtDelta:
                if not thought_open:
                    index += 1
                    thought_open = True
                    yield make.step_start(index, {"type": "thought"})
                if turn.summaries:
                    yield make.thought_summary_delta(index, event.text)
            elif isinstance(event, ThoughtEnd):
                yield make.thought_signature_delta(index, event.signature)
                yield make.step_stop(index)
                thought_open = False
            elif isinstance(event, TurnDone):
                done = event
        assert done is not None
        if calls == 0 and not output_open and not call_index:
            # The docs read steps[-1].content[0].text: a turn without calls ends with text.
            index += 1
            output_open = True
            yield make.step_start(index, {"type": "model_output"})
        if output_open:
            yield make.step_stop(index)
        for number, step_index in call_index.items():
            if number >= calls:  # cut inside its arguments: it still closes
                yield make.step_stop(step_index)
        usage = done.usage
        if done.error is not None:
            yield make.error(GENERATION_FAILED)
        status = STATUS_BY_FINISH[done.reason]
        if calls and status == "completed":
            status = "requires_action"
        completed = {
            **header,
            "status": status,
            "updated": iso_utc(clock()),
            "usage": usage_dict(
                usage.input_tokens,
                usage.output_tokens,
                usage.thought_tokens,
                cached=usage.cached_tokens,
                input_by_modality=usage.input_by_modality,
                estimated=usage.estimated,
            ),
        }
        yield make.completed(completed)
    finally:
        turn.cancel()  # closing this generator early must stop generation
