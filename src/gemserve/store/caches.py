"""Cached contents (``cachedContents``): the record and the CacheStore interface.

Every backend passes the same acceptance suite as the interaction store (tests/store).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass
class CachedContentRecord:
    id: str  # the resource id, after "cachedContents/"
    tenant: str
    model: str  # as the client named it, with the "models/" prefix
    display_name: str | None
    # contents, systemInstruction, tools, toolConfig: the validated request, camelCase JSON
    content: dict[str, Any]
    size_bytes: int  # of ``content`` serialised: what max_cache_bytes limits
    token_count: int  # the prompt it renders to for the model
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


class CacheStore(Protocol):
    async def create_cache(self, record: CachedContentRecord) -> None: ...

    async def get_cache(
        self, tenant: str, cache_id: str, now: datetime
    ) -> CachedContentRecord | None:
        """The tenant's cached content, or None if missing, foreign or expired."""

    async def list_caches(
        self, tenant: str, now: datetime, offset: int, limit: int
    ) -> list[CachedContentRecord]:
        """The tenant's live cached contents, newest first."""

    async def count_caches(self, tenant: str, now: datetime) -> int:
        """The tenant's live cached contents."""

    async def update_cache_expiry(
        self, tenant: str, cache_id: str, expires_at: datetime, now: datetime
    ) -> CachedContentRecord | None:
        """Set a live cache's expiry (``updated_at`` becomes ``now``); None if not live."""

    async def delete_cache(self, tenant: str, cache_id: str, now: datetime) -> bool:
        """Delete the row; True if it was the tenant's and live (an expired one is deleted
        too, and answers False)."""

    async def delete_expired_caches(self, now: datetime, limit: int) -> int: ...
