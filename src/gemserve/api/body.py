"""Reading a JSON request body under an explicit size limit."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from starlette.requests import Request

from gemserve.errors import InvalidArgument, PayloadTooLarge, RequestTimeout

# For bodies whose callers state no depth (the upload start's few fields).
DEFAULT_MAX_DEPTH = 100


async def read_json(
    request: Request,
    max_bytes: int,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allow_empty: bool = False,
    single_quotes: bool = False,
) -> Any:
    """The parsed body; with ``allow_empty``, an empty body is ``None``. Deeper nesting than
    ``max_depth`` is a 400 here: past about 250 levels pydantic cannot serialize what it
    validated, and that failure came after the generation was admitted.

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
    raw = await _read_body(request, max_bytes)
    if not raw.strip():
        if allow_empty:
            return None
        raise InvalidArgument("The request body is empty; a JSON object is required.")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        parsed = None
        if single_quotes and b"'" in raw and b'"' not in raw:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(raw.replace(b"'", b'"'))
        if parsed is None:
            raise InvalidArgument(
                f"Invalid JSON payload received: {exc.msg} at position {exc.pos}."
            ) from None
    if json_depth(parsed) > max_depth:
        raise InvalidArgument(
            f"Invalid JSON payload received: nested deeper than {max_depth} levels."
        )
    return parsed


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The body, within the size limit and the app's body read timeout (a body shorter than
    its Content-Length, or sent a byte at a time, would hold a connection forever)."""
    state = getattr(request.app, "state", None)
    ctx = getattr(state, "ctx", None) if state is not None else None
    timeout = ctx.settings.limits.body_read_timeout_seconds if ctx is not None else None
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(_too_large(max_bytes))
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {timeout:g} s ({size} bytes received)."
        ) from None
    return b"".join(chunks)


def json_depth(value: Any) -> int:
    """Levels of arrays and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def _too_large(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."
