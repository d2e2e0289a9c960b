"""A real `gemserve serve`, run plainly with the OTEL_* variables, exports its spans over
OTLP/HTTP to a collector the test runs on loopback: a request with a ``traceparent`` yields a
span of that trace, a child of the caller's, whose ids the response and the log lines carry."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.otlp_collector import Collector, running_collector
from tests.support.server import LiveServer, start_server, stop_server

pytestmark = pytest.mark.live

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with running_collector() as running:
        yield running


@pytest.fixture(scope="module")
def traced_server(
    tmp_path_factory: pytest.TempPathFactory, collector: Collector
) -> Iterator[LiveServer]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "gemserve-live-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second, not five
    }
    server = start_server(tmp_path_factory.mktemp("tracing"), "--log-format", "json", env=env)
    yield server
    stop_server(server)


def test_a_traceparent_comes_back_as_an_exported_child_span(
    traced_server: LiveServer, collector: Collector
) -> None:
    sent = f"00-{TRACE_ID}-{PARENT}-01"
    headers = {"x-goog-api-key": "anything", "traceparent": sent, "X-Request-Id": "live-trace-1"}
    response = httpx.get(f"{traced_server.base_url}/v1beta/models", headers=headers, timeout=30)
    assert response.status_code == 200
    (span,) = collector.wait_for(TRACE_ID)
    assert collector.posts[0] == "/v1/traces"
    assert span.parent_span_id == PARENT
    assert span.kind == SERVER_KIND
    assert span.name == "GET /{version}/models"
    assert span.attributes["http.route"] == "/{version}/models"
    assert span.resource["service.name"] == "gemserve-live-test"
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{span.span_id}-01"
    access = [
        entry
        for entry in map(json.loads, _json_lines(traced_server.log()))
        if entry.get("request_id") == "live-trace-1"
    ]
    assert access
    assert {(e["trace_id"], e["span_id"]) for e in access} == {(TRACE_ID, span.span_id)}


def test_the_start_up_says_spans_are_exported(traced_server: LiveServer) -> None:
    assert "tracing: spans exported with otlp_proto_http" in traced_server.log()


def _json_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("{")]
