"""Reading a JSON request body under an explicit size limit."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gemserve.errors import InvalidArgument, PayloadTooLarge


async def read_json(request: Request, max_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError:
            raise InvalidArgument("Invalid Content-Length header.") from None
        if declared_size > max_bytes:
            raise PayloadTooLarge(_too_large(max_bytes))
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(_too_large(max_bytes))
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidArgument("The request body is empty; a JSON object is required.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(
            f"Invalid JSON payload received: {exc.msg} at position {exc.pos}."
        ) from None


def _too_large(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."
