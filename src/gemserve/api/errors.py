"""The Google error envelope, and the one place exceptions become HTTP responses."""

from __future__ import annotations

import logging
import re

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gemserve.errors import GemserveError
from gemserve.protocol.openai.response import error_body
from gemserve.store.errors import as_store_error

log = logging.getLogger("gemserve.api")

_OPENAI_PATH = re.compile(r"^/[^/]+/openai(?:/|$)")

_HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def error_response(
    code: int, message: str, status: str | None = None, *, retry_after: int | None = None
) -> Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "status": status or _HTTP_STATUS_NAMES.get(code, "UNKNOWN"),
        }
    }
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return Response(
        orjson.dumps(body), status_code=code, media_type="application/json", headers=headers
    )


async def gemserve_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GemserveError)
    return error_response(exc.http_status, exc.message, exc.rpc_status, retry_after=exc.retry_after)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"The requested URL {request.url.path} was not found on this server."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
    else:
        message = str(exc.detail)
    if _OPENAI_PATH.match(request.url.path):
        # That surface's clients parse OpenAI's envelope, for routing errors too.
        body = error_body(exc.status_code, message, _HTTP_STATUS_NAMES.get(exc.status_code))
        return Response(orjson.dumps(body), exc.status_code, media_type="application/json")
    return error_response(exc.status_code, message)


async def client_gone_handler(request: Request, exc: Exception) -> Response:
    """The client hung up while sending its body: no one to answer, and no fault here. 499
    (nginx's "client closed request") is for the access log only."""
    log.debug("client disconnected during the body of %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def store_error_handler(request: Request, exc: Exception) -> Response:
    """A database or OS error that escaped a handler: a 503 with Retry-After when the store
    is unreachable (PostgreSQL stopped or restarting, a lost connection), a 507 when the disk
    is full, in the surface's own envelope; anything else is a bug (500)."""
    mapped = as_store_error(exc)
    if mapped is None:
        return await unhandled_error_handler(request, exc)
    log.warning("store error on %s %s: %r", request.method, request.url.path, exc)
    status = mapped.http_status
    headers = {"Retry-After": str(mapped.retry_after)}
    if _OPENAI_PATH.match(request.url.path):
        body = error_body(status, mapped.message, mapped.rpc_status)
        return Response(orjson.dumps(body), status, media_type="application/json", headers=headers)
    return error_response(status, mapped.message, mapped.rpc_status, retry_after=mapped.retry_after)


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    # A real bug. Library text is never echoed to the client (it can leak internals).
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal error; the server log has the details.")
