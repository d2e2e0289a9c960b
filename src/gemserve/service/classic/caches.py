"""``cachedContents``: a prefix of generate requests (contents, systemInstruction, tools,
toolConfig) stored per tenant, used as ``cachedContent`` in generateContent.

A cache is validated at create as a generate request is (the model exists, the contents
parse, media load and fit the model, the prompt fits the context), by running it through the
turn pipeline once: the model prefills it and decodes one token. That gives the cache's token
count and leaves its prefix in an engine slot's KV cache, which the engine's prefix matching
reuses for the generate requests that start with it (``cachedContentTokenCount`` reports the
prompt tokens the engine really reused). A request naming the cache gets its contents in
front of its own, and its systemInstruction, tools and toolConfig, as on Gemini.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import string
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from gemserve.config import Limits
from gemserve.errors import Internal, InvalidArgument, NotFound, ResourceExhausted
from gemserve.protocol.classic.caches import (
    CACHE_ID,
    CreateCachedContent,
    UpdateCachedContent,
    cache_id_from_name,
    expiry,
)
from gemserve.protocol.classic.request import (
    GenerateContentRequest,
    GenerationConfig,
    ThinkingConfig,
    reject_unserved,
)
from gemserve.protocol.common import validate_body
from gemserve.service.classic.turns import conversation_items, turn_input
from gemserve.service.clock import Clock, utc_now
from gemserve.service.paging import page_window
from gemserve.service.turn import TurnPipeline
from gemserve.service.turn_input import TurnInput
from gemserve.store.caches import CachedContentRecord, CacheStore

log = logging.getLogger("gemserve.caches")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_ID_ALPHABET = string.ascii_lowercase + string.digits
# What a generate request naming a cache may not set itself (Gemini refuses the same).
CACHED_FIELDS = ("system_instruction", "tools", "tool_config")


def new_cache_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


@dataclass(frozen=True)
class CachedPrefix:
    """A live cache as a generate request uses it."""

    name: str  # "cachedContents/…"
    model_id: str  # the model it was made for (resolved)
    request: GenerateContentRequest  # contents, systemInstruction, tools, toolConfig


class CacheService:
    def __init__(
        self,
        turns: TurnPipeline,
        store: CacheStore,
        limits: Limits,
        *,
        default_ttl: timedelta = timedelta(hours=1),
        clock: Clock = utc_now,
    ) -> None:
        self._turns = turns
        self._store = store
        self._limits = limits
        self._default_ttl = default_ttl
        self._clock = clock
        # Per tenant, while the count check and the insert it allows run.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @property
    def _max_ttl(self) -> timedelta:
        return timedelta(seconds=self._limits.max_cache_ttl_seconds)

    # ----- create ----------------------------------------------------------------------------

    async def create(
        self, body: Any, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> CachedContentRecord:
        request = CreateCachedContent.parse(body)
        model = str(request.model)
        name = model.removeprefix("models/")
        self._turns.model(name)  # an unknown or loading model fails first
        self._expiry(request.ttl, request.expire_time)  # a bad one fails before the prefill
        content = request.content()
        size = len(orjson.dumps(content))
        if size > self._limits.max_cache_bytes:
            raise InvalidArgument(
                f"The cached content is {size} bytes; the limit is {self._limits.max_cache_bytes} "
                "bytes (limits.max_cache_bytes)."
            )
        generate = _as_generate_request(content)
        await self._check_count(tenant)
        cache_id = new_cache_id()
        tokens = await self._prefill(name, generate, tenant, own_hosts, cache_id)
        now = self._clock()
        expires_at = self._expiry(request.ttl, request.expire_time, now)  # ttl from now
        record = CachedContentRecord(
            id=cache_id,
            tenant=tenant,
            model=f"models/{name}",
            display_name=request.display_name,
            content=content,
            size_bytes=size,
            token_count=tokens,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
        )
        async with self._lock(tenant):
            await self._check_count(tenant)
            await self._store.create_cache(record)
        log.info("cached content %s stored (%d tokens, %d bytes)", cache_id, tokens, size)
        return record

    async def _prefill(
        self,
        model: str,
        request: GenerateContentRequest,
        tenant: str,
        own_hosts: frozenset[str],
        cache_id: str,
    ) -> int:
        """Run the cache as a generate request that decodes one token, without thinking:
        every client error is raised here, and the engine keeps the prefix in a slot."""
        config = GenerationConfig(
            max_output_tokens=1, thinking_config=ThinkingConfig(thinking_budget=0)
        )
        turn = turn_input(model, request.model_copy(update={"generation_config": config}))
        prepared = await self._turns.prepare(turn, tenant=tenant, own_hosts=own_hosts)
        started = await prepared.admit(f"cache-{cache_id}")
        collected = await started.collect()
        if collected.done.error is not None:
            raise Internal("Prefilling the cached content failed.")
        return collected.done.usage.input_tokens

    def _expiry(
        self, ttl: str | None, expire_time: str | None, now: datetime | None = None
    ) -> datetime:
        return expiry(
            ttl,
            expire_time,
            self._clock() if now is None else now,
            default=self._default_ttl,
            maximum=self._max_ttl,
        )

    def _lock(self, tenant: str) -> asyncio.Lock:
        lock = self._locks.get(tenant)
        if lock is None:
            lock = self._locks[tenant] = asyncio.Lock()
        return lock

    async def _check_count(self, tenant: str) -> None:
        held = await self._store.count_caches(tenant, self._clock())
        if held >= self._limits.max_tenant_caches:
            raise ResourceExhausted(
                f"This project holds {held} cached contents, the limit "
                f"(limits.max_tenant_caches). Delete some or wait for them to expire.",
                retry_after=60,
            )

    # ----- read, update, delete --------------------------------------------------------------

    async def get(self, tenant: str, name: str) -> CachedContentRecord:
        cache_id = _path_id(name)
        record = await self._store.get_cache(tenant, cache_id, self._clock())
        if record is None:
            raise _not_found(cache_id)
        return record

    async def list(
        self, tenant: str, page_size: str | None, page_token: str | None
    ) -> tuple[list[CachedContentRecord], str | None]:
        offset, size = page_window(page_size, page_token, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = await self._store.list_caches(tenant, self._clock(), offset, size + 1)
        next_token = str(offset + size) if len(page) > size else None
        return page[:size], next_token

    async def update(
        self, tenant: str, name: str, body: Any, update_mask: str | None
    ) -> CachedContentRecord:
        cache_id = _path_id(name)
        request = UpdateCachedContent.parse(body, update_mask)
        if request.name is not None and cache_id_from_name(request.name) != cache_id:
            raise InvalidArgument(
                f"Invalid value at 'name': {request.name!r} is not the cache of the URL."
            )
        now = self._clock()
        expires_at = self._expiry(request.ttl, request.expire_time, now)
        record = await self._store.update_cache_expiry(tenant, cache_id, expires_at, now)
        if record is None:
            raise _not_found(cache_id)
        return record

    async def delete(self, tenant: str, name: str) -> None:
        cache_id = _path_id(name)
        if not await self._store.delete_cache(tenant, cache_id, self._clock()):
            raise _not_found(cache_id)

    async def sweep(self, batch: int = 500) -> int:
        """Delete expired caches; returns how many."""
        now = self._clock()
        removed = 0
        while True:
            deleted = await self._store.delete_expired_caches(now, batch)
            removed += deleted
            if deleted < batch:
                return removed

    # ----- use -------------------------------------------------------------------------------

    async def resolve(self, tenant: str, reference: str) -> CachedPrefix:
        """``cachedContent`` of a generate request: the tenant's live cache, or 404."""
        cache_id = cache_id_from_name(reference, "cached_content")
        record = await self._store.get_cache(tenant, cache_id, self._clock())
        if record is None:
            raise _not_found(cache_id)
        model_id = self._turns.model(record.model.removeprefix("models/"))[0].id
        return CachedPrefix(
            f"cachedContents/{cache_id}", model_id, _as_generate_request(record.content)
        )


def with_cached_prefix(
    model: str, model_id: str, request: GenerateContentRequest, prefix: CachedPrefix
) -> TurnInput:
    """The turn of ``request`` after the cache: its contents first (named by the cache in
    errors), its systemInstruction, tools and toolConfig; the request's own contents and
    generationConfig. ``model_id`` is the request's model, resolved."""
    _check_model(model_id, prefix, "cached_content")
    for field in CACHED_FIELDS:
        if getattr(request, field) not in (None, []):
            raise InvalidArgument(
                f"Invalid value at '{field}': tool config, tools and system instruction "
                "should not be set in the request when using cached content; they come from "
                f"{prefix.name}."
            )
    cached = prefix.request
    merged = request.model_copy(
        update={
            "system_instruction": cached.system_instruction,
            "tools": cached.tools,
            "tool_config": cached.tool_config,
            "cached_content": None,
        }
    )
    turn = turn_input(model, merged)
    items = conversation_items(cached.contents or [], f"{prefix.name}.contents")
    return dataclasses.replace(turn, conversation=(*items, *turn.conversation))


def apply_cached_prefix(
    turn: TurnInput, model_id: str, prefix: CachedPrefix, where: str
) -> TurnInput:
    """Another surface's turn (OpenAI's ``extra_body.google.cached_content``) after the
    cache: the cache's contents first, its system instruction and tools; the turn may have
    neither of its own."""
    _check_model(model_id, prefix, where)
    if turn.system is not None or turn.tools is not None:
        raise InvalidArgument(
            f"Invalid value at '{where}': system or developer messages and tools should not "
            f"be set in the request when using cached content; they come from {prefix.name}."
        )
    cached = turn_input(turn.model, prefix.request)
    items = conversation_items(prefix.request.contents or [], f"{prefix.name}.contents")
    return dataclasses.replace(
        turn,
        system=cached.system,
        tools=cached.tools,
        conversation=(*items, *turn.conversation),
    )


def _check_model(model_id: str, prefix: CachedPrefix, where: str) -> None:
    if model_id != prefix.model_id:
        raise InvalidArgument(
            f"Invalid value at '{where}': {prefix.name} was made for model "
            f"{prefix.model_id!r}, and this request is for {model_id!r}; they must be the same."
        )


def _as_generate_request(content: dict[str, Any]) -> GenerateContentRequest:
    """The cached part as a generate request, checked as one (unserved fields are refused
    by name, as they are in generateContent)."""
    request = validate_body(GenerateContentRequest, content)
    reject_unserved(request)
    return request


def _path_id(name: str) -> str:
    """A cache id from the URL: one that cannot exist is simply not found."""
    bare = name.removeprefix("cachedContents/")
    if not CACHE_ID.fullmatch(bare):
        raise _not_found(bare)
    return bare


def _not_found(cache_id: str) -> NotFound:
    return NotFound(f"CachedContent 'cachedContents/{cache_id}' was not found.")
