"""Routes of embeddings: the classic ``models/{model}:embedContent`` and
``:batchEmbedContents`` (dispatched by ``api/classic.py``), and the OpenAI-compatible
``POST /{version}/openai/embeddings`` (errors in OpenAI's envelope). A client that hangs up
cancels its texts still waiting or in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.body import read_json
from gemserve.api.context import AppContext, check_version
from gemserve.api.disconnect import unless_disconnected
from gemserve.api.openai import openai_errors
from gemserve.api.responses import json_response
from gemserve.service.classic.embed import ClassicEmbeddings
from gemserve.service.openai.embeddings import OpenAIEmbeddings


async def embed_content(request: Request, model: str) -> Response:
    service = ClassicEmbeddings(AppContext.of(request).embeddings)
    return await _embed(request, lambda body: service.embed_content(model, body))


async def batch_embed_contents(request: Request, model: str) -> Response:
    service = ClassicEmbeddings(AppContext.of(request).embeddings)
    return await _embed(request, lambda body: service.batch_embed_contents(model, body))


@openai_errors
async def openai_embeddings(request: Request) -> Response:
    check_version(request)
    service = OpenAIEmbeddings(AppContext.of(request).embeddings)
    return await _embed(request, service.create)


async def _embed(request: Request, work: Callable[[Any], Awaitable[dict[str, Any]]]) -> Response:
    await authenticate(request)
    limits = AppContext.of(request).settings.limits
    body = await read_json(request, limits.max_body_bytes, max_depth=limits.max_json_depth)
    task = asyncio.ensure_future(work(body))

    async def result() -> dict[str, Any]:
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            raise ClientDisconnect() from None  # the client hung up: nobody to answer

    try:
        payload = await unless_disconnected(request, result, on_disconnect=lambda: _cancel(task))
    finally:
        task.cancel()
    return json_response(payload)


def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()


routes = [Route("/{version}/openai/embeddings", openai_embeddings, methods=["POST"])]
