"""uvicorn's HTTP/1.1 protocol with a deadline on request headers.

uvicorn drops idle keep-alive connections but waits forever for the headers of a request that
has begun: a slowloris client (headers at one byte a second) or a half-open connection holds
a socket and a file descriptor for as long as it likes. Here every request's headers must be
complete within ``seconds`` of the connection opening or of the previous response ending;
otherwise the connection is closed. The body has its own deadline in the app
(``limits.body_read_timeout_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("gemserve.http")


class _HeaderDeadline(H11Protocol):
    header_seconds: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request's headers have the same deadline

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_seconds, self._deadline_passed)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _deadline_passed(self) -> None:
        self._header_timer = None
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if in_flight or self.transport.is_closing():
            return  # headers arrived: the request is being served
        log.info("closing a connection whose request headers took over %g s", self.header_seconds)
        self.transport.close()


def header_deadline_protocol(seconds: float) -> type[H11Protocol]:
    """The protocol class for ``uvicorn.Config(http=…)``, with this deadline."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadline,), {"header_seconds": seconds})
