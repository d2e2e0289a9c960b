"""Response helpers shared by every route module: JSON bodies and server-sent event streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from gemserve.api.sse import sse_frames

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_response(payload: Any, status_code: int = 200) -> Response:
    """numpy arrays (embeddings) are written as lists; float32 values as their shortest
    float32 text."""
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
    )


def sse_response(events: AsyncIterator[dict[str, Any] | None]) -> Response:
    """``None`` from ``events`` (the source was idle) becomes a keep-alive comment."""
    return StreamingResponse(
        sse_frames(events), media_type="text/event-stream", headers=SSE_HEADERS
    )
