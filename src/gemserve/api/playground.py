"""The playground: one HTML page at ``/`` and its static assets under ``/playground/``.

The page speaks the public API like any other client (SSE interactions, resumable uploads,
models); nothing here needs a key. Every answer carries a strict Content-Security-Policy: the
page runs only its own scripts and styles (no inline code), and talks only to this origin.
"""

from __future__ import annotations

import functools

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gemserve.api.context import AppContext
from gemserve.playground import STATIC_DIR

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate (ETag) on every load: a new gemserve version serves new assets at once.
    "Cache-Control": "no-cache",
}


@functools.cache
def _page() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


async def index(request: Request) -> Response:
    """The page; it learns from ``data-require-keys`` whether to ask for a key."""
    require_keys = AppContext.of(request).settings.require_keys
    html = _page().replace(
        'data-require-keys="false"', f'data-require-keys="{str(require_keys).lower()}"', 1
    )
    return HTMLResponse(html, headers=SECURITY_HEADERS)


class _Secured:
    """Adds ``SECURITY_HEADERS`` to every answer of the wrapped ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self._app(scope, receive, send_secured)


routes = [
    Route("/", index, methods=["GET", "HEAD"]),
    Mount("/playground", app=_Secured(StaticFiles(directory=STATIC_DIR)), name="playground"),
]
