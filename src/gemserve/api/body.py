"""Reading a JSON request body under an explicit size limit."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from starlette.requests import Request

from gemserve.errors import InvalidArgument, PayloadTooLarge


async def read_json(
    request: Request, max_bytes: int, *, allow_empty: bool = False, single_quotes: bool = False
) -> Any:
    """The parsed body; with ``allow_empty``, an empty body is ``None``.

    ``single_quotes`` also takes ``{'file': {'display_name': 'x'}}``, which the Gemini REST
    docs' upload example sends (Google's parser accepts it).
    """
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
        if allow_empty:
            return None
        raise InvalidArgument("The request body is empty; a JSON object is required.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if single_quotes and b"'" in raw and b'"' not in raw:
            with contextlib.suppress(orjson.JSONDecodeError):
                return orjson.loads(raw.replace(b"'", b'"'))
        raise InvalidArgument(
            f"Invalid JSON payload received: {exc.msg} at position {exc.pos}."
        ) from None


def _too_large(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."
