"""One access-log line per request, with a request id (never bodies or keys).

The request id is the client's ``X-Request-Id`` when valid (printable, at most 128
characters), else made here; it is returned in ``X-Request-Id`` and put on every log line of
the request (``gemserve.logs``). A W3C ``traceparent`` is honoured: its trace id goes on the
log lines, and the response carries a child ``traceparent`` (this server's span)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gemserve.logs import (
    RequestContext,
    TraceContext,
    bind,
    parse_traceparent,
    request_id_from,
    unbind,
)

log = logging.getLogger("gemserve.access")


class RequestLogMiddleware:
    """``current_span``: the tracer's span of this request, when one wraps this middleware
    (OpenTelemetry): its ids then go on the log lines and in the echoed ``traceparent``."""

    def __init__(
        self, app: ASGIApp, current_span: Callable[[], TraceContext | None] | None = None
    ) -> None:
        self.app = app
        self.current_span = current_span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(raw=scope.get("headers") or [])
        request_id = request_id_from(headers.get("x-request-id"))
        trace = parse_traceparent(headers.get("traceparent"))
        if self.current_span is not None:
            trace = self.current_span() or trace
        token = bind(RequestContext(request_id, trace))
        started = time.perf_counter()
        status = 0
        logged = False

        def write_line() -> None:
            nonlocal logged
            if not logged:
                logged = True
                # The request id comes with every record of the request (gemserve.logs).
                log.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                sent = list(message.get("headers", []))
                if trace is not None:
                    sent.append((b"traceparent", trace.traceparent.encode()))
                sent.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": sent}
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
            unbind(token)
