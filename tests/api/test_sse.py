from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from gemserve.api.sse import KEEPALIVE, encode_event, sse_frames


def test_frame_has_event_id_and_json_data() -> None:
    event = {"event_type": "step.delta", "type": "step.delta", "event_id": "evt_000004", "index": 0}
    frame = encode_event(event)
    assert frame.endswith(b"\n\n")
    lines = frame.decode().strip().split("\n")
    assert lines[0] == "event: step.delta"
    assert lines[1] == "id: evt_000004"
    assert json.loads(lines[2].removeprefix("data: ")) == event


async def test_idle_markers_become_keepalive_comments() -> None:
    async def source() -> AsyncIterator[dict[str, Any] | None]:
        yield None
        yield {"event_type": "x", "event_id": "evt_1"}

    frames = [frame async for frame in sse_frames(source())]
    assert frames[0] == KEEPALIVE
    assert frames[1].startswith(b"event: x")


async def test_closing_the_frames_closes_the_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[dict[str, Any] | None]:
        try:
            while True:
                yield {"event_type": "x", "event_id": "evt"}
                await asyncio.sleep(0)
        finally:
            closed.set()

    frames = sse_frames(endless())
    await anext(frames)
    await frames.aclose()
    assert closed.is_set()
