"""generateContent and streamGenerateContent on the shared turn pipeline. Nothing is stored:
chats keep their history on the client and send it every turn."""

from __future__ import annotations

import secrets
from typing import Any

from gemserve.errors import InvalidArgument
from gemserve.protocol.classic.embed import CountTokensRequest
from gemserve.protocol.classic.request import GenerateContentRequest
from gemserve.protocol.classic.response import count_tokens_response
from gemserve.service.classic.caches import CacheService, with_cached_prefix
from gemserve.service.classic.translate import ResponseShape
from gemserve.service.classic.turns import turn_input
from gemserve.service.turn import Candidates, PreparedTurn, TurnPipeline


class GenerateContentService:
    def __init__(self, turns: TurnPipeline, caches: CacheService | None = None) -> None:
        self._turns = turns
        self._caches = caches

    async def start(
        self, model: str, body: Any, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> tuple[Candidates, ResponseShape]:
        """Validate, prepare and admit the turn (``candidateCount`` of them): every client
        error is raised here, before any byte of the response."""
        name = model.removeprefix("models/")
        request = GenerateContentRequest.parse(body)
        config = request.generation_config
        count = (config.candidate_count if config is not None else None) or 1
        limit = self._turns.limits.max_candidates
        if count > limit:
            raise InvalidArgument(
                f"Invalid value at 'generation_config.candidate_count': {count}; the limit is "
                f"{limit}."
            )
        prepared = await self._prepare(name, request, tenant, own_hosts)
        response_id = secrets.token_urlsafe(16)
        started = await prepared.admit_candidates(response_id, count)
        return started, ResponseShape(name, response_id)

    async def count_tokens(
        self, model: str, body: Any, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """``:countTokens``: the turn prepared exactly as generateContent prepares it, and the
        prompt tokens it would prefill (``usageMetadata.promptTokenCount``), nothing generated."""
        name = model.removeprefix("models/")
        request = CountTokensRequest.parse(body)
        prepared = await self._prepare(name, request, tenant, own_hosts)
        counted = await prepared.count()
        return count_tokens_response(
            counted.tokens, counted.by_modality, estimated=counted.estimated
        )

    async def _prepare(
        self,
        name: str,
        request: GenerateContentRequest,
        tenant: str,
        own_hosts: frozenset[str],
    ) -> PreparedTurn:
        spec, _ = self._turns.model(name)  # an unknown or loading model fails first
        if request.cached_content is None:
            turn = turn_input(name, request)
        elif self._caches is None:
            raise InvalidArgument("Invalid value at 'cached_content': caches are not served.")
        else:
            prefix = await self._caches.resolve(tenant, request.cached_content)
            turn = with_cached_prefix(name, spec.id, request, prefix)
        return await self._turns.prepare(turn, tenant=tenant, own_hosts=own_hosts)
