"""Waiting for an observable condition, bounded: a broken server fails a test instead of
hanging it, and no test hopes that a fixed sleep was long enough."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0


def wait_until(
    condition: Callable[[], T],
    *,
    seconds: float = DEFAULT_TIMEOUT_S,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail with
    ``what`` in the message after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(interval)


async def wait_for(
    condition: Callable[[], T],
    *,
    seconds: float = DEFAULT_TIMEOUT_S,
    interval: float = 0.005,
    what: str = "the condition",
) -> T:
    """:func:`wait_until` for the event loop (for a value another task or thread sets)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(interval)


async def wait_for_async(
    condition: Callable[[], Awaitable[T]],
    *,
    seconds: float = DEFAULT_TIMEOUT_S,
    interval: float = 0.005,
    what: str = "the condition",
) -> T:
    """:func:`wait_for` with an async condition (one that reads a store or makes a request)."""
    deadline = time.monotonic() + seconds
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(interval)
