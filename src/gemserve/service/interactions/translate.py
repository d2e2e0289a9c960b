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
from gemserve.service.turn_events import ThoughtEnd, TurnDone

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
        done: TurnDone | None = None
        async for event in turn.events():
            if type(event) is TextDelta:
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
        if not output_open:
            index += 1
            yield make.step_start(index, {"type": "model_output"})
        yield make.step_stop(index)
        usage = done.usage
        if done.error is not None:
            yield make.error(GENERATION_FAILED)
        completed = {
            **header,
            "status": STATUS_BY_FINISH[done.reason],
            "updated": iso_utc(clock()),
            "usage": usage_dict(
                usage.input_tokens,
                usage.output_tokens,
                usage.thought_tokens,
                cached=usage.cached_tokens,
                input_by_modality=usage.input_by_modality,
            ),
        }
        yield make.completed(completed)
    finally:
        turn.cancel()  # closing this generator early must stop generation
