"""Batches (``batches/…``) and their requests: records and the BatchStore interface.

A batch is one row; each of its requests is a row of its own (``batch_items``) holding the
request, then its response or error, so a restart resumes the requests still pending. Every
backend passes the same acceptance suite as the interaction store (tests/store).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# Batch states, as the wire writes them.
PENDING = "BATCH_STATE_PENDING"
RUNNING = "BATCH_STATE_RUNNING"
SUCCEEDED = "BATCH_STATE_SUCCEEDED"
FAILED = "BATCH_STATE_FAILED"
CANCELLED = "BATCH_STATE_CANCELLED"
EXPIRED = "BATCH_STATE_EXPIRED"
ACTIVE_STATES = (PENDING, RUNNING)
TERMINAL_STATES = (SUCCEEDED, FAILED, CANCELLED, EXPIRED)

# States of one request of a batch.
ITEM_PENDING = "pending"
ITEM_SUCCEEDED = "succeeded"
ITEM_FAILED = "failed"


@dataclass
class BatchRecord:
    id: str  # after "batches/"
    tenant: str
    model: str  # as the client named it, with the "models/" prefix
    display_name: str | None
    state: str
    request_count: int
    created_at: datetime
    updated_at: datetime
    succeeded: int = 0
    failed: int = 0
    own_hosts: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None  # why the whole batch failed
    input_file: str | None = None  # "files/…": the requests came from this JSONL file
    output_file: str | None = None  # "files/…": the responses, once it ended
    end_time: datetime | None = None
    expires_at: datetime | None = None  # set when it ends
    claimed_by: str | None = None  # the replica running it (see BatchStore.claim_batch)
    lease_until: datetime | None = None  # its claim holds until then
    # What its requests are: "generate" (GenerateContentRequests) or "embed"
    # (EmbedContentRequests); the wire's names, protocol/classic/batches.py.
    kind: str = "generate"

    @property
    def pending(self) -> int:
        return self.request_count - self.succeeded - self.failed

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass
class BatchItemRecord:
    batch_id: str
    seq: int  # 0-based, in input order
    request: dict[str, Any]  # a GenerateContentRequest (or EmbedContentRequest) as sent
    metadata: Any = None
    state: str = ITEM_PENDING
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class BatchStore(Protocol):
    async def create_batch(self, record: BatchRecord, items: list[BatchItemRecord]) -> None:
        """Insert the batch and all its requests in one transaction."""

    async def get_batch(self, tenant: str, batch_id: str) -> BatchRecord | None:
        """The tenant's batch, or None if missing or foreign."""

    async def list_batches(self, tenant: str, offset: int, limit: int) -> list[BatchRecord]:
        """The tenant's batches, newest first."""

    async def count_active_batches(self, tenant: str) -> int: ...

    async def batch_items(
        self, batch_id: str, *, pending_only: bool = False
    ) -> list[BatchItemRecord]:
        """The batch's requests in order (only those still pending, if asked)."""

    async def finish_item(
        self,
        batch_id: str,
        seq: int,
        *,
        response: dict[str, Any] | None,
        error: dict[str, Any] | None,
        now: datetime,
    ) -> bool:
        """Store a pending request's response (succeeded) or error (failed) and count it on
        the batch, atomically. A request already finished is left as it is. False (nothing
        written) once the batch is no longer pending or running, or is gone: it was ended or
        deleted meanwhile, perhaps by another replica."""

    async def set_batch_state(
        self,
        batch_id: str,
        state: str,
        *,
        only_from: Collection[str],
        now: datetime,
        end_time: datetime | None = None,
        expires_at: datetime | None = None,
        error: dict[str, Any] | None = None,
        output_file: str | None = None,
    ) -> bool:
        """Move the batch to ``state`` if it is in one of ``only_from``; whether it moved."""

    async def claim_batch(
        self,
        replica: str,
        *,
        now: datetime,
        lease_until: datetime,
        exclude: Collection[str] = (),
    ) -> BatchRecord | None:
        """Claim the oldest pending or running batch (not in ``exclude``) that no replica
        holds, for ``replica`` until ``lease_until``; None if there is none. Free: never
        claimed, claimed by ``replica`` itself, or its lease ran out (or was released) by
        ``now``. Replicas claiming at once never get the same batch. A database that one
        process owns (SQLite) also gives up a live claim of another replica id: it can only be
        a dead process's."""

    async def renew_claims(
        self, replica: str, batch_ids: Collection[str], *, lease_until: datetime
    ) -> set[str]:
        """Extend ``replica``'s claims on these batches; the ids it still holds (a batch ended,
        deleted or claimed by another replica is not renewed, and not returned)."""

    async def release_claims(self, replica: str, *, now: datetime) -> None:
        """End every claim of ``replica`` at ``now``: other replicas may claim the batches."""

    async def delete_batch(self, tenant: str, batch_id: str) -> bool: ...

    async def delete_expired_batches(self, now: datetime, limit: int) -> int:
        """Delete ended batches past their expiry, with their requests."""
