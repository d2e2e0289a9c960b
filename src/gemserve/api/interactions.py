"""Routes of the Interactions surface: create, get (and resume), cancel, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.body import read_json
from gemserve.api.context import AppContext, check_version, own_hosts, query_flag
from gemserve.api.disconnect import unless_disconnected
from gemserve.api.responses import json_response, sse_response
from gemserve.api.usage_header import flag_estimate
from gemserve.service.live import LiveInteraction


async def create_interaction(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    limits = ctx.settings.limits
    body = await read_json(request, limits.max_body_bytes, max_depth=limits.max_json_depth)
    wants_sse = request.query_params.get("alt") == "sse"
    parsed, run = await ctx.interactions.create(body, tenant, own_hosts(request))
    if parsed.stream or wants_sse:
        return sse_response(_follow(run, ctx.settings.keepalive_seconds))
    if parsed.background:
        return json_response(run.view())
    await unless_disconnected(request, run.wait, on_disconnect=run.cancel)
    result = run.result()
    return flag_estimate(json_response(result), result.get("usage"))


async def _follow(
    run: LiveInteraction, idle_seconds: float
) -> AsyncIterator[dict[str, Any] | None]:
    """The creator's stream: if it goes away, a foreground interaction is cancelled."""
    try:
        async for event in run.follow(idle_seconds=idle_seconds):
            yield event
    finally:
        if not run.background:
            run.cancel()


async def get_interaction(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    interaction_id = request.path_params["id"]
    if query_flag(request, "stream"):
        last_event_id = request.query_params.get("last_event_id") or None
        events = await ctx.interactions.events(
            tenant, interaction_id, last_event_id, idle_seconds=ctx.settings.keepalive_seconds
        )
        return sse_response(events)
    include_input = query_flag(request, "include_input")
    return json_response(
        await ctx.interactions.get(tenant, interaction_id, include_input=include_input)
    )


async def list_conversations(request: Request) -> Response:
    """gemserve's own: the last turn of each of the caller's conversations (the playground's
    list); ``pageSize`` (20, at most 100) and ``pageToken`` as on the other lists."""
    check_version(request)
    tenant = await authenticate(request)
    query = request.query_params
    return json_response(
        await AppContext.of(request).interactions.conversations(
            tenant,
            query.get("pageSize") or query.get("page_size"),
            query.get("pageToken") or query.get("page_token"),
        )
    )


async def cancel_interaction(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    return json_response(await ctx.interactions.cancel(tenant, request.path_params["id"]))


async def delete_interaction(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    await AppContext.of(request).interactions.delete(tenant, request.path_params["id"])
    return json_response({})


routes = [
    Route("/{version}/interactions", create_interaction, methods=["POST"]),
    Route("/{version}/interactions", list_conversations, methods=["GET"]),
    Route("/{version}/interactions/{id}", get_interaction, methods=["GET"]),
    Route("/{version}/interactions/{id}", delete_interaction, methods=["DELETE"]),
    Route("/{version}/interactions/{id}/cancel", cancel_interaction, methods=["POST"]),
]
