"""Routes of ``cachedContents``: create, get, list, update (the expiration) and delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.body import read_json
from gemserve.api.context import AppContext, check_version, own_hosts
from gemserve.api.responses import json_response
from gemserve.protocol.classic.caches import cached_content_resource


async def create_cache(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    limits = ctx.settings.limits
    body = await read_json(request, limits.max_body_bytes, max_depth=limits.max_json_depth)
    record = await ctx.caches.create(body, tenant, own_hosts(request))
    return json_response(cached_content_resource(record))


async def list_caches(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    query = request.query_params
    records, next_token = await AppContext.of(request).caches.list(
        tenant,
        query.get("pageSize") or query.get("page_size"),
        query.get("pageToken") or query.get("page_token"),
    )
    page: dict[str, object] = {}
    if records:
        page["cachedContents"] = [cached_content_resource(r) for r in records]
    if next_token is not None:
        page["nextPageToken"] = next_token
    return json_response(page)


async def get_cache(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    record = await AppContext.of(request).caches.get(tenant, request.path_params["name"])
    return json_response(cached_content_resource(record))


async def update_cache(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    limits = ctx.settings.limits
    body = await read_json(
        request, limits.max_body_bytes, max_depth=limits.max_json_depth, allow_empty=True
    )
    query = request.query_params
    record = await ctx.caches.update(
        tenant,
        request.path_params["name"],
        body,
        query.get("updateMask") or query.get("update_mask"),
    )
    return json_response(cached_content_resource(record))


async def delete_cache(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    await AppContext.of(request).caches.delete(tenant, request.path_params["name"])
    return json_response({})


routes = [
    Route("/{version}/cachedContents", create_cache, methods=["POST"]),
    Route("/{version}/cachedContents", list_caches, methods=["GET"]),
    Route("/{version}/cachedContents/{name}", get_cache, methods=["GET"]),
    Route("/{version}/cachedContents/{name}", update_cache, methods=["PATCH"]),
    Route("/{version}/cachedContents/{name}", delete_cache, methods=["DELETE"]),
]
