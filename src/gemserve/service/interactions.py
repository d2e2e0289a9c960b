"""The Interactions service: create (foreground, streaming, background), get, resume, cancel.

Every create validates and admits the request before anything is returned, so client errors
surface as HTTP errors. Generation then runs in a :class:`LiveInteraction` owned by the server.
Stored interactions keep their events in order; the final Interaction is their fold.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

from gemserve.config import Limits, ModelRegistry
from gemserve.engine import ChatMessage, Engine, GenerationRequest, GenerationStream
from gemserve.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from gemserve.protocol.interactions import CreateInteraction, InputStep, parse_input
from gemserve.service.clock import Clock, IdFactory, iso_utc, new_interaction_id, utc_now
from gemserve.service.conversation import build_messages
from gemserve.service.events import (
    TERMINAL_STATUSES,
    EventSequencer,
    ThoughtSealer,
    next_event,
    parse_event_id,
)
from gemserve.service.history import check_interaction_id, history_steps, load_chain
from gemserve.service.journal import EventJournal
from gemserve.service.live import LiveInteraction, LiveRegistry
from gemserve.service.media import MediaPipeline
from gemserve.service.sampling import sampling_params
from gemserve.service.signatures import ThoughtSigner
from gemserve.service.thinking import ThinkingPlan, plan_thinking, restore_thoughts, start_turn
from gemserve.service.usage import InputAccounting
from gemserve.store import InteractionRecord, Store

log = logging.getLogger("gemserve.interactions")

# Fields of the schema that this server does not serve yet: a clear 400, never a silent drop.
_NOT_SERVED = (
    "tools",
    "response_format",
    "continuation_token",
    "cached_content",
    "environment",
    "webhook_config",
    "agent",
    "agent_config",
)


class InteractionService:
    def __init__(
        self,
        registry: ModelRegistry,
        engines: Mapping[str, Engine],
        limits: Limits,
        store: Store,
        media: MediaPipeline,
        signer: ThoughtSigner,
        *,
        retention: timedelta = timedelta(days=55),
        clock: Clock = utc_now,
        new_id: IdFactory = new_interaction_id,
    ) -> None:
        self._registry = registry
        self._engines = engines
        self._limits = limits
        self._store = store
        self._media = media
        self._signer = signer
        self._retention = retention
        self._clock = clock
        self._new_id = new_id
        self.live = LiveRegistry()
        self._journal = EventJournal(store)

    async def shutdown(self) -> None:
        """Cancel the running interactions, let them store their final state, stop writing."""
        await self.live.shutdown()
        await self._journal.close()

    # ----- create ----------------------------------------------------------------------------

    async def create(
        self, body: Any, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> tuple[CreateInteraction, LiveInteraction]:
        """Validate, rebuild history, decode media, admit to the engine and start the run.

        ``own_hosts`` are the host[:port] names this request reached the server by, so file
        uris the server handed out can be recognised.
        """
        request = CreateInteraction.parse(body)
        if request.model is None:
            raise InvalidArgument("Missing required field 'model'.")
        self._reject_unserved(request)
        resolved = self._registry.resolve(request.model)
        engine = self._engines.get(resolved.spec.id)
        if engine is None or not engine.ready:
            raise Unavailable(f"Model {resolved.spec.id!r} is still loading; retry shortly.")
        steps = parse_input(request.input, max_parts=self._limits.max_input_parts)
        now = self._clock()
        history: list[InputStep] = []
        if request.previous_interaction_id is not None:
            previous = check_interaction_id(
                request.previous_interaction_id, "previous_interaction_id"
            )
            chain = await load_chain(
                self._store, tenant, previous, now, self._limits.max_conversation_turns
            )
            history = history_steps(chain)
        conversation = restore_thoughts(
            [*history, *steps], self._signer, resolved.spec.thinking, stored=len(history)
        )
        messages, accounting = await self._model_input(
            conversation, request.system_instruction, engine, tenant, own_hosts
        )
        sampling = sampling_params(request.generation_config, resolved.spec, self._limits)
        plan = plan_thinking(request.generation_config, resolved.spec)
        interaction_id = self._new_id()
        # Everything that can fail on the request is done before the engine admits it.
        record = InteractionRecord(
            id=interaction_id,
            tenant=tenant,
            model=request.model,
            status="in_progress",
            created_at=now,
            updated_at=now,
            expires_at=now + self._retention,
            input=[step.model_dump(mode="json", exclude_none=True) for step in steps],
            system_instruction=request.system_instruction,
            generation_config=(
                request.generation_config.model_dump(mode="json", exclude_none=True)
                if request.generation_config is not None
                else None
            ),
            previous_interaction_id=request.previous_interaction_id,
            background=request.background,
        )
        header = _header(record)
        try:
            stream = await start_turn(
                engine, GenerationRequest(messages, sampling, interaction_id), plan
            )
        except InvalidArgument as exc:
            if history:
                raise InvalidArgument(
                    f"{exc.message} The history of {len(history)} earlier steps counts toward "
                    "the context; start a new conversation or shorten it."
                ) from None
            raise
        try:
            run = self._run(request, record, header, stream, accounting, resolved.spec.id, plan)
        except BaseException:
            stream.cancel()  # admitted: never leave a slot decoding for nobody
            raise
        try:
            await run.start()
        except Exception:
            stream.cancel()
            log.exception("interaction %s could not be stored", interaction_id)
            raise Unavailable("The interaction store is unavailable; retry shortly.") from None
        if request.store:
            self.live.add(run)
        return request, run

    def _run(
        self,
        request: CreateInteraction,
        record: InteractionRecord,
        header: dict[str, Any],
        stream: GenerationStream,
        accounting: InputAccounting,
        model_id: str,
        plan: ThinkingPlan,
    ) -> LiveInteraction:
        return LiveInteraction(
            record,
            header,
            stream,
            self._store if request.store else None,
            self._clock,
            journal=self._journal,
            on_done=self.live.discard,
            accounting=accounting,
            thoughts=ThoughtSealer(self._signer, model_id, record.id, summaries=plan.summaries),
        )

    async def _model_input(
        self,
        steps: list[InputStep],
        system_instruction: str | None,
        engine: Engine,
        tenant: str,
        own_hosts: frozenset[str],
    ) -> tuple[tuple[ChatMessage, ...], InputAccounting]:
        """Media decoded and rendered for this model, as chat messages, with the accounting
        of input tokens by modality."""
        prepared = await self._media.prepare(
            steps,
            tenant=tenant,
            model=engine.capabilities(),
            others={model_id: e.capabilities() for model_id, e in self._engines.items()},
            own_hosts=own_hosts,
        )
        messages = build_messages(prepared, system_instruction, self._limits)
        derived = [
            (modality, len(await engine.tokenize(text))) for modality, text in prepared.derived_text
        ]
        accounting = InputAccounting(tuple(prepared.media_modalities), tuple(derived))
        return messages, accounting

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
        if not request.store and request.previous_interaction_id is not None:
            raise InvalidArgument(
                "Invalid value at 'store': previous_interaction_id needs stored interactions; "
                "with store=false send the history as input steps."
            )
        if not request.store and request.background:
            raise InvalidArgument(
                "Invalid value at 'store': background interactions must be stored."
            )

    # ----- read, resume, cancel, delete ------------------------------------------------------

    async def _record(self, tenant: str, interaction_id: str) -> InteractionRecord:
        check_interaction_id(interaction_id)
        record = await self._store.get_interaction(tenant, interaction_id, self._clock())
        if record is None:
            raise NotFound(f"Interaction {interaction_id!r} was not found.")
        return record

    async def get(
        self, tenant: str, interaction_id: str, *, include_input: bool = False
    ) -> dict[str, Any]:
        record = await self._record(tenant, interaction_id)
        return interaction_view(record, self.live.get(tenant, interaction_id), include_input)

    async def events(
        self,
        tenant: str,
        interaction_id: str,
        last_event_id: str | None,
        *,
        idle_seconds: float | None = None,
    ) -> AsyncIterator[dict[str, Any] | None]:
        """Validate now; the iterator replays events after ``last_event_id``, then follows."""
        record = await self._record(tenant, interaction_id)
        after = parse_event_id(last_event_id, interaction_id) if last_event_id else 0
        run = self.live.get(tenant, interaction_id)
        if run is not None:
            return run.follow(after, idle_seconds=idle_seconds)
        return self._replay(record, after)

    async def _replay(self, record: InteractionRecord, after: int) -> AsyncIterator[dict[str, Any]]:
        events = await self._store.get_events(record.id, after)
        index = 0
        while index < len(events):
            event, index = next_event(events, index)
            yield event
        last = events[-1]["event_type"] if events else None
        if record.status in TERMINAL_STATUSES and last not in (None, "interaction.completed"):
            # Interrupted by a crash: the log has no end, so close it with the stored verdict.
            sequencer = EventSequencer(record.id)
            sequencer.next_seq = after + len(events) + 1
            if record.error is not None:
                yield sequencer.make("error", {"error": record.error})
            view = interaction_view(record, None, include_input=False)
            del view["steps"]
            yield sequencer.make("interaction.completed", {"interaction": view})

    async def cancel(self, tenant: str, interaction_id: str) -> dict[str, Any]:
        record = await self._record(tenant, interaction_id)
        run = self.live.get(tenant, interaction_id)
        if run is None:
            raise FailedPrecondition(
                f"Interaction {interaction_id!r} is already {record.status}; only an interaction "
                "in progress can be cancelled."
            )
        run.cancel()
        await run.wait()
        return await self.get(tenant, interaction_id)

    async def delete(self, tenant: str, interaction_id: str) -> None:
        check_interaction_id(interaction_id)
        run = self.live.get(tenant, interaction_id)
        if run is not None:
            run.cancel()
            await run.wait()
        if not await self._store.delete_interaction(tenant, interaction_id):
            raise NotFound(f"Interaction {interaction_id!r} was not found.")


def _header(record: InteractionRecord) -> dict[str, Any]:
    created = iso_utc(record.created_at)
    header: dict[str, Any] = {
        "id": record.id,
        "name": record.id,
        "object": "interaction",
        "model": record.model,
        "created": created,
        "updated": created,
    }
    if record.previous_interaction_id is not None:
        header["previous_interaction_id"] = record.previous_interaction_id
    return header


def interaction_view(
    record: InteractionRecord, run: LiveInteraction | None, include_input: bool
) -> dict[str, Any]:
    """The full timeline of a stored interaction: its input steps, then its output so far."""
    out = _header(record)
    if run is not None and not run.done.is_set():
        folded = run.fold.result()
        status, output, usage = folded["status"], folded["steps"], folded.get("usage")
        out["updated"] = folded.get("updated", out["updated"])
    else:
        status, output, usage = record.status, record.steps, record.usage
        out["updated"] = iso_utc(record.updated_at)
    out["status"] = status
    out["steps"] = [*record.input, *output]
    if usage is not None:
        out["usage"] = usage
    if record.system_instruction is not None:
        out["system_instruction"] = record.system_instruction
    if record.generation_config is not None:
        out["generation_config"] = record.generation_config
    if record.error is not None and status in TERMINAL_STATUSES:
        out["errors"] = [record.error]
    if include_input:
        out["input"] = record.input
    return out
