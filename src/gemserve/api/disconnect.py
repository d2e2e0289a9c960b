"""Waiting for work on behalf of a client that may hang up: the work is cancelled if it does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from starlette.requests import Request

T = TypeVar("T")


async def unless_disconnected(
    request: Request, work: Callable[[], Awaitable[T]], on_disconnect: Callable[[], None]
) -> T:
    """Run ``work``; if the client disconnects first, call ``on_disconnect`` (which must make
    ``work`` end soon, e.g. by cancelling the generation it waits for) and still return its
    result."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        on_disconnect()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            result = await work()
        finally:
            tg.cancel_scope.cancel()
    return result
