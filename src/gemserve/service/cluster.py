"""This process as one replica among several on one database: its lease and its duties.

A replica registers at start, after checking that it agrees with the cluster on what replicas
must share (the thought-signing key, the blob store), and renews its lease every third of the
lease. Each renewal runs the lease duties (closing what lost replicas left running); between
renewals the poll duties run every ``poll_seconds`` (cancel requests from other replicas).
On SQLite (one process owns the file) every lease found at start is a dead process's.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta

from gemserve.service.clock import Clock, utc_now
from gemserve.store.base import InteractionRecord
from gemserve.store.errors import is_store_unavailable
from gemserve.store.replicas import ReplicaRecord, ReplicaStore, SettingMismatch

log = logging.getLogger("gemserve.cluster")

Duty = Callable[[], Awaitable[object]]


def fingerprint(secret: bytes) -> str:
    """What the database may record of a secret: enough to tell two apart, nothing more."""
    return "sha256:" + hashlib.sha256(b"gemserve fingerprint\0" + secret).hexdigest()[:16]


def new_replica_id() -> str:
    return "r_" + secrets.token_hex(8)


class ClusterConfigError(Exception):
    """This replica disagrees with the cluster on a setting replicas must share."""


# What to tell the operator, per shared setting.
_SETTING_HELP = {
    "thought_signing_key": (
        "the thought-signing key",
        "give every replica the same GEMSERVE_THOUGHT_SIGNING_KEY",
    ),
    "blob_store": ("the blob store", "point every replica at the same GEMSERVE_BLOB_URL"),
}


class Replica:
    def __init__(
        self,
        store: ReplicaStore,
        *,
        lease_seconds: float,
        poll_seconds: float,
        clock: Clock = utc_now,
        replica_id: str | None = None,
    ) -> None:
        self.id = replica_id or new_replica_id()
        self._store = store
        self._lease = timedelta(seconds=lease_seconds)
        self._poll_seconds = poll_seconds
        self._clock = clock

    @property
    def shared(self) -> bool:
        """Other processes may share the database (so other replicas may exist)."""
        return self._store.shared

    @property
    def store(self) -> ReplicaStore:
        return self._store

    @property
    def poll_seconds(self) -> float:
        return self._poll_seconds

    async def join(self, shared_settings: Mapping[str, str]) -> None:
        """Check the settings replicas must share, then take a lease."""
        now = self._clock()
        if self.shared:
            for name, value in shared_settings.items():
                try:
                    await self._store.agree(name, value, now)
                except SettingMismatch as exc:
                    what, fix = _SETTING_HELP.get(name, (name, "configure it alike everywhere"))
                    raise ClusterConfigError(
                        f"this replica's {what} ({exc.mine}) differs from the one the other "
                        f"replicas use, recorded in the database ({exc.recorded}): {fix}."
                    ) from None
        await self._store.register(self._record())
        if not self.shared:
            await self._store.expire_all_but(self.id)
        log.info("replica %s joined (lease %s s)", self.id, self._lease.total_seconds())

    def _record(self) -> ReplicaRecord:
        started = self._clock()
        return ReplicaRecord(
            id=self.id,
            host=socket.gethostname()[:256],
            pid=os.getpid(),
            started_at=started,
            lease_until=started + self._lease,
        )

    async def renew(self) -> None:
        if not await self._store.renew(self.id, self._clock() + self._lease):
            # Declared lost (it could not renew in time): what it ran was closed by another
            # replica; it rejoins for new work.
            log.error("replica %s was declared lost by the cluster; rejoining", self.id)
            await self._store.register(self._record())

    async def leave(self) -> None:
        await self._store.release(self.id)

    async def orphaned_interactions(self) -> list[InteractionRecord]:
        """Running interactions whose replica holds no live lease (by this replica's clock)."""
        return await self._store.orphaned_interactions(self._clock())

    async def forget_lost(self) -> None:
        forgotten = await self._store.forget_lost(self._clock())
        if forgotten:
            log.warning("forgot %d replicas whose leases expired", forgotten)

    async def run(self, lease_duties: Sequence[Duty], poll_duties: Sequence[Duty]) -> None:
        """Renew the lease and run the duties until cancelled; a failing duty is logged and
        tried again at its next turn (the database may be briefly unreachable)."""
        renew_every = self._lease.total_seconds() / 3
        next_renewal = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() >= next_renewal:
                next_renewal = loop.time() + renew_every
                await _attempt("renew the lease", self.renew)
                for duty in lease_duties:
                    await _attempt(getattr(duty, "__name__", "a lease duty"), duty)
            for duty in poll_duties:
                await _attempt(getattr(duty, "__name__", "a poll duty"), duty)
            await asyncio.sleep(min(self._poll_seconds, max(0.0, next_renewal - loop.time())))


async def _attempt(what: str, duty: Duty) -> None:
    try:
        await duty()
    except Exception as exc:
        if is_store_unavailable(exc):
            # Every poll (0.1 s) while the database is down: one line each, no traceback.
            log.warning("cluster duty skipped: %s: the store is unavailable (%s)", what, exc)
        else:
            log.exception("cluster duty failed: %s", what)
