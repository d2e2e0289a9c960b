"""The Interactions service: create (foreground, streaming, background), get, resume, cancel.

Every create validates and admits the request before anything is returned, so client errors
surface as HTTP errors. Generation then runs in a :class:`LiveInteraction` owned by the server.
Stored interactions keep their events in order; the final Interaction is their fold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from gemserve.config import Limits
from gemserve.errors import FailedPrecondition, NotFound, Unavailable
from gemserve.protocol.interactions import CreateInteraction, InputStep, parse_input
from gemserve.protocol.interactions.events import (
    RECOVERY_SEQ,
    Event,
    EventSequencer,
    next_event,
    parse_event_id,
)
from gemserve.protocol.interactions.fold import InteractionFold
from gemserve.protocol.interactions.status import TERMINAL_STATUSES
from gemserve.protocol.interactions.views import (
    conversation_item,
    interaction_header,
    interaction_view,
)
from gemserve.service.clock import Clock, IdFactory, new_interaction_id, utc_now
from gemserve.service.cluster import Replica
from gemserve.service.interactions.history import check_interaction_id, load_chain
from gemserve.service.interactions.recovery import (
    INTERRUPTED,
    REPLICA_LOST,
    close_interrupted,
    recover_interrupted,
)
from gemserve.service.interactions.translate import interaction_events
from gemserve.service.interactions.turns import history_items, turn_input
from gemserve.service.journal import EventJournal
from gemserve.service.live import LiveInteraction, LiveRegistry
from gemserve.service.paging import page_window
from gemserve.service.turn import TurnPipeline
from gemserve.service.turn_input import ConversationItem
from gemserve.store import InteractionRecord, Store

log = logging.getLogger("gemserve.interactions")


class InteractionService:
    def __init__(
        self,
        turns: TurnPipeline,
        limits: Limits,
        store: Store,
        *,
        retention: timedelta = timedelta(days=55),
        clock: Clock = utc_now,
        new_id: IdFactory = new_interaction_id,
        replica: Replica | None = None,
        cancel_wait_seconds: float = 30.0,
    ) -> None:
        self._turns = turns
        self._limits = limits
        self._store = store
        self._retention = retention
        self._clock = clock
        self._new_id = new_id
        self.live = LiveRegistry()
        self._journal = EventJournal(store)
        # With replicas: this one's id (the owner of what it runs) and the cluster's store.
        self._replica = replica
        self._cancel_wait = cancel_wait_seconds

    async def recover_interrupted(self) -> int:
        """At start: close the interactions a crash cut short (see ``recovery.py``)."""
        if self._replica is not None:
            return await self.close_orphans()
        return await recover_interrupted(self._store, self._clock)

    async def close_orphans(self) -> int:
        """Close the running interactions whose replica is gone (a lease duty)."""
        assert self._replica is not None
        closed = 0
        for record in await self._replica.orphaned_interactions():
            if self.live.get(record.tenant, record.id) is not None:
                continue  # our own, just created (its owner is this replica)
            lost = record.owner is not None and self._replica.shared
            error = REPLICA_LOST if lost else INTERRUPTED
            if await close_interrupted(self._store, record, self._clock, error):
                closed += 1
                log.warning(
                    "interaction %s failed: %s", record.id, "its replica was lost" if lost
                    else "the server stopped while generating it"
                )  # fmt: skip
        if closed:
            await self._replica.forget_lost()
        return closed

    async def deliver_cancels(self) -> None:
        """Cancel the runs other replicas were asked to cancel (a poll duty)."""
        if self._replica is None or not self._replica.shared or not len(self.live):
            return
        for interaction_id in await self._replica.store.cancel_requests(self._replica.id):
            run = self.live.find(interaction_id)
            if run is not None:
                log.info("interaction %s: cancelled from another replica", interaction_id)
                run.cancel()

    async def shutdown(self, drain_seconds: float = 0.0) -> None:
        """Let the running interactions finish for up to ``drain_seconds``, cancel the rest,
        let them store their final state, stop writing."""
        await self.live.shutdown(drain_seconds=drain_seconds)
        await self._journal.close()

    # ----- create ----------------------------------------------------------------------------

    async def create(
        self, body: Any, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> tuple[CreateInteraction, LiveInteraction]:
        """Validate, rebuild history, prepare the turn, admit it and start the run.

        ``own_hosts`` are the host[:port] names this request reached the server by, so file
        uris the server handed out can be recognised.
        """
        request = CreateInteraction.parse(body)
        self._turns.model(str(request.model))  # an unknown or loading model fails first
        steps = parse_input(request.input, max_parts=self._limits.max_input_parts)
        history = await self._history(request, tenant)
        turn = turn_input(request, steps, history)
        prepared = await self._turns.prepare(turn, tenant=tenant, own_hosts=own_hosts)
        # Everything that can fail on the request is done before the engine admits it.
        record = self._new_record(request, steps, tenant)
        started = await prepared.admit(record.id)
        try:
            header = interaction_header(record)
            sequencer = EventSequencer(record.id)
            run = LiveInteraction(
                record,
                header,
                interaction_events(header, started, sequencer, self._clock),
                started.cancel,
                sequencer,
                self._store if request.store else None,
                self._clock,
                journal=self._journal,
                on_done=self.live.discard,
            )
        except BaseException:
            started.cancel()  # admitted: never leave a slot decoding for nobody
            raise
        try:
            await run.start()
        except Exception:
            started.cancel()
            log.exception("interaction %s could not be stored", record.id)
            raise Unavailable("The interaction store is unavailable; retry shortly.") from None
        if request.store:
            self.live.add(run)
        return request, run

    async def _history(self, request: CreateInteraction, tenant: str) -> list[ConversationItem]:
        if request.previous_interaction_id is None:
            return []
        previous = check_interaction_id(request.previous_interaction_id, "previous_interaction_id")
        chain = await load_chain(
            self._store, tenant, previous, self._clock(), self._limits.max_conversation_turns
        )
        return history_items(chain)

    def _new_record(
        self, request: CreateInteraction, steps: list[InputStep], tenant: str
    ) -> InteractionRecord:
        now = self._clock()
        config = request.generation_config
        return InteractionRecord(
            id=self._new_id(),
            tenant=tenant,
            model=str(request.model),
            status="in_progress",
            created_at=now,
            updated_at=now,
            expires_at=now + self._retention,
            input=[step.model_dump(mode="json", exclude_none=True) for step in steps],
            system_instruction=request.system_instruction,
            generation_config=(
                config.model_dump(mode="json", exclude_none=True) if config is not None else None
            ),
            previous_interaction_id=request.previous_interaction_id,
            background=request.background,
            owner=self._replica.id if self._replica is not None else None,
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
        run = self.live.get(tenant, interaction_id)
        running = run.result() if run is not None and not run.done.is_set() else None
        if run is None and record.status not in TERMINAL_STATUSES:
            running = await self._stored_fold(record)  # generated by another replica
        return interaction_view(record, running, include_input=include_input)

    async def conversations(
        self, tenant: str, page_size: str | None, page_token: str | None
    ) -> dict[str, Any]:
        """The last turn of each of the tenant's conversations, newest first (a gemserve
        extension for the playground: Gemini lists no interactions)."""
        offset, size = page_window(page_size, page_token, 20, 100)
        records = await self._store.list_conversations(tenant, self._clock(), offset, size + 1)
        page: dict[str, Any] = {"interactions": [conversation_item(r) for r in records[:size]]}
        if len(records) > size:
            page["next_page_token"] = str(offset + size)
        return page

    async def _stored_fold(self, record: InteractionRecord) -> dict[str, Any]:
        fold = InteractionFold()
        for event in await self._store.get_events(record.id, 0):
            fold.apply(event)
        return fold.result()

    async def events(
        self,
        tenant: str,
        interaction_id: str,
        last_event_id: str | None,
        *,
        idle_seconds: float | None = None,
    ) -> AsyncIterator[Event | None]:
        """Validate now; the iterator replays events after ``last_event_id``, then follows."""
        record = await self._record(tenant, interaction_id)
        after = parse_event_id(last_event_id, interaction_id) if last_event_id else 0
        run = self.live.get(tenant, interaction_id)
        if run is not None:
            return run.follow(after, idle_seconds=idle_seconds)
        if record.status not in TERMINAL_STATUSES and self._replica is not None:
            return self._tail(record, after, idle_seconds)
        return self._replay(record, after)

    async def _tail(
        self, record: InteractionRecord, after: int, idle_seconds: float | None
    ) -> AsyncIterator[Event | None]:
        """Follow an interaction another replica generates: its stored events, polled every
        ``poll_seconds`` (they are stored every ``journal.FLUSH_SECONDS`` while it runs), until
        its log is closed."""
        assert self._replica is not None
        poll = self._replica.poll_seconds
        idle = 0.0
        while True:
            events = await self._store.get_events(record.id, after)
            index = 0
            while index < len(events):
                event, index = next_event(events, index)
                yield event
                after = parse_event_id(event["event_id"], record.id)
                if event["event_type"] == "interaction.completed":
                    return
            if events:
                idle = 0.0
                continue
            current = await self._store.get_interaction(record.tenant, record.id, self._clock())
            if current is None:
                return  # deleted meanwhile
            if current.status in TERMINAL_STATUSES:
                async for event in self._replay(current, after):
                    yield event
                return
            await asyncio.sleep(poll)
            idle += poll
            if idle_seconds is not None and idle >= idle_seconds:
                idle = 0.0
                yield None

    async def _replay(self, record: InteractionRecord, after: int) -> AsyncIterator[Event]:
        events = await self._store.get_events(record.id, after)
        index = 0
        while index < len(events):
            event, index = next_event(events, index)
            yield event
        if record.status in TERMINAL_STATUSES and not await self._log_is_closed(record, events):
            # Closed by an older server, which stored no verdict: give it one, numbered as
            # recovery numbers it (never an id the client may have seen).
            sequencer = EventSequencer(record.id, next_seq=RECOVERY_SEQ)
            verdict = []
            if record.error is not None:
                verdict.append(sequencer.error(record.error))
            view = interaction_view(record)
            del view["steps"]
            verdict.append(sequencer.completed(view))
            for event in verdict:
                if parse_event_id(event["event_id"], record.id) > after:
                    yield event

    async def _log_is_closed(self, record: InteractionRecord, tail: list[Event]) -> bool:
        if tail:
            return bool(tail[-1]["event_type"] == "interaction.completed")
        whole = await self._store.get_events(record.id, 0)
        return not whole or whole[-1]["event_type"] == "interaction.completed"

    async def cancel(self, tenant: str, interaction_id: str) -> dict[str, Any]:
        record = await self._record(tenant, interaction_id)
        run = self.live.get(tenant, interaction_id)
        if run is not None:
            run.cancel()
            await run.wait()
        elif not await self._cancel_elsewhere(record):
            raise FailedPrecondition(
                f"Interaction {interaction_id!r} is already {record.status}; only an interaction "
                "in progress can be cancelled."
            )
        return await self.get(tenant, interaction_id)

    async def _cancel_elsewhere(self, record: InteractionRecord) -> bool:
        """Ask the replica generating ``record`` to cancel it and wait until it has ended;
        False if it is not running."""
        if self._replica is None or record.status in TERMINAL_STATUSES:
            return False
        if not await self._replica.store.request_cancel(record.id):
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cancel_wait
        while loop.time() < deadline:
            current = await self._store.get_interaction(record.tenant, record.id, self._clock())
            if current is None or current.status in TERMINAL_STATUSES:
                return True
            await asyncio.sleep(self._replica.poll_seconds)
        raise Unavailable(
            f"Interaction {record.id!r} is generated by another replica, which has not "
            f"confirmed the cancel within {self._cancel_wait:g} s; it will stop, or fail once "
            "that replica is declared lost."
        )

    async def delete(self, tenant: str, interaction_id: str) -> None:
        check_interaction_id(interaction_id)
        run = self.live.get(tenant, interaction_id)
        if run is not None:
            run.cancel()
            await run.wait()
        elif self._replica is not None:
            # Generated elsewhere: its replica stops it (its last writes then find no row).
            await self._replica.store.request_cancel(interaction_id)
        if not await self._store.delete_interaction(tenant, interaction_id):
            raise NotFound(f"Interaction {interaction_id!r} was not found.")
