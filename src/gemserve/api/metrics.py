"""``GET /metrics`` (Prometheus text, no API key, like /healthz: keep it off public networks)
and the middleware that counts requests by surface, route template, method and status."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gemserve.api.context import AppContext
from gemserve.errors import NotFound
from gemserve.service.metrics import CONTENT_TYPE, Metrics

# The classic route's methods (…/models/{model}:method): a bounded set, so a label.
_CLASSIC_METHODS = {
    "generateContent": "classic",
    "streamGenerateContent": "classic",
    "countTokens": "classic",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
    "batchGenerateContent": "batches",
    "asyncBatchEmbedContent": "batches",
}
_CLASSIC_ROUTE = "/{version}/models/{target:path}"


def surface_of(route: str, method: str, path: str) -> tuple[str, str]:
    """The API surface a route template belongs to, and the route label (the template, with
    the classic route's ``:method`` appended)."""
    if route == _CLASSIC_ROUTE and method == "POST":
        _, _, name = path.rpartition(":")
        surface = _CLASSIC_METHODS.get(name)
        if surface is None:
            return "classic", route
        return surface, f"{route}:{name}"
    if route in ("/healthz", "/readyz", "/statsz", "/metrics"):
        return "health", route
    if route.startswith("/upload/"):
        return "uploads", route
    for prefix, surface in (
        ("/{version}/interactions", "interactions"),
        ("/{version}/openai/chat", "openai"),
        ("/{version}/openai/embeddings", "embeddings"),
        ("/{version}/openai/models", "models"),
        ("/{version}/models", "models"),
        ("/{version}/files", "files"),
        ("/{version}/cachedContents", "caches"),
        ("/{version}/batches", "batches"),
    ):
        if route.startswith(prefix):
            return surface, route
    return "other", route


class MetricsMiddleware:
    """Counts every HTTP request once its response ends (or the client leaves); labels are
    route templates (``scope["route"]`` after routing), never raw paths."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observe_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe_status)
        except Exception:
            if status == 0:
                status = 500
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            method = scope["method"]
            if isinstance(template, str):
                surface, label = surface_of(template, method, scope["path"])
            else:
                surface, label = "none", "unmatched"
            self.metrics.observe_request(
                surface, label, method, status, time.perf_counter() - started
            )


async def metrics(request: Request) -> Response:
    ctx = AppContext.of(request)
    if ctx.metrics is None:
        raise NotFound(f"The requested URL {request.url.path} was not found on this server.")
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)


routes = [Route("/metrics", metrics, methods=["GET"])]
