"""OpenTelemetry traces, with the ``opentelemetry`` extra: one server span per request
(``opentelemetry-instrumentation-asgi``), named by its route template, exported as the
standard ``OTEL_*`` variables say.

Run plainly (``gemserve serve``), gemserve sets up the SDK's tracer provider itself when
``OTEL_TRACES_EXPORTER`` or an OTLP endpoint variable is set: OTLP over HTTP by default (or any
installed exporter by its entry-point name: ``console``, ``otlp_proto_grpc``, …), the service
name from ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` (else ``gemserve``); the SDK and
the exporter read the rest (sampler, batching, endpoint, headers, timeout). Under
``opentelemetry-instrument`` the provider it made is used as it is. With neither, no span
middleware is added and requests pay nothing for it; ``traceparent`` is still honoured by the
access log (api/logging.py).

The provider is OpenTelemetry's one process-wide global, set on the serve path, never on
import; ``create_app`` also takes one directly (the tests' in-memory exporter).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gemserve.api.logging import RequestLogMiddleware
from gemserve.api.metrics import surface_of
from gemserve.logs import TraceContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import TracerProvider

log = logging.getLogger("gemserve.tracing")

TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
# Either endpoint alone turns export on (OTLP), as a collector's address is all most set.
ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
DEFAULT_SERVICE_NAME = "gemserve"
# Span attributes that carry the query string, where an API key may be (``?key=``).
_URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")
_EXTRA_MODULES = (
    "opentelemetry.trace",
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation.asgi",
)
_KEY_PARAM = re.compile(r"(^|[?&])key=[^&#]*")


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for something this install cannot do; `serve` exits 2."""


def installed() -> bool:
    """Whether the ``opentelemetry`` extra is importable (API, SDK, ASGI instrumentation)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in _EXTRA_MODULES)
    except ModuleNotFoundError:  # a parent package is missing
        return False


def exporter_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the environment asks for, by entry-point name; empty: export off
    (nothing set, ``none``, or ``OTEL_SDK_DISABLED=true``)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = env.get(TRACES_EXPORTER, "").strip()
    if not raw:
        if not any(env.get(name, "").strip() for name in ENDPOINTS):
            return []
        raw = "otlp"
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    if "none" in names:
        return []
    return [_otlp_flavour(name, env) for name in names]


def _otlp_flavour(name: str, env: Mapping[str, str]) -> str:
    """``otlp`` is the OTLP exporter of the configured protocol (http/protobuf by default,
    the specification's default; the extra installs that one)."""
    if name != "otlp":
        return name
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "http/protobuf":
        return "otlp_proto_http"
    if protocol == "grpc":
        return "otlp_proto_grpc"
    raise TracingConfigError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use http/protobuf (or "
        "grpc, with opentelemetry-exporter-otlp-proto-grpc installed)"
    )


def provider_from_env() -> SdkTracerProvider | None:
    """An SDK tracer provider exporting as the OTEL_* variables say, or None when they ask for
    no export. Raises TracingConfigError for an exporter that is not installed."""
    names = exporter_names()
    if not names:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = [_exporter(name) for name in names]  # every name checked before any is used
    resource = Resource.create({})  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    if SERVICE_VERSION not in resource.attributes:
        resource = resource.merge(Resource({SERVICE_VERSION: _gemserve_version()}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* settings
    return provider


def _exporter(name: str) -> SpanExporter:
    """An exporter by its ``opentelemetry_traces_exporter`` entry-point name; it reads its
    own variables (endpoint, headers, timeout, compression)."""
    if name == "otlp_proto_http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    found = importlib.metadata.entry_points(group="opentelemetry_traces_exporter", name=name)
    for entry in found:
        exporter: SpanExporter = entry.load()()
        return exporter
    raise TracingConfigError(
        f"{TRACES_EXPORTER} names {name!r}, and no such span exporter is installed "
        "(the opentelemetry extra brings otlp over http/protobuf, and console)"
    )


def _gemserve_version() -> str:
    try:
        return importlib.metadata.version("gemserve")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def start_tracing() -> SdkTracerProvider | None:
    """The serve path: the provider the OTEL_* variables ask for, made OpenTelemetry's global
    one. None when the extra is missing, export is not asked for, or a provider is already
    set (``opentelemetry-instrument``'s); the caller shuts the returned one down at exit."""
    if not installed():
        if exporter_names():
            log.warning(
                "OTEL_* variables ask for traces, but the opentelemetry extra is not "
                "installed (pip install 'gemserve[opentelemetry]'): no spans are exported"
            )
        return None
    from opentelemetry import trace

    if is_configured(trace.get_tracer_provider()):
        return None
    provider = provider_from_env()
    if provider is not None:
        trace.set_tracer_provider(provider)
        log.info("tracing: spans exported with %s", ", ".join(exporter_names()))
    return provider


def is_configured(provider: TracerProvider) -> bool:
    """A provider that makes spans: not the API's default proxy nor its no-op one."""
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider

    return not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)


def status() -> dict[str, Any]:
    """What `gemserve serve` would do about traces in this environment (`gemserve doctor`)."""
    try:
        names = exporter_names()
    except TracingConfigError as exc:
        return {"active": False, "error": str(exc)}
    if not installed():
        reason = "the opentelemetry extra is not installed"
        return {"active": False, "reason": reason, "asked_for": ", ".join(names) or None}
    if not names:
        return {
            "active": False,
            "reason": f"set {TRACES_EXPORTER} or OTEL_EXPORTER_OTLP_ENDPOINT (or run under "
            "opentelemetry-instrument)",
        }
    missing = [name for name in names if not _exporter_installed(name)]
    if missing:
        return {"active": False, "error": f"not installed: {', '.join(missing)} exporter"}
    return {
        "active": True,
        "exporters": ", ".join(names),
        "endpoint": otlp_http_url() if "otlp_proto_http" in names else None,
        "service_name": os.environ.get("OTEL_SERVICE_NAME") or None,
    }


def otlp_http_url() -> str:
    """Where the OTLP/HTTP exporter posts spans, as it reads the variables."""
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
    return base.rstrip("/") + "/v1/traces"


def _exporter_installed(name: str) -> bool:
    if name == "otlp_proto_http":
        try:
            spec = importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http")
        except ModuleNotFoundError:
            return False
        return spec is not None
    found = importlib.metadata.entry_points(group="opentelemetry_traces_exporter", name=name)
    return bool(found)


def add_tracing(app: Starlette, tracer_provider: TracerProvider | None = None) -> bool:
    """Wrap ``app`` in a span per request when the extra is installed and a provider is
    configured (``tracer_provider``, else the global one); the access log then takes the
    span's ids. False: nothing added (the caller adds the plain access log)."""
    if not installed():
        return False
    from opentelemetry import trace
    from opentelemetry.instrumentation.asgi import (  # type: ignore[import-untyped,unused-ignore]
        OpenTelemetryMiddleware,
    )

    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if not is_configured(provider):
        return False

    def current_span() -> TraceContext | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        return TraceContext(trace_id, "", span_id, f"{int(context.trace_flags):02x}")

    # Outermost first: the span, then the access log in it, then the span's finishing touches.
    app.add_middleware(ServerSpanMiddleware)
    app.add_middleware(RequestLogMiddleware, current_span=current_span)
    app.add_middleware(
        OpenTelemetryMiddleware,
        tracer_provider=provider,
        exclude_spans=["receive", "send"],
        # The route template is known only after routing (ServerSpanMiddleware renames it);
        # never the raw path, whose ids would make every span name unique.
        default_span_details=lambda scope: (_method(scope), {}),
    )
    return True


class ServerSpanMiddleware:
    """Inside the server span: an API key given as ``?key=`` is taken out of its URL
    attributes, and once routed the span is named ``METHOD route`` with ``http.route`` (the
    route label of /metrics). Named as the response starts: the instrumentation ends the span
    with the response's last bytes, before the app returns."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import trace

        span = trace.get_current_span()
        if not span.is_recording():
            await self.app(scope, receive, send)
            return
        _redact_keys(span)

        async def name_then_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                _name_by_route(span, scope)
            await send(message)

        try:
            await self.app(scope, receive, name_then_send)
        finally:
            if span.is_recording():  # no response yet: the app failed, or the client left
                _name_by_route(span, scope)


def _name_by_route(span: Any, scope: Scope) -> None:
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str):
        _, route = surface_of(template, scope["method"], scope["path"])
        span.set_attribute("http.route", route)
        span.update_name(f"{_method(scope)} {route}")


def _method(scope: Scope) -> str:
    """The request's method for a span name: a standard one, else ``HTTP`` (any token is a
    method; span names must stay a bounded set)."""
    from opentelemetry.util.http import sanitize_method

    method = sanitize_method(str(scope.get("method", "")).strip())
    return "HTTP" if method in ("", "_OTHER") else method


def _redact_keys(span: Any) -> None:
    attributes = getattr(span, "attributes", None)  # the SDK's spans show theirs
    if not isinstance(attributes, Mapping):
        return
    for name in _URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and "key=" in value:
            span.set_attribute(name, _KEY_PARAM.sub(r"\1key=REDACTED", value))
