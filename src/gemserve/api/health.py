"""Liveness and readiness probes (no API key: they leak nothing)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gemserve.api.context import AppContext
from gemserve.api.errors import error_response
from gemserve.api.interactions import json_response


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    ctx = AppContext.of(request)
    engine = ctx.engines.get(ctx.registry.default_id)
    if engine is None or not engine.ready:
        return error_response(503, "The default model is still loading.")
    models = {model_id: engine.ready for model_id, engine in ctx.engines.items()}
    return json_response({"status": "ready", "models": models})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
