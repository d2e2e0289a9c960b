"""The Interactions service: validate, resolve the model, run the engine, emit events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from gemserve.config import Limits, ModelRegistry
from gemserve.engine import Engine, Finished, GenerationRequest, GenerationStream, TextDelta
from gemserve.errors import InvalidArgument, Unavailable
from gemserve.protocol.interactions import CreateInteraction, parse_input, usage_dict
from gemserve.service.clock import Clock, IdFactory, iso_utc, new_interaction_id, utc_now
from gemserve.service.conversation import build_messages
from gemserve.service.events import STATUS_BY_FINISH, EventSequencer, InteractionFold
from gemserve.service.sampling import sampling_params

log = logging.getLogger("gemserve.interactions")

# Fields of the schema that this server does not serve yet: a clear 400, never a silent drop.
_NOT_SERVED = (
    "background",
    "previous_interaction_id",
    "tools",
    "response_format",
    "continuation_token",
    "cached_content",
    "environment",
    "webhook_config",
    "agent",
    "agent_config",
)


class InteractionRun:
    """One admitted interaction: iterate :meth:`events` (streaming) or await :meth:`collect`."""

    def __init__(self, header: dict[str, Any], stream: GenerationStream, clock: Clock) -> None:
        self.id: str = header["id"]
        self._clock = clock
        self._header = header
        self._stream = stream
        self._seq = EventSequencer()

    def cancel(self) -> None:
        self._stream.cancel()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        make = self._seq.make
        header = self._header
        try:
            yield make("interaction.created", {"interaction": {**header, "status": "in_progress"}})
            yield make(
                "interaction.status_update", {"interaction_id": self.id, "status": "in_progress"}
            )
            yield make("step.start", {"index": 0, "step": {"type": "model_output"}})
            finished: Finished | None = None
            async for event in self._stream:
                if isinstance(event, TextDelta):
                    yield make(
                        "step.delta", {"index": 0, "delta": {"type": "text", "text": event.text}}
                    )
                else:
                    finished = event
            assert finished is not None
            usage = usage_dict(finished.prompt_tokens, finished.output_tokens)
            yield make("step.stop", {"index": 0})
            if finished.error is not None:
                yield make(
                    "error", {"error": {"code": "INTERNAL", "message": "Generation failed."}}
                )
                log.error("interaction %s failed in the engine: %s", self.id, finished.error)
            status = STATUS_BY_FINISH[finished.reason]
            log.info(
                "interaction %s %s: %d input, %d output tokens",
                self.id,
                status,
                finished.prompt_tokens,
                finished.output_tokens,
            )
            yield make(
                "interaction.completed",
                {
                    "interaction": {
                        **header,
                        "status": status,
                        "updated": iso_utc(self._clock()),
                        "usage": usage,
                    }
                },
            )
        finally:
            # Closing this generator early (client gone) must stop generation.
            self._stream.cancel()

    async def collect(self) -> dict[str, Any]:
        fold = InteractionFold()
        async for event in self.events():
            fold.apply(event)
        return fold.result()


class InteractionService:
    def __init__(
        self,
        registry: ModelRegistry,
        engines: Mapping[str, Engine],
        limits: Limits,
        *,
        clock: Clock = utc_now,
        new_id: IdFactory = new_interaction_id,
    ) -> None:
        self._registry = registry
        self._engines = engines
        self._limits = limits
        self._clock = clock
        self._new_id = new_id

    async def create(self, body: Any) -> tuple[CreateInteraction, InteractionRun]:
        """Validate and admit; every client error is raised here, before any response starts."""
        request = CreateInteraction.parse(body)
        if request.model is None:
            raise InvalidArgument("Missing required field 'model'.")
        self._reject_unserved(request)
        resolved = self._registry.resolve(request.model)
        engine = self._engines.get(resolved.spec.id)
        if engine is None or not engine.ready:
            raise Unavailable(f"Model {resolved.spec.id!r} is still loading; retry shortly.")
        steps = parse_input(request.input, max_parts=self._limits.max_input_parts)
        messages = build_messages(
            steps, request.system_instruction, engine.capabilities(), self._limits
        )
        sampling = sampling_params(request.generation_config, resolved.spec, self._limits)
        interaction_id = self._new_id()
        stream = await engine.generate(GenerationRequest(messages, sampling, interaction_id))
        now = iso_utc(self._clock())
        header = {
            "id": interaction_id,
            "name": interaction_id,
            "object": "interaction",
            "model": request.model,
            "created": now,
            "updated": now,
        }
        return request, InteractionRun(header, stream, self._clock)

    @staticmethod
    def _reject_unserved(request: CreateInteraction) -> None:
        for name in _NOT_SERVED:
            value = getattr(request, name)
            if value not in (None, False, []):
                raise InvalidArgument(
                    f"Invalid value at '{name}': not supported by this server yet."
                )
        if request.response_mime_type not in (None, "text/plain"):
            raise InvalidArgument(
                "Invalid value at 'response_mime_type': only text/plain is supported."
            )
        if request.response_modalities not in (None, ["text"], ["TEXT"]):
            raise InvalidArgument(
                "Invalid value at 'response_modalities': only text output is supported."
            )
