"""Routes of the Interactions surface."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.body import read_json
from gemserve.api.context import AppContext, check_version
from gemserve.api.sse import sse_frames
from gemserve.service.interactions import InteractionRun

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_response(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


async def create_interaction(request: Request) -> Response:
    check_version(request)
    authenticate(request)
    ctx = AppContext.of(request)
    body = await read_json(request, ctx.settings.limits.max_body_bytes)
    wants_sse = request.query_params.get("alt") == "sse"
    parsed, run = await ctx.interactions.create(body)
    if parsed.stream or wants_sse:
        return StreamingResponse(
            sse_frames(run.events(), ctx.settings.keepalive_seconds),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    result = await _collect_unless_disconnected(request, run)
    return json_response(result)


async def _collect_unless_disconnected(request: Request, run: InteractionRun) -> dict[str, Any]:
    """Fold the run; if the client hangs up first, cancel generation within one decode step."""
    result: dict[str, Any] = {}

    async def watch_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        tg.cancel_scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_disconnect)
            result = await run.collect()
            tg.cancel_scope.cancel()
    finally:
        run.cancel()
    return result


routes = [Route("/{version}/interactions", create_interaction, methods=["POST"])]
