"""The resumable upload protocol the SDKs speak (``POST /upload/{version}/files``).

A request without ``upload_id`` starts a session (API key required) and answers with the
upload URL in ``X-Goog-Upload-URL``, built from the request's own scheme, host and prefix.
Requests to that URL carry chunks (``upload``, ``upload, finalize``), or ``query``/``cancel``;
the token in the URL is the capability, so they need no key (Python sends none). Chunk bodies
arrive labelled ``application/json`` and are never parsed. Every answer to a chunk carries
``X-Goog-Upload-Status``: without it the SDKs re-send the chunk three times before failing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.body import read_json
from gemserve.api.context import AppContext, check_version
from gemserve.api.errors import error_response, unhandled_error_handler
from gemserve.api.files import base_url
from gemserve.api.responses import json_response
from gemserve.errors import GemserveError, InvalidArgument
from gemserve.protocol.common import is_decimal_count
from gemserve.protocol.files import file_resource
from gemserve.store.errors import as_store_error

CHUNK_GRANULARITY = 8 * 1024 * 1024
START_BODY_LIMIT = 64 * 1024


def _commands(request: Request) -> set[str]:
    raw = request.headers.get("x-goog-upload-command", "")
    return {part.strip().lower() for part in raw.split(",") if part.strip()}


async def upload(request: Request) -> Response:
    check_version(request)
    token = request.query_params.get("upload_id")
    if token is None:
        return await _start(request)
    try:
        return await _continue(request, token)
    except ClientDisconnect:
        raise
    except Exception as exc:
        # "final" on every failure: with "active" the SDKs send their next chunk at an offset
        # past the failed one; with none they re-send this one three times before failing.
        mapped = exc if isinstance(exc, GemserveError) else as_store_error(exc)
        if mapped is None:
            response = await unhandled_error_handler(request, exc)
        else:
            response = error_response(
                mapped.http_status,
                mapped.message,
                mapped.rpc_status,
                retry_after=mapped.retry_after,
            )
        response.headers["X-Goog-Upload-Status"] = "final"
        return response


async def _start(request: Request) -> Response:
    tenant = await authenticate(request)
    protocol = request.headers.get("x-goog-upload-protocol", "").lower()
    if protocol != "resumable":
        raise InvalidArgument(
            "Only the resumable upload protocol is supported: send X-Goog-Upload-Protocol: "
            "resumable and X-Goog-Upload-Command: start (the SDKs do)."
        )
    if _commands(request) != {"start"}:
        raise InvalidArgument(
            "Invalid value at 'X-Goog-Upload-Command': a new upload starts with 'start'."
        )
    body = await read_json(request, START_BODY_LIMIT, allow_empty=True, single_quotes=True)
    version = request.path_params["version"]
    token = await AppContext.of(request).files.start_upload(
        tenant,
        body,
        header_size=request.headers.get("x-goog-upload-header-content-length"),
        header_mime_type=request.headers.get("x-goog-upload-header-content-type"),
    )
    query = urlencode({"upload_id": token, "upload_protocol": "resumable"})
    upload_url = f"{base_url(request)}/upload/{version}/files?{query}"
    response = json_response({})
    response.headers.update(
        {
            "X-Goog-Upload-URL": upload_url,
            "X-Goog-Upload-Control-URL": upload_url,
            "X-Goog-Upload-Status": "active",
            "X-Goog-Upload-Chunk-Granularity": str(CHUNK_GRANULARITY),
        }
    )
    return response


async def _continue(request: Request, token: str) -> Response:
    files = AppContext.of(request).files
    commands = _commands(request)
    if commands == {"query"}:
        received = await files.upload_status(token)
        return _status("active", received)
    if commands == {"cancel"}:
        await files.cancel_upload(token)
        return _status("cancelled")
    if commands not in ({"upload"}, {"upload", "finalize"}, {"finalize"}):
        raise InvalidArgument(
            "Invalid value at 'X-Goog-Upload-Command': expected 'upload', 'upload, finalize', "
            "'query' or 'cancel'."
        )
    raw_offset = request.headers.get("x-goog-upload-offset")
    if raw_offset is None or not is_decimal_count(raw_offset):
        raise InvalidArgument("Invalid value at 'X-Goog-Upload-Offset': a byte offset is required.")
    outcome = await files.upload_chunk(
        token, int(raw_offset), _counted(request), finalize="finalize" in commands
    )
    if outcome.file is None:
        return _status("active", outcome.received)
    # The file's uri uses the version segment of this request (the SDKs keep it).
    resource = file_resource(outcome.file, base_url(request), request.path_params["version"])
    response = json_response({"file": resource})
    response.headers["X-Goog-Upload-Status"] = "final"
    return response


async def _counted(request: Request) -> AsyncIterator[bytes]:
    """The chunk's body, its bytes counted in the app's metrics as they arrive."""
    metrics = AppContext.of(request).metrics
    async for piece in request.stream():
        if metrics is not None and piece:
            metrics.count_upload(len(piece))
        yield piece


def _status(status: str, received: int | None = None) -> Response:
    response = json_response({})
    response.headers["X-Goog-Upload-Status"] = status
    if received is not None:
        response.headers["X-Goog-Upload-Size-Received"] = str(received)
    return response


routes = [Route("/upload/{version}/files", upload, methods=["POST"])]
