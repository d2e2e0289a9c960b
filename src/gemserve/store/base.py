"""The Store interface and its records. Every backend passes tests/store's acceptance suite."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

Event = dict[str, Any]


@dataclass(frozen=True)
class EventBatch:
    """Events of one interaction numbered ``first_seq``, ``first_seq + 1``, …"""

    interaction_id: str
    first_seq: int
    events: list[Event]


@dataclass
class InteractionRecord:
    id: str
    tenant: str
    model: str
    status: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    input: list[dict[str, Any]] = field(default_factory=list)
    system_instruction: str | None = None
    generation_config: dict[str, Any] | None = None
    previous_interaction_id: str | None = None
    background: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    owner: str | None = None  # the replica generating it
    cancel_requested: bool = False


@dataclass
class ApiKeyRecord:
    id: str
    tenant: str
    name: str
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None


class Store(Protocol):
    async def start(self) -> None:
        """Connect and apply migrations."""

    async def close(self) -> None: ...

    # --- interactions and their event log --------------------------------------------------

    async def create_interaction(self, record: InteractionRecord, events: list[Event]) -> None:
        """Insert the row and its first events (seq 1..n) in one transaction."""

    async def append_events(self, batches: Sequence[EventBatch]) -> None:
        """Append the events of several interactions in one transaction."""

    async def finish_interaction(
        self,
        interaction_id: str,
        *,
        first_seq: int,
        events: list[Event],
        status: str,
        steps: list[dict[str, Any]],
        usage: dict[str, Any] | None,
        error: dict[str, Any] | None,
        updated_at: datetime,
    ) -> bool:
        """Append the last events and write the final state, atomically, if the interaction
        is still running; False (nothing written) if it already ended."""

    async def get_interaction(
        self, tenant: str, interaction_id: str, now: datetime
    ) -> InteractionRecord | None:
        """The tenant's interaction, or None if missing, foreign or expired."""

    async def get_events(self, interaction_id: str, after_seq: int) -> list[Event]: ...

    async def list_conversations(
        self, tenant: str, now: datetime, offset: int, limit: int
    ) -> list[InteractionRecord]:
        """The last turn of each of the tenant's conversations, newest first: its unexpired
        interactions that no stored interaction continues (``previous_interaction_id``)."""

    async def delete_interaction(self, tenant: str, interaction_id: str) -> bool: ...

    async def unfinished_interactions(self) -> list[InteractionRecord]:
        """Every non-terminal interaction, of every tenant (crash recovery)."""

    async def delete_expired(self, now: datetime, limit: int) -> int: ...

    # --- API keys ------------------------------------------------------------------------

    async def create_key(self, record: ApiKeyRecord) -> None: ...

    async def list_keys(self) -> list[ApiKeyRecord]: ...

    async def revoke_key(self, key_id: str, now: datetime) -> bool: ...

    async def find_key(self, key_hash: str) -> ApiKeyRecord | None: ...
