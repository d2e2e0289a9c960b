"""generateContent and streamGenerateContent on the shared turn pipeline. Nothing is stored:
chats keep their history on the client and send it every turn."""

from __future__ import annotations

import secrets
from typing import Any

from gemserve.protocol.classic.request import GenerateContentRequest
from gemserve.service.classic.translate import ResponseShape
from gemserve.service.classic.turns import turn_input
from gemserve.service.turn import StartedTurn, TurnPipeline


class GenerateContentService:
    def __init__(self, turns: TurnPipeline) -> None:
        self._turns = turns

    async def start(
        self, model: str, body: Any, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> tuple[StartedTurn, ResponseShape]:
        """Validate, prepare and admit the turn: every client error is raised here, before any
        byte of the response."""
        name = model.removeprefix("models/")
        request = GenerateContentRequest.parse(body)
        self._turns.model(name)  # an unknown or loading model fails first
        prepared = await self._turns.prepare(
            turn_input(name, request), tenant=tenant, own_hosts=own_hosts
        )
        response_id = secrets.token_urlsafe(16)
        started = await prepared.admit(response_id)
        return started, ResponseShape(name, response_id)
