"""Several async streams as one, each item tagged with the index of its stream, in the order
the items arrive: the candidates of one request stream side by side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar, cast

T = TypeVar("T")
_DONE = object()


async def merged(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    if len(streams) == 1:  # the common case, without tasks
        async for item in streams[0]:
            yield 0, item
        return
    queue: asyncio.Queue[tuple[int, object]] = asyncio.Queue(maxsize=len(streams) * 4)

    async def pump(index: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
        finally:
            await queue.put((index, _DONE))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, value = await queue.get()
            if value is _DONE:
                running -= 1
                failed = tasks[index].done() and tasks[index].exception()
                if failed:
                    raise failed
                continue
            yield index, cast(T, value)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
