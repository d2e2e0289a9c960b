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

    outcome: list[T] = []
    failure: list[BaseException] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            outcome.append(await work())
        except Exception as exc:  # raised below, as itself: a task group would wrap it
            failure.append(exc)
        finally:
            tg.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return outcome[0]
