"""Request headers have a deadline (slowloris, half-open sockets); a slow response does not."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from gemserve.api.header_deadline import header_deadline_protocol
from tests.support.server import free_port

DEADLINE = 1.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers after ``?sleep=`` seconds, streaming a byte per 0.5 s meanwhile."""
    if scope["type"] != "http":
        return
    delay = float(scope["query_string"].decode().removeprefix("sleep=") or 0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    waited = 0.0
    while waited < delay:
        await send({"type": "http.response.body", "body": b".", "more_body": True})
        await asyncio.sleep(0.5)
        waited += 0.5
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    chosen = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=chosen,
        http=header_deadline_protocol(DEADLINE),
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
        await asyncio.sleep(0.02)
    yield chosen
    server.should_exit = True
    await task


def closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes the connection (reads until EOF)."""
    began = time.monotonic()
    sock.settimeout(10)
    while sock.recv(1024):
        pass
    return time.monotonic() - began


async def test_headers_sent_a_byte_at_a_time_are_cut_off(port: int) -> None:
    def trickle() -> tuple[float, int]:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            began = time.monotonic()
            sent = 0
            try:
                for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100:
                    sock.sendall(bytes([byte]))
                    sent += 1
                    time.sleep(0.1)
            except OSError:
                pass  # reset by the server
            return time.monotonic() - began, sent

    elapsed, sent = await asyncio.to_thread(trickle)
    assert elapsed < DEADLINE + 2
    assert sent < 100  # the client could not finish its headers


async def test_a_half_open_connection_is_closed(port: int) -> None:
    def half_open() -> float:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never the blank line
            return closed_after(sock)

    assert await asyncio.to_thread(half_open) < DEADLINE + 2


async def test_a_slow_response_and_keep_alive_requests_are_not_cut(port: int) -> None:
    def two_requests() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            answers = b""
            for query in (b"sleep=2.5", b"sleep=0"):
                sock.sendall(b"GET /?" + query + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                while not answers.endswith(b"ok\r\n0\r\n\r\n"):
                    chunk = sock.recv(1024)
                    assert chunk, "closed early"
                    answers += chunk
                answers += b"|"
            return answers

    answers = await asyncio.to_thread(two_requests)
    assert answers.count(b"HTTP/1.1 200") == 2
