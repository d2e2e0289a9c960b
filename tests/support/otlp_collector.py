"""A tiny OTLP/HTTP trace collector on loopback: it takes ``POST /v1/traces`` (protobuf, as
the OTLP/HTTP exporter sends it), decodes each request with ``opentelemetry-proto`` and keeps
the spans for a test to wait on."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ExportedSpan:
    """One span as received, ids in hex as in ``traceparent``."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


class Collector:
    def __init__(self, url: str) -> None:
        self.url = url
        self.spans: list[ExportedSpan] = []
        self.posts: list[str] = []  # the paths posted to
        self._lock = threading.Lock()

    def receive(self, path: str, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = [
            ExportedSpan(
                name=span.name,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex(),
                kind=span.kind,
                attributes=_attributes(span.attributes),
                resource=_attributes(resource_spans.resource.attributes),
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.posts.append(path)
            self.spans.extend(spans)

    def wait_for(self, trace_id: str, timeout: float = 15.0) -> list[ExportedSpan]:
        """The spans of ``trace_id``, once at least one has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [span for span in self.spans if span.trace_id == trace_id]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no span of trace {trace_id} within {timeout} s: {self.spans}")


def _attributes(pairs: Any) -> dict[str, Any]:
    """OTLP key-values as a plain dict (the scalar kinds spans carry)."""
    found: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


@contextmanager
def running_collector() -> Iterator[Collector]:
    """A collector on a free loopback port; ``collector.url`` is its base (an
    ``OTEL_EXPORTER_OTLP_ENDPOINT``: the exporter appends ``/v1/traces``)."""
    holder: dict[str, Collector] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            holder["collector"].receive(self.path, body)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test says what it found

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    collector = holder["collector"] = Collector(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
