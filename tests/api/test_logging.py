"""The access log: one line per request, written before the response's last bytes leave."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from starlette.types import Message, Receive, Scope, Send

from gemserve.api.logging import RequestLogMiddleware


async def two_chunk_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"a", "more_body": True})
    await send({"type": "http.response.body", "body": b"b"})


async def hangs_up_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"a", "more_body": True})
    raise OSError("client went away")


SCOPE: Scope = {"type": "http", "method": "POST", "path": "/v1beta/interactions"}


async def receive() -> Message:
    return {"type": "http.request", "body": b""}


async def test_line_is_written_before_the_last_body_chunk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    order: list[str] = []
    logged_before: list[int] = []

    async def send(message: Message) -> None:
        order.append(message["type"])
        logged_before.append(len(caplog.records))
        if message["type"] == "http.response.start":
            assert (b"x-request-id", message["headers"][-1][1]) == message["headers"][-1]

    with caplog.at_level(logging.INFO, logger="gemserve.access"):
        await RequestLogMiddleware(two_chunk_app)(SCOPE, receive, send)
    assert order == ["http.response.start", "http.response.body", "http.response.body"]
    assert logged_before == [0, 0, 1]  # the line exists when the final chunk is sent
    assert len(caplog.records) == 1
    assert "POST /v1beta/interactions 201" in caplog.records[0].getMessage()


async def failing_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise ValueError("a bug")


async def access_lines_when_it_raises(
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    error: type[Exception],
    match: str,
    caplog: pytest.LogCaptureFixture,
) -> list[str]:
    """Run ``app`` behind the middleware, expecting ``error``; the access lines it logged."""

    async def discard(message: Message) -> None:
        pass

    with caplog.at_level(logging.INFO, logger="gemserve.access"), pytest.raises(error, match=match):
        await RequestLogMiddleware(app)(SCOPE, receive, discard)
    return [record.getMessage() for record in caplog.records]


async def test_a_request_that_never_finishes_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = await access_lines_when_it_raises(hangs_up_app, OSError, "went away", caplog)
    assert len(lines) == 1
    assert "POST /v1beta/interactions 200" in lines[0]


async def test_an_app_failure_before_responding_is_logged_as_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = await access_lines_when_it_raises(failing_app, ValueError, "a bug", caplog)
    # "METHOD PATH STATUS TIME": the request id is the record's (gemserve.logs), not the text's.
    assert [line.split()[2] for line in lines] == ["500"]
