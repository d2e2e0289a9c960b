"""One access-log line per request, with a request id (never bodies or keys)."""

from __future__ import annotations

import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("gemserve.access")


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(6)
        started = time.perf_counter()
        status = 0
        logged = False

        def write_line() -> None:
            nonlocal logged
            if not logged:
                logged = True
                log.info(
                    "%s %s %s %d %.1fms",
                    request_id,
                    scope["method"],
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Before the last bytes go out: a client that has read the whole response
                # finds its line already in the log.
                write_line()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if status == 0:
                status = 500  # answered by ServerErrorMiddleware, which wraps this one
            raise
        finally:
            write_line()  # the client went away, or the app failed before responding
