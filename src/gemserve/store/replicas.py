"""Replicas sharing one database: their leases, and what they must agree on.

A replica registers at start and renews its lease while it lives; an interaction whose owner
holds no live lease was lost with that replica and is closed by a survivor. Every backend
passes the same acceptance suite (tests/store).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gemserve.store.base import InteractionRecord


@dataclass(frozen=True)
class ReplicaRecord:
    id: str
    host: str
    pid: int
    started_at: datetime
    lease_until: datetime


class SettingMismatch(Exception):
    """A replica's setting differs from the one the cluster recorded."""

    def __init__(self, name: str, recorded: str, mine: str) -> None:
        super().__init__(name)
        self.name = name
        self.recorded = recorded
        self.mine = mine


class ReplicaStore(Protocol):
    shared: bool
    """True when other processes may use the same database (PostgreSQL); False for SQLite,
    which one process owns: every lease found at start is then a dead process's."""

    async def register(self, replica: ReplicaRecord) -> None: ...

    async def renew(self, replica_id: str, lease_until: datetime) -> bool:
        """Extend the lease; False if the row is gone (the cluster declared this one lost)."""

    async def release(self, replica_id: str) -> None:
        """A clean stop: its remaining work is anyone's at once."""

    async def live_replicas(self, now: datetime) -> list[ReplicaRecord]: ...

    async def expire_all_but(self, replica_id: str) -> None:
        """Drop every other lease (an unshared database: they were this process's past)."""

    async def orphaned_interactions(self, now: datetime) -> list[InteractionRecord]:
        """Running interactions whose owner holds no live lease (or that have no owner)."""

    async def forget_lost(self, now: datetime) -> int:
        """Delete expired leases once their interactions are closed; returns how many."""

    async def request_cancel(self, interaction_id: str) -> bool:
        """Flag a running interaction for its owner to cancel; False if it is not running."""

    async def cancel_requests(self, owner: str) -> list[str]:
        """Running interactions of ``owner`` that another replica asked to cancel."""

    async def agree(self, name: str, value: str, now: datetime) -> None:
        """Record ``value`` if the cluster has none; raise :class:`SettingMismatch` if the
        recorded one differs."""
