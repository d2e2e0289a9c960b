"""Chat completions on the shared turn pipeline; nothing is stored."""

from __future__ import annotations

import secrets
from typing import Any

from gemserve.errors import InvalidArgument
from gemserve.protocol.openai.request import ChatCompletionRequest
from gemserve.service.classic.caches import CacheService, apply_cached_prefix
from gemserve.service.clock import Clock, utc_now
from gemserve.service.openai.translate import CompletionShape
from gemserve.service.openai.turns import turn_input
from gemserve.service.turn import Candidates, TurnPipeline


class ChatCompletionService:
    def __init__(
        self, turns: TurnPipeline, clock: Clock = utc_now, caches: CacheService | None = None
    ) -> None:
        self._turns = turns
        self._clock = clock
        self._caches = caches

    async def start(
        self, body: Any, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> tuple[ChatCompletionRequest, Candidates, CompletionShape]:
        """Validate, prepare and admit (``n`` choices): every client error is raised before
        any byte."""
        request = ChatCompletionRequest.parse(body)
        count = request.n or 1
        if count > self._turns.limits.max_candidates:
            raise InvalidArgument(
                f"Invalid value at 'n': {count}; the limit is {self._turns.limits.max_candidates}."
            )
        spec, _ = self._turns.model(request.model)
        turn = turn_input(request)
        google = request.extra_body.google if request.extra_body else None
        if google is not None and google.cached_content is not None:
            if self._caches is None:
                raise InvalidArgument(
                    "Invalid value at 'extra_body.google.cached_content': caches are not served."
                )
            prefix = await self._caches.resolve(tenant, google.cached_content)
            turn = apply_cached_prefix(turn, spec.id, prefix, "extra_body.google.cached_content")
        prepared = await self._turns.prepare(turn, tenant=tenant, own_hosts=own_hosts)
        completion_id = "chatcmpl-" + secrets.token_urlsafe(18)
        started = await prepared.admit_candidates(completion_id, count)
        shape = CompletionShape(completion_id, int(self._clock().timestamp()), request.model)
        return request, started, shape
