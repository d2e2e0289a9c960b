"""Routes of the Files surface: get, list, delete and download (uploads are in uploads.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gemserve.api.auth import authenticate
from gemserve.api.context import AppContext, check_version
from gemserve.api.responses import json_response
from gemserve.errors import InvalidArgument
from gemserve.protocol.files import file_resource


def base_url(request: Request) -> str:
    """This server as the caller sees it: scheme, host and any path prefix."""
    return str(request.base_url).rstrip("/")


async def get_file(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    files = AppContext.of(request).files
    name: str = request.path_params["name"]
    if name.endswith(":download"):
        return await _download(request, tenant, name.removesuffix(":download"))
    record = await files.get(tenant, name)
    return json_response(file_resource(record, base_url(request), request.path_params["version"]))


async def _download(request: Request, tenant: str, name: str) -> Response:
    if request.query_params.get("alt") != "media":
        raise InvalidArgument("Invalid value at 'alt': a download needs alt=media.")
    files = AppContext.of(request).files
    record = await files.get(tenant, name)
    return StreamingResponse(
        files.content(record),
        media_type=record.mime_type,
        headers={
            "Content-Length": str(record.size_bytes),
            "Content-Disposition": "attachment",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def list_files(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    query = request.query_params
    records, next_token = await AppContext.of(request).files.list(
        tenant,
        query.get("pageSize") or query.get("page_size"),
        query.get("pageToken") or query.get("page_token"),
    )
    base, version = base_url(request), request.path_params["version"]
    page: dict[str, object] = {}
    if records:
        page["files"] = [file_resource(r, base, version) for r in records]
    if next_token is not None:
        page["nextPageToken"] = next_token
    return json_response(page)


async def delete_file(request: Request) -> Response:
    check_version(request)
    tenant = await authenticate(request)
    await AppContext.of(request).files.delete(tenant, request.path_params["name"])
    return json_response({})


routes = [
    Route("/{version}/files", list_files, methods=["GET"]),
    Route("/{version}/files/{name}", get_file, methods=["GET"]),
    Route("/{version}/files/{name}", delete_file, methods=["DELETE"]),
]
