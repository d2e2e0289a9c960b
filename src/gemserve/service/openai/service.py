"""Chat completions on the shared turn pipeline; nothing is stored."""

from __future__ import annotations

import secrets
from typing import Any

from gemserve.protocol.openai.request import ChatCompletionRequest
from gemserve.service.clock import Clock, utc_now
from gemserve.service.openai.translate import CompletionShape
from gemserve.service.openai.turns import turn_input
from gemserve.service.turn import StartedTurn, TurnPipeline


class ChatCompletionService:
    def __init__(self, turns: TurnPipeline, clock: Clock = utc_now) -> None:
        self._turns = turns
        self._clock = clock

    async def start(
        self, body: Any, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> tuple[ChatCompletionRequest, StartedTurn, CompletionShape]:
        """Validate, prepare and admit: every client error is raised before any byte."""
        request = ChatCompletionRequest.parse(body)
        self._turns.model(request.model)
        prepared = await self._turns.prepare(
            turn_input(request), tenant=tenant, own_hosts=own_hosts
        )
        completion_id = "chatcmpl-" + secrets.token_urlsafe(18)
        started = await prepared.admit(completion_id)
        shape = CompletionShape(completion_id, int(self._clock().timestamp()), request.model)
        return request, started, shape
