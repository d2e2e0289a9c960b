"""Server-sent events framing: pre-encoded frames and keep-alive comments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

KEEPALIVE = b": keep-alive\n\n"


def encode_event(event: dict[str, Any]) -> bytes:
    return b"".join(
        (
            b"event: ",
            event["event_type"].encode(),
            b"\nid: ",
            event["event_id"].encode(),
            b"\ndata: ",
            orjson.dumps(event),
            b"\n\n",
        )
    )


async def sse_frames(events: AsyncIterator[dict[str, Any] | None]) -> AsyncIterator[bytes]:
    """Encode events; ``None`` (the source was idle) becomes a keep-alive comment.

    Closing this generator closes the source, which cancels a foreground generation.
    """
    try:
        async for event in events:
            yield KEEPALIVE if event is None else encode_event(event)
    finally:
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
