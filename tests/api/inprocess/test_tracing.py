"""OpenTelemetry in the app (the ``opentelemetry`` extra, installed for the tests): one server
span per request, named by its route template, a child of the caller's ``traceparent``, whose
ids the response and the log lines carry; spans go to an in-memory exporter."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette

from gemserve.tracing import add_tracing, is_configured
from tests.support.inprocess import InProcessApi, scripted_settings, serve_in_process

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@dataclass
class Traced:
    api: InProcessApi
    exporter: InMemorySpanExporter

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


@pytest.fixture
async def traced(tmp_path: Path, migrated_database: Path) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # this app's own: OpenTelemetry's global one stays unset
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    shutil.copy2(migrated_database, data / "gemserve.db")
    async with serve_in_process(scripted_settings(data), tracer_provider=provider) as api:
        yield Traced(api, exporter)
    provider.shutdown()


def attribute(span: ReadableSpan, *names: str) -> object:
    """The first of ``names`` the span has: the HTTP semantic conventions' old and new names
    (OTEL_SEMCONV_STABILITY_OPT_IN picks which the instrumentation writes)."""
    attributes = span.attributes or {}
    return next((attributes[name] for name in names if name in attributes), None)


async def test_a_request_gets_one_server_span_with_route_method_and_status(
    traced: Traced,
) -> None:
    response = await traced.api.create()
    assert response.status_code == 200
    (span,) = traced.spans()
    assert span.kind == SpanKind.SERVER
    assert span.name == "POST /{version}/interactions"
    assert attribute(span, "http.route") == "/{version}/interactions"
    assert attribute(span, "http.request.method", "http.method") == "POST"
    assert attribute(span, "http.response.status_code", "http.status_code") == 200
    assert span.parent is None  # no traceparent: a trace of its own
    # Without a caller's trace, the response still names gemserve's span.
    _, trace_id, span_id, _ = response.headers["traceparent"].split("-")
    assert (trace_id, span_id) == (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")


async def test_a_path_with_ids_is_named_by_its_template(traced: Traced) -> None:
    response = await traced.api.get("v1_does_not_exist")
    assert response.status_code in (400, 404)
    classic = await traced.api.client.post(
        "/v1beta/models/gemini-3-flash-preview:countTokens",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers=traced.api.headers,
    )
    assert classic.status_code == 200
    unrouted = await traced.api.client.get("/nowhere/at/all", headers=traced.api.headers)
    assert unrouted.status_code == 404
    names = [span.name for span in traced.spans()]
    assert names == [
        "GET /{version}/interactions/{id}",
        "POST /{version}/models/{target:path}:countTokens",
        "GET",  # unrouted: the method alone, never the raw path
    ]
    status = attribute(traced.spans()[0], "http.response.status_code", "http.status_code")
    assert status == response.status_code


async def test_a_traceparent_makes_the_span_its_child(
    traced: Traced, records: list[logging.LogRecord]
) -> None:
    sent = f"00-{TRACE_ID}-{PARENT}-01"
    response = await traced.api.client.get("/healthz", headers={"traceparent": sent})
    assert response.status_code == 200
    (span,) = traced.spans()
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT
    assert span.parent.is_remote
    span_id = f"{span.context.span_id:016x}"
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{span_id}-01"
    (access,) = [r for r in records if r.name == "gemserve.access"]
    assert (access.trace_id, access.span_id) == (TRACE_ID, span_id)  # type: ignore[attr-defined]


async def test_every_log_line_of_the_request_carries_the_trace(
    traced: Traced, records: list[logging.LogRecord]
) -> None:
    sent = f"00-{TRACE_ID}-{PARENT}-01"
    response = await traced.api.create(headers={**traced.api.headers, "traceparent": sent})
    assert response.status_code == 200
    (span,) = traced.spans()
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert {r.name for r in records} >= {"gemserve.access", "gemserve.interactions"}
    assert {r.trace_id for r in records} == {TRACE_ID}  # type: ignore[attr-defined]


async def test_an_api_key_in_the_query_stays_out_of_the_span(traced: Traced) -> None:
    response = await traced.api.client.get("/v1beta/models", params={"key": "sekrit-key"})
    assert response.status_code == 200
    (span,) = traced.spans()
    values = " ".join(str(value) for value in (span.attributes or {}).values())
    assert "sekrit-key" not in values
    assert "key=REDACTED" in values


async def test_a_sampled_out_trace_still_gets_ids(traced: Traced) -> None:
    """A caller that does not sample (flags 00): no span is exported, and the echoed
    traceparent names a child that is not sampled either."""
    sent = f"00-{TRACE_ID}-{PARENT}-00"
    response = await traced.api.client.get("/healthz", headers={"traceparent": sent})
    assert traced.spans() == ()
    version, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "00")
    assert span_id != PARENT


def test_no_provider_means_no_span_middleware() -> None:
    """With no provider set up (the API's default proxy), requests pay nothing for tracing."""
    if is_configured(trace.get_tracer_provider()):
        pytest.skip("a global tracer provider is set in this process")
    app = Starlette()
    assert add_tracing(app) is False
    assert app.user_middleware == []
