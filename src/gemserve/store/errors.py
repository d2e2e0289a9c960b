"""Which store errors mean "the database is not there right now" (a 503 with Retry-After,
never a 500): the one classification the API's error handlers use for every surface."""

from __future__ import annotations

import errno

import sqlalchemy.exc as sa_exc

from gemserve.errors import GemserveError, Unavailable

# Exception classes a stopped, restarting or unreachable database raises, by module name
# (asyncpg is imported lazily: SQLite-only installs still work).
_ASYNCPG_UNAVAILABLE = frozenset(
    {
        "PostgresConnectionError",  # class 08: connection refused, lost, does not exist
        "OperatorInterventionError",  # class 57: admin shutdown, cannot connect now
        "InterfaceError",  # "connection is closed", "another operation is in progress"
        "TooManyConnectionsError",
    }
)
_ERRNO_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

STORE_UNAVAILABLE = "The database is unavailable; retry shortly."


class StorageFull(GemserveError):
    """The data directory's filesystem (or the database's) is full: nothing was kept."""

    http_status = 507
    rpc_status = "RESOURCE_EXHAUSTED"
    retry_after = 60


def is_storage_full(exc: BaseException) -> bool:
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno in _ERRNO_FULL:
            return True
        if "database or disk is full" in str(item) or "No space left on device" in str(item):
            return True
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return seen


def is_store_unavailable(exc: BaseException) -> bool:
    """A connection-level failure of the database (not a bug, not a bad row)."""
    for item in _chain(exc):
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return True
        if isinstance(item, sa_exc.TimeoutError | sa_exc.DisconnectionError):
            return True  # the pool waited for a connection in vain
        if isinstance(item, ConnectionError | TimeoutError):
            return True  # refused, reset, broken pipe; a connect that timed out
        if isinstance(item, OSError) and item.errno not in _ERRNO_FULL:
            return item.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)
        if type(item).__module__.startswith("asyncpg") and any(
            cls.__name__ in _ASYNCPG_UNAVAILABLE for cls in type(item).__mro__
        ):
            return True
        if isinstance(item, sa_exc.OperationalError | sa_exc.InterfaceError):
            # SQLite's "database is locked", "unable to open", "disk I/O error"; any
            # dialect's operational failure below SQL: transient, retryable.
            return True
    return False


def as_store_error(exc: BaseException) -> GemserveError | None:
    """The 507 for a full disk, the 503 for a store outage, or None for any other error."""
    if is_storage_full(exc):
        return StorageFull("The server's storage is full; nothing was stored. Retry later.")
    if is_store_unavailable(exc):
        return Unavailable(STORE_UNAVAILABLE)
    return None
