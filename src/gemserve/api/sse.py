"""Server-sent events framing: pre-encoded frames and idle keep-alive comments."""

from __future__ import annotations

import asyncio
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


async def sse_frames(
    events: AsyncIterator[dict[str, Any]], keepalive_seconds: float
) -> AsyncIterator[bytes]:
    """Encode events; emit a comment line whenever the source is idle for ``keepalive_seconds``.

    The pending ``__anext__`` is never cancelled by the timer (that would close the source);
    only closing this generator does, which propagates cancellation to generation.
    """
    iterator = aiter(events)
    pending: asyncio.Future[dict[str, Any]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=keepalive_seconds)
            if not done:
                yield KEEPALIVE
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield encode_event(event)
    finally:
        if pending is not None:
            # Cancelling the pending step throws into the source, whose cleanup runs at once.
            pending.cancel()
        else:
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                await closer()
