"""Liveness and readiness probes (no API key: they leak nothing)."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gemserve.api.context import AppContext
from gemserve.api.errors import error_response
from gemserve.api.responses import json_response


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 once every model has loaded and decoded its start-up batch."""
    ctx = AppContext.of(request)
    models = {model_id: engine.ready for model_id, engine in ctx.engines.items()}
    if not all(models.values()):
        loading = ", ".join(model_id for model_id, ready in models.items() if not ready)
        return error_response(503, f"Still loading: {loading}.", retry_after=1)
    return json_response({"status": "ready", "models": models})


async def statsz(request: Request) -> Response:
    """Engine counters per model, for operators and for tests that observe cancellation."""
    ctx = AppContext.of(request)
    return json_response(
        {model_id: dataclasses.asdict(engine.stats()) for model_id, engine in ctx.engines.items()}
    )


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/statsz", statsz, methods=["GET"]),
]
