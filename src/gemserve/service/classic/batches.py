"""Batches: ``models/{model}:batchGenerateContent`` stores a batch of generate requests and
returns at once; a server-owned runner decodes them in the background through the same
classic pipeline as ``generateContent`` (``GenerateContentService.start``), and each result is
stored as it finishes. ``models/{model}:asyncBatchEmbedContent`` stores a batch of embedding
requests (kind ``embed``) that the same runner answers through the shared embedding service
(``embed_batches.py``); everything else below holds for both kinds.

- At most ``concurrency`` batch requests decode at once, server-wide, oldest batch first; the
  engine's other slots stay free for interactive requests. A request that meets a full engine
  queue (429) or a loading model (503) waits and tries again; it never fails for that.
- State lives in the store (one row per request), so a restart resumes: requests already
  answered keep their results, the others (the one cut short included) run again.
- ``cancel`` stops the batch within one decode step; requests that had not finished are
  answered with a CANCELLED error. A batch still running ``deadline`` after its creation ends
  EXPIRED the same way. An ended batch is deleted ``ttl`` after it ended.
- Replicas sharing one database each run a runner: a runner claims a batch before running it
  (``BatchStore.claim_batch``: one replica per batch) for ``lease``, renewed every third of it.
  A batch whose lease ran out (its replica died) is claimed by another replica, which runs the
  requests still pending; a clean shutdown releases its claims at once. The database's state
  is the truth: a batch ended or deleted elsewhere (a cancel served by another replica) is
  stopped here at its next renewal, or as soon as one of its requests finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import string
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

import orjson

from gemserve.config import Limits
from gemserve.errors import (
    AlreadyExists,
    GemserveError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from gemserve.protocol.classic.batches import (
    EMBED_KIND,
    GENERATE_KIND,
    REQUESTS_PATH,
    BatchGenerateContent,
    InlinedRequest,
    batch_id_from_name,
    batch_operation,
    inlined_response,
    output_line,
    parse_input_file,
    rpc_status,
)
from gemserve.protocol.classic.embed_batches import AsyncBatchEmbedContent
from gemserve.protocol.classic.request import GenerateContentRequest
from gemserve.service.classic.embed_batches import BatchEmbeddings
from gemserve.service.classic.service import GenerateContentService
from gemserve.service.classic.translate import whole_response
from gemserve.service.classic.turns import turn_input
from gemserve.service.clock import Clock, utc_now
from gemserve.service.embeddings import EmbeddingService
from gemserve.service.files import FileService
from gemserve.service.paging import page_window
from gemserve.service.turn import TurnPipeline
from gemserve.store.batches import (
    ACTIVE_STATES,
    CANCELLED,
    EXPIRED,
    FAILED,
    ITEM_PENDING,
    PENDING,
    RUNNING,
    SUCCEEDED,
    BatchItemRecord,
    BatchRecord,
    BatchStore,
)

log = logging.getLogger("gemserve.batches")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# The runner also looks for work this often (a wake-up is the usual way), and at least once
# a lease (a batch left by a replica that died is found soon after its lease runs out).
POLL_SECONDS = 30.0
# A runner's claim on a batch holds this long unless renewed (every third of it).
DEFAULT_LEASE = timedelta(seconds=30)
# Waits before a request that met a full queue or a loading model tries again.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0
_ID_ALPHABET = string.ascii_lowercase + string.digits
FILE_PATH = "batch.input_config.file_name"
INTERNAL_ERROR = "Internal error; the server log has the details."

# What a request not answered when its batch ended gets instead of a response.
UNANSWERED = {
    CANCELLED: ("CANCELLED", "The batch was cancelled before this request finished."),
    EXPIRED: ("DEADLINE_EXCEEDED", "The batch expired before this request ran."),
    FAILED: ("ABORTED", "The batch failed before this request ran."),
    SUCCEEDED: ("INTERNAL", "This request was not answered."),
}

Outcome = tuple[dict[str, Any] | None, dict[str, Any] | None]  # (response, error)
# A request's body, metadata, and its name in errors.
Parsed = tuple[dict[str, Any], Any, str]


class Work(Protocol):
    """A request in flight that a stop cuts short: a generation's candidates, an embedding's
    task."""

    def cancel(self) -> object: ...


def new_batch_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass(eq=False)
class ActiveBatch:
    """A batch the runner is working on: its requests in flight, and whether to stop."""

    record: BatchRecord
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False
    expired: bool = False
    # Stopped for a reason of the runner's (the store failed, the batch ended meanwhile, or
    # another replica ended, deleted or claimed it): never ended here.
    interrupted: bool = False
    failure: dict[str, Any] | None = None  # why the whole batch failed
    dispatching: bool = True
    running: int = 0
    turns: set[Work] = field(default_factory=set)
    # Set once the runner let go of it (every request it dispatched has returned).
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def halt(self) -> None:
        self.stop.set()
        for turn in list(self.turns):
            turn.cancel()


Execute = Callable[[ActiveBatch, BatchItemRecord], Awaitable[Outcome | None]]
BatchCheck = Callable[[BatchRecord], dict[str, Any] | None]
# Ends a batch (state, and why it failed): writes its results where they go, then the state.
EndBatch = Callable[[BatchRecord, str, dict[str, Any] | None], Awaitable[bool]]


class BatchRunner:
    """Runs the store's pending and running batches: oldest first, ``concurrency`` requests
    at once across all of them. ``execute`` answers one request (None: it was cut short and
    stays pending); ``check`` says why a batch cannot run at all (its model is gone); ``end``
    ends one. It runs only the batches it claimed as ``replica_id`` (see the module)."""

    def __init__(
        self,
        store: BatchStore,
        execute: Execute,
        check: BatchCheck,
        end: EndBatch,
        *,
        concurrency: int,
        deadline: timedelta,
        clock: Clock = utc_now,
        replica_id: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self.replica_id = replica_id or secrets.token_hex(8)
        self._lease = lease
        self._poll_seconds = min(POLL_SECONDS, lease.total_seconds())
        self._store = store
        self._execute = execute
        self._check = check
        self._end_batch = end
        self._slots = asyncio.Semaphore(concurrency)
        self._deadline = deadline
        self._clock = clock
        self._wake = asyncio.Event()
        self._active: dict[str, ActiveBatch] = {}
        # Batches being cancelled or deleted: never dispatched again.
        self._stopped: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self.closing = False

    def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch_forever())
        self._renewer = asyncio.create_task(self._renew_forever())

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, batch_id: str, grace_seconds: float = 30.0) -> None:
        """Stop working on a batch (to cancel or delete it) and wait until its requests in
        flight have returned (within a decode step: their turns are cancelled). Requests cut
        short stay pending. Call :meth:`forget` once the batch has ended."""
        self._stopped.add(batch_id)
        active = self._active.get(batch_id)
        if active is None:
            return
        active.cancelled = True
        active.halt()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(active.released.wait(), grace_seconds)

    def forget(self, batch_id: str) -> None:
        self._stopped.discard(batch_id)

    async def close(self, grace_seconds: float = 10.0) -> None:
        """Stop at once: requests in flight are cut short and stay pending, and the claims are
        released (another replica, or the next start, runs them again)."""
        self.closing = True
        for active in list(self._active.values()):
            active.halt()
        background = [t for t in (self._dispatcher, self._renewer) if t is not None]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_seconds)
        try:
            await self._store.release_claims(self.replica_id, now=self._clock())
        except Exception:
            log.exception("the batch claims could not be released; they lapse with their lease")

    async def _dispatch_forever(self) -> None:
        while not self.closing:
            self._wake.clear()
            try:
                # One batch at a time: the next is claimed once this one's requests are all
                # dispatched, so the batches queued behind it stay free for other replicas.
                while not self.closing and (batch := await self._claim()) is not None:
                    await self._dispatch(batch)
            except Exception:
                log.exception("the batch runner failed; retrying in %s s", self._poll_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)

    async def _claim(self) -> BatchRecord | None:
        now = self._clock()
        return await self._store.claim_batch(
            self.replica_id,
            now=now,
            lease_until=now + self._lease,
            exclude=[*self._active, *self._stopped],
        )

    async def _renew_forever(self) -> None:
        while not self.closing:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            ids = list(self._active)
            if not ids:
                continue
            try:
                held = await self._store.renew_claims(
                    self.replica_id, ids, lease_until=self._clock() + self._lease
                )
            except Exception:
                log.exception("the batch leases could not be renewed; retrying")
                continue
            for batch_id in ids:
                active = self._active.get(batch_id)
                if batch_id not in held and active is not None:
                    log.warning(
                        "batch %s was ended, deleted or claimed by another replica; "
                        "stopping it here",
                        batch_id,
                    )
                    self._let_go(active)

    @staticmethod
    def _let_go(active: ActiveBatch) -> None:
        """Stop working on a batch that is no longer this runner's to end."""
        active.interrupted = True
        active.halt()

    async def _dispatch(self, batch: BatchRecord) -> None:
        active = ActiveBatch(batch)
        self._active[batch.id] = active
        if batch.id in self._stopped:
            active.cancelled = True
        try:
            await self._dispatch_items(active)
        except BaseException:
            # The store failed (or the runner is closing): what was not dispatched stays
            # pending, and the batch is picked up again once its requests in flight end.
            active.interrupted = True
            raise
        finally:
            active.dispatching = False
            if active.running == 0:
                await self._settle(active)

    async def _dispatch_items(self, active: ActiveBatch) -> None:
        batch = active.record
        # Read again now that a cancel can find it: the batch may have ended meanwhile.
        current = await self._store.get_batch(batch.tenant, batch.id)
        if current is None or current.done or active.cancelled:
            active.interrupted = True
            return
        now = self._clock()
        error = self._check(current)
        if error is not None:
            active.failure = error
            return
        if current.state == PENDING:
            await self._store.set_batch_state(batch.id, RUNNING, only_from=(PENDING,), now=now)
            log.info("batch %s started (%d requests)", batch.id, batch.request_count)
        else:
            log.info("batch %s resumed (%d requests pending)", batch.id, current.pending)
        for item in await self._store.batch_items(batch.id, pending_only=True):
            if self._clock() >= batch.created_at + self._deadline:
                active.expired = True
                return
            if not await self._acquire(active):
                return
            active.running += 1
            task = asyncio.create_task(self._run_item(active, item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _acquire(self, active: ActiveBatch) -> bool:
        """A slot for the batch's next request, or False once the batch is stopped."""
        if active.stop.is_set():
            return False
        slot = asyncio.ensure_future(self._slots.acquire())
        stop = asyncio.ensure_future(active.stop.wait())
        try:
            await asyncio.wait({slot, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not slot.done():
                slot.cancel()
                await asyncio.gather(slot, return_exceptions=True)
        acquired = slot.done() and not slot.cancelled() and slot.exception() is None
        if acquired and (active.stop.is_set() or self.closing):
            self._slots.release()
            return False
        return acquired

    async def _run_item(self, active: ActiveBatch, item: BatchItemRecord) -> None:
        try:
            try:
                outcome = await self._execute(active, item)
            except Exception:
                log.exception("batch %s request %d failed", item.batch_id, item.seq)
                outcome = None, rpc_status("INTERNAL", INTERNAL_ERROR)
            if outcome is not None:
                response, error = outcome
                running = await self._store.finish_item(
                    item.batch_id, item.seq, response=response, error=error, now=self._clock()
                )
                if not running and not active.stop.is_set():
                    log.info("batch %s was ended or deleted elsewhere; stopping it", item.batch_id)
                    self._let_go(active)
        except asyncio.CancelledError:
            # Cut short from outside: the request stays pending and the batch is not ended.
            active.interrupted = True
            raise
        except Exception:
            log.exception("batch %s request %d could not be stored", item.batch_id, item.seq)
        finally:
            self._slots.release()
            active.running -= 1
            if not active.dispatching and active.running == 0:
                await self._settle(active)

    async def _settle(self, active: ActiveBatch) -> None:
        """Every dispatched request is done: end the batch, unless it was stopped from
        outside (cancel already ended it; a shutdown leaves it to another replica or the next
        start; a batch this runner let go of is no longer its own)."""
        try:
            if self.closing or active.cancelled or active.interrupted:
                # A store failure is retried at the runner's next look (its claim is still
                # its own until the lease runs out).
                return
            state = SUCCEEDED
            if active.failure is not None:
                state = FAILED
            elif active.expired:
                state = EXPIRED
            try:
                await self._end_batch(active.record, state, active.failure)
            except Exception:
                log.exception("batch %s could not be ended; retrying", active.record.id)
        finally:
            self._active.pop(active.record.id, None)
            active.released.set()


class BatchService:
    def __init__(
        self,
        generate: GenerateContentService,
        turns: TurnPipeline,
        store: BatchStore,
        limits: Limits,
        files: FileService | None = None,
        *,
        concurrency: int = 1,
        deadline: timedelta = timedelta(hours=48),
        ttl: timedelta = timedelta(hours=48),
        clock: Clock = utc_now,
        replica_id: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
        embeddings: EmbeddingService | None = None,
    ) -> None:
        self._generate = generate
        self._turns = turns
        self._embeddings = None if embeddings is None else BatchEmbeddings(embeddings)
        self._store = store
        self._limits = limits
        self._files = files
        self._ttl = ttl
        self._clock = clock
        self.runner = BatchRunner(
            store,
            self._execute,
            self._check,
            self._end,
            concurrency=concurrency,
            deadline=deadline,
            clock=clock,
            replica_id=replica_id,
            lease=lease,
        )
        # Per batch, while it is being ended (by the runner, or by a cancel).
        self._ending: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # ----- create ----------------------------------------------------------------------------

    async def create(
        self, model: str, body: Any, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """Validate every request as generateContent would parse it (a 400 names the first
        bad one), store the batch, and wake the runner."""
        batch, source = BatchGenerateContent.parse(body)
        name = model.removeprefix("models/")
        spec, _ = self._turns.model(name)  # an unknown or loading model fails first
        if batch.model is not None and self._model_id(batch.model, "batch.model") != spec.id:
            raise InvalidArgument(
                f"Invalid value at 'batch.model': {batch.model!r} is not the model of the URL."
            )
        input_file, requests = await self._requests(tenant, source)
        for request, _metadata, where in requests:
            self._check_request(name, spec.id, request, where)
        return await self._store_batch(
            GENERATE_KIND, name, batch.display_name, tenant, own_hosts, input_file, requests
        )

    async def create_embeddings(self, model: str, body: Any, tenant: str) -> dict[str, Any]:
        """``asyncBatchEmbedContent``: validate every request as embedContent would (a 400
        names the first bad one), store the batch (kind ``embed``), and wake the runner."""
        if self._embeddings is None:
            raise InvalidArgument("Embedding batches are not served.")
        batch, source = AsyncBatchEmbedContent.parse(body)
        name = model.removeprefix("models/")
        spec = self._embeddings.model(name)  # an unknown or loading model fails first
        if batch.model is not None and self._model_id(batch.model, "batch.model") != spec.id:
            raise InvalidArgument(
                f"Invalid value at 'batch.model': {batch.model!r} is not the model of the URL."
            )
        input_file, requests = await self._requests(tenant, source)
        for request, _metadata, where in requests:
            try:
                self._embeddings.check(name, request)
            except InvalidArgument as exc:
                raise InvalidArgument(f"Invalid request at '{where}': {exc.message}") from None
        return await self._store_batch(
            EMBED_KIND, name, batch.display_name, tenant, frozenset(), input_file, requests
        )

    async def _requests(
        self, tenant: str, source: list[InlinedRequest] | str
    ) -> tuple[str | None, list[Parsed]]:
        """The input file's name (None inline) and the requests, within
        ``limits.max_batch_requests``."""
        input_file: str | None = None
        if isinstance(source, str):
            input_file, requests = await self._read_input_file(tenant, source)
        else:
            requests = [
                (dict(item.request or {}), item.metadata, f"{REQUESTS_PATH}[{i}].request")
                for i, item in enumerate(source)
            ]
        limit = self._limits.max_batch_requests
        if len(requests) > limit:
            where = FILE_PATH if input_file is not None else REQUESTS_PATH
            raise InvalidArgument(
                f"Invalid value at '{where}': {len(requests)} requests; a batch holds at "
                f"most {limit} (limits.max_batch_requests)."
            )
        return input_file, requests

    async def _store_batch(
        self,
        kind: str,
        name: str,
        display_name: str | None,
        tenant: str,
        own_hosts: frozenset[str],
        input_file: str | None,
        requests: list[Parsed],
    ) -> dict[str, Any]:
        """Store the checked batch (within the tenant's ``limits.max_tenant_batches``) and
        wake the runner; the operation as created."""
        now = self._clock()
        record = BatchRecord(
            id=new_batch_id(),
            tenant=tenant,
            model=f"models/{name}",
            display_name=display_name,
            state=PENDING,
            request_count=len(requests),
            created_at=now,
            updated_at=now,
            own_hosts=sorted(own_hosts),
            input_file=input_file,
            kind=kind,
        )
        rows = [
            BatchItemRecord(record.id, seq, request, metadata)
            for seq, (request, metadata, _where) in enumerate(requests)
        ]
        async with self._lock(tenant):
            active = await self._store.count_active_batches(tenant)
            if active >= self._limits.max_tenant_batches:
                raise ResourceExhausted(
                    f"This project has {active} batches pending or running, the limit "
                    "(limits.max_tenant_batches). Wait for one to finish or cancel one.",
                    retry_after=60,
                )
            await self._store.create_batch(record, rows)
        log.info("%s batch %s created (%d requests)", kind, record.id, record.request_count)
        self.runner.wake()
        return batch_operation(record)

    async def _read_input_file(self, tenant: str, file_name: str) -> tuple[str, list[Parsed]]:
        """The requests of a JSONL file of the tenant's (``{"key", "request"}`` per line):
        each with its metadata (the key) and its name in errors."""
        if self._files is None:
            raise InvalidArgument(f"Invalid value at '{FILE_PATH}': files are not served.")
        try:
            record = await self._files.get(tenant, file_name)
        except InvalidArgument as exc:
            raise InvalidArgument(f"Invalid value at '{FILE_PATH}': {exc.message}") from None
        limit = self._limits.max_body_bytes
        if record.size_bytes > limit:
            raise InvalidArgument(
                f"Invalid value at '{FILE_PATH}': the file has {record.size_bytes} bytes; an "
                f"input file holds at most {limit} (limits.max_body_bytes)."
            )
        data = b"".join([chunk async for chunk in self._files.content(record)])
        lines = parse_input_file(data, FILE_PATH)
        requests = []
        for number, line in enumerate(lines, start=1):
            metadata = line.metadata
            if line.key is not None:
                extra = metadata if isinstance(metadata, dict) else {}
                metadata = {**extra, "key": line.key}
            requests.append((dict(line.request or {}), metadata, f"{FILE_PATH}, line {number}"))
        return f"files/{record.name}", requests

    def _check_request(self, name: str, model_id: str, body: Any, where: str) -> None:
        try:
            request = GenerateContentRequest.parse(body)
            if request.model is not None and self._model_id(request.model, "model") != model_id:
                raise InvalidArgument(
                    f"Invalid value at 'model': {request.model!r} is not the batch's model."
                )
            turn_input(name, request)
        except InvalidArgument as exc:
            raise InvalidArgument(f"Invalid request at '{where}': {exc.message}") from None

    def _model_id(self, name: str, where: str) -> str:
        try:
            return self._turns.model(name.removeprefix("models/"))[0].id
        except NotFound as exc:
            raise InvalidArgument(f"Invalid value at '{where}': {exc.message}") from None

    def _lock(self, tenant: str) -> asyncio.Lock:
        lock = self._locks.get(tenant)
        if lock is None:
            lock = self._locks[tenant] = asyncio.Lock()
        return lock

    # ----- read, cancel, delete --------------------------------------------------------------

    async def _record(self, tenant: str, name: str) -> BatchRecord:
        try:
            batch_id = batch_id_from_name(name)
        except InvalidArgument:
            raise _not_found(name) from None
        record = await self._store.get_batch(tenant, batch_id)
        if record is None:
            raise _not_found(batch_id)
        return record

    async def get(self, tenant: str, name: str) -> dict[str, Any]:
        record = await self._record(tenant, name)
        if not record.done:
            return batch_operation(record)
        if record.output_file is not None:
            return batch_operation(record)
        items = await self._store.batch_items(record.id)
        return batch_operation(record, [inlined_response(**_answer(record, i)) for i in items])

    async def list(
        self, tenant: str, page_size: str | None, page_token: str | None
    ) -> dict[str, Any]:
        """``{operations, nextPageToken}``; listed batches carry no output (GET has it)."""
        offset, size = page_window(page_size, page_token, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = await self._store.list_batches(tenant, offset, size + 1)
        out: dict[str, Any] = {"operations": [batch_operation(r) for r in page[:size]]}
        if len(page) > size:
            out["nextPageToken"] = str(offset + size)
        return out

    async def cancel(self, tenant: str, name: str) -> None:
        """Stop a pending or running batch; a batch that has ended stays as it is."""
        record = await self._record(tenant, name)
        if record.done:
            return
        await self.runner.stop(record.id)
        try:
            await self._end(record, CANCELLED, None)
        finally:
            self.runner.forget(record.id)

    async def delete(self, tenant: str, name: str) -> None:
        """Delete the batch and its results; a running batch is stopped first."""
        record = await self._record(tenant, name)
        await self.runner.stop(record.id)
        try:
            if not await self._store.delete_batch(tenant, record.id):
                raise _not_found(record.id)
        finally:
            self.runner.forget(record.id)

    async def sweep(self, batch: int = 500) -> int:
        now = self._clock()
        removed = 0
        while True:
            deleted = await self._store.delete_expired_batches(now, batch)
            removed += deleted
            if deleted < batch:
                return removed

    # ----- running ---------------------------------------------------------------------------

    async def _end(self, record: BatchRecord, state: str, error: dict[str, Any] | None) -> bool:
        """End a pending or running batch (once: a second caller finds it ended). A batch
        read from a file gets its responses file first, so a client that sees it done can
        download them."""
        lock = self._ending.get(record.id)
        if lock is None:
            lock = self._ending[record.id] = asyncio.Lock()
        async with lock:
            current = await self._store.get_batch(record.tenant, record.id)
            if current is None or current.done:
                return False
            output_file: str | None = None
            if current.input_file is not None and state != FAILED:
                try:
                    output_file = await self._write_output(replace(current, state=state))
                except GemserveError as exc:
                    state = FAILED
                    error = rpc_status(
                        exc.rpc_status, f"The responses file could not be written: {exc.message}"
                    )
            now = self._clock()
            ended = await self._store.set_batch_state(
                record.id,
                state,
                only_from=ACTIVE_STATES,
                now=now,
                end_time=now,
                expires_at=now + self._ttl,
                error=error,
                output_file=output_file,
            )
        if ended:
            log.info("batch %s ended: %s", record.id, state)
        return ended

    async def _write_output(self, record: BatchRecord) -> str:
        """The responses as a JSONL file of the tenant's, ``files/batch-{id}``: one
        ``{"key", "response" | "error"}`` line per request, in input order."""
        assert self._files is not None
        items = await self._store.batch_items(record.id)
        data = b"".join(
            orjson.dumps(output_line(**_answer(record, item))) + b"\n" for item in items
        )
        name = f"batch-{record.id}"
        start = {
            "file": {
                "name": name,
                "mime_type": "application/jsonl",
                "display_name": f"responses of batches/{record.id}",
                "size_bytes": len(data),
            }
        }
        try:
            token = await self._files.start_upload(
                record.tenant, start, header_size=None, header_mime_type=None
            )
        except AlreadyExists:
            # Written by an earlier attempt that could not record it: written again.
            await self._files.delete(record.tenant, name)
            token = await self._files.start_upload(
                record.tenant, start, header_size=None, header_mime_type=None
            )
        await self._files.upload_chunk(token, 0, _once(data), finalize=True)
        return f"files/{name}"

    def _check(self, record: BatchRecord) -> dict[str, Any] | None:
        """Why the batch cannot run at all: its model is no longer served. A model still
        loading is not a reason (its requests wait)."""
        try:
            self._turns.model(record.model.removeprefix("models/"))
            if record.kind == EMBED_KIND and self._embeddings is None:
                raise NotFound("Embedding batches are not served.")
        except NotFound as exc:
            return rpc_status(exc.rpc_status, exc.message)
        except Unavailable:
            return None
        return None

    async def _execute(self, active: ActiveBatch, item: BatchItemRecord) -> Outcome | None:
        if active.record.kind == EMBED_KIND:
            return await self._execute_embed(active, item)
        record = active.record
        delay = RETRY_FIRST_SECONDS
        while True:
            if active.stop.is_set() or self.runner.closing:
                return None
            try:
                turn, shape = await self._generate.start(
                    record.model, item.request, record.tenant, frozenset(record.own_hosts)
                )
                break
            except (ResourceExhausted, Unavailable):
                # The engine's queue is full or the model is loading: wait, never fail.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(active.stop.wait(), delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            except GemserveError as exc:
                return None, rpc_status(exc.rpc_status, exc.message)
        active.turns.add(turn)
        try:
            if active.stop.is_set():
                turn.cancel()
            response = await whole_response(turn, shape)
        except GemserveError as exc:
            return None, rpc_status(exc.rpc_status, exc.message)
        finally:
            active.turns.discard(turn)
            turn.cancel()
        if active.stop.is_set() or self.runner.closing:
            return None  # cut short: it stays pending (answered CANCELLED, or run again)
        return response, None

    async def _execute_embed(self, active: ActiveBatch, item: BatchItemRecord) -> Outcome | None:
        """One request of an embedding batch, embedded alone; a full queue or a loading model
        is waited out, as for generation. A stop cancels the embedding (it stays pending)."""
        assert self._embeddings is not None  # _check fails the batch otherwise
        model = active.record.model.removeprefix("models/")
        delay = RETRY_FIRST_SECONDS
        while True:
            if active.stop.is_set() or self.runner.closing:
                return None
            work = asyncio.ensure_future(self._embeddings.embed(model, item.request))
            active.turns.add(work)
            try:
                response = await work
                break
            except (ResourceExhausted, Unavailable):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(active.stop.wait(), delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            except GemserveError as exc:
                return None, rpc_status(exc.rpc_status, exc.message)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                return None  # stopped: the embedding was cancelled, the request stays pending
            finally:
                active.turns.discard(work)
                work.cancel()
        if active.stop.is_set() or self.runner.closing:
            return None
        return response, None


def _answer(record: BatchRecord, item: BatchItemRecord) -> dict[str, Any]:
    """``{response | error, metadata}``: what the request got, or why it got nothing."""
    if item.state == ITEM_PENDING:
        status, message = UNANSWERED.get(record.state, UNANSWERED[SUCCEEDED])
        return {"response": None, "error": rpc_status(status, message), "metadata": item.metadata}
    return {"response": item.response, "error": item.error, "metadata": item.metadata}


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _not_found(batch_id: str) -> NotFound:
    bare = batch_id.removeprefix("batches/")
    return NotFound(f"Batch 'batches/{bare}' was not found.")
