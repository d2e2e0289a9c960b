"""Routes of batches: ``models/{model}:batchGenerateContent`` and
``:asyncBatchEmbedContent`` (dispatched by the classic surface's model route), and
``batches`` get, list, cancel and delete (either kind)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.body import read_json
from gemserve.api.context import AppContext, check_version, own_hosts
from gemserve.api.responses import json_response
from gemserve.errors import NotFound


async def batch_generate_content(request: Request, model: str) -> Response:
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    limits = ctx.settings.limits
    body = await read_json(request, limits.max_body_bytes, max_depth=limits.max_json_depth)
    return json_response(await ctx.batches.create(model, body, tenant, own_hosts(request)))


async def async_batch_embed_content(request: Request, model: str) -> Response:
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    limits = ctx.settings.limits
    body = await read_json(request, limits.max_body_bytes, max_depth=limits.max_json_depth)
    return json_response(await ctx.batches.create_embeddings(model, body, tenant))


async def list_batches(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    query = request.query_params
    page = await AppContext.of(request).batches.list(
        tenant,
        query.get("pageSize") or query.get("page_size"),
        query.get("pageToken") or query.get("page_token"),
    )
    return json_response(page)


async def get_batch(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    name: str = request.path_params["name"]
    return json_response(await AppContext.of(request).batches.get(tenant, name))


async def cancel_batch(request: Request) -> Response:
    """``POST batches/{id}:cancel``."""
    check_version(request)
    target: str = request.path_params["name"]
    name, sep, method = target.rpartition(":")
    if not sep or method != "cancel":
        raise NotFound(f"The requested URL {request.url.path} was not found on this server.")
    tenant = await authenticate(request)
    await AppContext.of(request).batches.cancel(tenant, name)
    return json_response({})


async def delete_batch(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    await AppContext.of(request).batches.delete(tenant, request.path_params["name"])
    return json_response({})


routes = [
    Route("/{version}/batches", list_batches, methods=["GET"]),
    Route("/{version}/batches/{name}", get_batch, methods=["GET"]),
    Route("/{version}/batches/{name}", cancel_batch, methods=["POST"]),
    Route("/{version}/batches/{name}", delete_batch, methods=["DELETE"]),
]
