"""Routes of the Models surface (``client.models.list()`` / ``get()``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.context import AppContext, check_version
from gemserve.api.responses import json_response


async def list_models(request: Request) -> Response:
    check_version(request)
    await authenticate(request)
    query = request.query_params
    page = AppContext.of(request).models.list(
        query.get("pageSize") or query.get("page_size"),
        query.get("pageToken") or query.get("page_token"),
    )
    return json_response(page)


async def get_model(request: Request) -> Response:
    check_version(request)
    await authenticate(request)
    return json_response(AppContext.of(request).models.get(request.path_params["name"]))


routes = [
    Route("/{version}/models", list_models, methods=["GET"]),
    Route("/{version}/models/{name:path}", get_model, methods=["GET"]),
]
