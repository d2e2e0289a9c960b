"""API keys and tenants.

Open mode (the default on loopback): any non-empty key is accepted and each distinct key is its
own tenant. Keys-required mode (mandatory on a non-loopback address): only keys made with
``gemserve keys create`` and not revoked. Keys are stored only as SHA-256 hashes; they carry
192 bits of randomness, so a fast hash is enough.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict

from gemserve.errors import InvalidArgument, NotFound, PermissionDenied
from gemserve.service.clock import Clock, utc_now
from gemserve.store import ApiKeyRecord, Store

MISSING_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
INVALID_KEY = "API key not valid. Please pass a valid API key."


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyManager:
    def __init__(self, store: Store, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    async def create(self, name: str, tenant: str | None = None) -> tuple[ApiKeyRecord, str]:
        """Make a key; the plaintext is returned once and never stored."""
        plaintext = "gs-" + secrets.token_urlsafe(24)
        record = ApiKeyRecord(
            id="key_" + secrets.token_hex(8),
            tenant=tenant or "tenant_" + secrets.token_hex(8),
            name=name,
            key_hash=key_hash(plaintext),
            created_at=self._clock(),
        )
        await self._store.create_key(record)
        return record, plaintext

    async def list(self) -> list[ApiKeyRecord]:
        return await self._store.list_keys()

    async def revoke(self, key_id: str) -> None:
        if not await self._store.revoke_key(key_id, self._clock()):
            raise NotFound(f"No active key {key_id!r}.")


class Authenticator:
    """Keys made by ``gemserve keys create`` are looked up on every request, so a revocation
    (from another process, or another replica) holds from the next request. A key the store
    does not hold is remembered (at most ``unknown_keys_kept``, least recently used first
    out): no key made later can have its hash, as made keys are random, so the answer cannot
    change, and open mode's callers skip a database round trip per request."""

    def __init__(self, store: Store, *, keys_required: bool, unknown_keys_kept: int = 4096) -> None:
        self._store = store
        self.keys_required = keys_required
        self._unknown: OrderedDict[str, None] = OrderedDict()
        self._unknown_kept = unknown_keys_kept

    async def tenant_for(self, key: str | None) -> str:
        key = (key or "").strip()
        if not key:
            raise PermissionDenied(MISSING_KEY)
        digest = key_hash(key)
        if digest in self._unknown:
            self._unknown.move_to_end(digest)
        else:
            record = await self._store.find_key(digest)
            if record is not None:
                if record.revoked_at is not None:
                    raise InvalidArgument(INVALID_KEY)
                return record.tenant
            self._remember_unknown(digest)
        if self.keys_required:
            raise InvalidArgument(INVALID_KEY)
        return "key_" + digest[:24]

    def _remember_unknown(self, digest: str) -> None:
        self._unknown[digest] = None
        while len(self._unknown) > self._unknown_kept:
            self._unknown.popitem(last=False)
