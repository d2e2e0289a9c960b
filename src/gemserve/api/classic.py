"""Routes of the classic surface: ``models/{model}:generateContent`` and
``:streamGenerateContent`` (always server-sent events: bare ``data: {json}`` blocks, with no
``event:``/``id:`` lines and no keep-alive comments, which the Python SDK would try to parse
as JSON)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.batches import async_batch_embed_content, batch_generate_content
from gemserve.api.body import read_json
from gemserve.api.context import AppContext, check_version, own_hosts
from gemserve.api.disconnect import unless_disconnected
from gemserve.api.embeddings import batch_embed_contents, embed_content
from gemserve.api.responses import SSE_HEADERS, json_response
from gemserve.api.usage_header import flag_estimate
from gemserve.errors import NotFound
from gemserve.service.classic.translate import stream_chunks, whole_response


async def model_method(request: Request) -> Response:
    """``POST models/{model}:{method}``: one route, the method after the last colon."""
    check_version(request)
    target = request.path_params["target"]
    model, sep, method = target.rpartition(":")
    handler = _METHODS.get(method) if sep and model else None
    if handler is None:
        raise NotFound(f"The requested URL {request.url.path} was not found on this server.")
    return await handler(request, model)


async def generate_content(request: Request, model: str) -> Response:
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    limits = ctx.settings.limits
    body = await read_json(request, limits.max_body_bytes, max_depth=limits.max_json_depth)
    turn, shape = await ctx.generate_content.start(model, body, tenant, own_hosts(request))
    result = await unless_disconnected(
        request, lambda: whole_response(turn, shape), on_disconnect=turn.cancel
    )
    return flag_estimate(json_response(result), result.get("usageMetadata"))


async def stream_generate_content(request: Request, model: str) -> Response:
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    limits = ctx.settings.limits
    body = await read_json(request, limits.max_body_bytes, max_depth=limits.max_json_depth)
    turn, shape = await ctx.generate_content.start(model, body, tenant, own_hosts(request))
    return StreamingResponse(
        _data_frames(stream_chunks(turn, shape)),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def count_tokens(request: Request, model: str) -> Response:
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    limits = ctx.settings.limits
    body = await read_json(request, limits.max_body_bytes, max_depth=limits.max_json_depth)
    counted = await ctx.generate_content.count_tokens(model, body, tenant, own_hosts(request))
    return flag_estimate(json_response(counted), counted)


async def _data_frames(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
    finally:
        closer = getattr(chunks, "aclose", None)
        if closer is not None:
            await closer()


_METHODS = {
    "generateContent": generate_content,
    "streamGenerateContent": stream_generate_content,
    "batchGenerateContent": batch_generate_content,
    "countTokens": count_tokens,
    "embedContent": embed_content,
    "batchEmbedContents": batch_embed_contents,
    "asyncBatchEmbedContent": async_batch_embed_content,
}

routes = [Route("/{version}/models/{target:path}", model_method, methods=["POST"])]
