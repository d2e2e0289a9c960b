"""API keys to tenants: made keys are looked up every time (a revocation holds from the next
request, even one made by another process), unknown keys are remembered."""

from __future__ import annotations

from typing import Any

import pytest

from gemserve.errors import InvalidArgument
from gemserve.service.keys import Authenticator, KeyManager, key_hash
from gemserve.store import SqlStore


class CountingStore:
    """The real store, counting ``find_key`` calls."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.lookups = 0

    async def find_key(self, digest: str) -> Any:
        self.lookups += 1
        return await self._store.find_key(digest)


async def test_a_revoked_key_is_refused_at_the_next_request(store: SqlStore) -> None:
    counting = CountingStore(store)
    auth = Authenticator(counting, keys_required=True)  # type: ignore[arg-type]
    record, plaintext = await KeyManager(store).create("ci")
    assert await auth.tenant_for(plaintext) == record.tenant
    assert await auth.tenant_for(plaintext) == record.tenant
    await KeyManager(store).revoke(record.id)  # as `gemserve keys revoke` does, elsewhere
    with pytest.raises(InvalidArgument, match="API key not valid"):
        await auth.tenant_for(plaintext)
    assert counting.lookups == 3


async def test_unknown_keys_are_looked_up_once(store: SqlStore) -> None:
    counting = CountingStore(store)
    auth = Authenticator(counting, keys_required=False)  # type: ignore[arg-type]
    tenant = await auth.tenant_for("my-key")
    assert tenant == "key_" + key_hash("my-key")[:24]
    assert [await auth.tenant_for(" my-key ") for _ in range(3)] == [tenant] * 3
    assert counting.lookups == 1
    required = Authenticator(counting, keys_required=True)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(InvalidArgument, match="API key not valid"):
            await required.tenant_for("made-up")
    assert counting.lookups == 2


async def test_the_unknown_keys_kept_are_bounded(store: SqlStore) -> None:
    counting = CountingStore(store)
    auth = Authenticator(counting, keys_required=False, unknown_keys_kept=2)  # type: ignore[arg-type]
    for key in ("a", "b", "a", "c"):  # "a" used again: "b" is the least recently used
        await auth.tenant_for(key)
    assert counting.lookups == 3
    await auth.tenant_for("a")
    assert counting.lookups == 3
    await auth.tenant_for("b")
    assert counting.lookups == 4
