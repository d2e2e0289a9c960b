"""Routes of the OpenAI-compatible surface (``/{version}/openai/``, as Gemini serves it):
chat completions and models, with errors in OpenAI's envelope. A streaming request is told
apart by the body's ``stream``, not by ``Accept`` (the SDK sends application/json)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.body import read_json
from gemserve.api.context import AppContext, check_version, own_hosts
from gemserve.api.disconnect import unless_disconnected
from gemserve.api.responses import SSE_HEADERS, json_response
from gemserve.api.usage_header import flag_estimate
from gemserve.errors import GemserveError
from gemserve.protocol.openai.response import error_body
from gemserve.service.openai.translate import stream_chunks, whole_completion

Handler = Callable[[Request], Awaitable[Response]]


def openai_errors(handler: Handler) -> Handler:
    """This surface's clients parse OpenAI's error envelope, not Google's."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except GemserveError as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            return Response(
                orjson.dumps(error_body(exc.http_status, exc.message, exc.rpc_status)),
                status_code=exc.http_status,
                media_type="application/json",
                headers=headers,
            )

    return wrapped


@openai_errors
async def chat_completions(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    ctx = AppContext.of(request)
    limits = ctx.settings.limits
    body = await read_json(request, limits.max_body_bytes, max_depth=limits.max_json_depth)
    parsed, turn, shape = await ctx.chat_completions.start(body, tenant, own_hosts(request))
    if parsed.stream:
        include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        return StreamingResponse(
            _data_frames(stream_chunks(turn, shape, include_usage=include_usage)),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    result = await unless_disconnected(
        request, lambda: whole_completion(turn, shape), on_disconnect=turn.cancel
    )
    return flag_estimate(json_response(result), result.get("usage"))


async def _data_frames(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        closer = getattr(chunks, "aclose", None)
        if closer is not None:
            await closer()


@openai_errors
async def list_models(request: Request) -> Response:
    check_version(request)
    await authenticate(request)
    return json_response(AppContext.of(request).models.openai_list())


@openai_errors
async def get_model(request: Request) -> Response:
    check_version(request)
    await authenticate(request)
    return json_response(AppContext.of(request).models.openai_get(request.path_params["name"]))


routes = [
    Route("/{version}/openai/chat/completions", chat_completions, methods=["POST"]),
    Route("/{version}/openai/models", list_models, methods=["GET"]),
    Route("/{version}/openai/models/{name:path}", get_model, methods=["GET"]),
]
