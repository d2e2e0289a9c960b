"""How the OTEL_* variables turn span export on (gemserve/tracing.py): which exporters, the
provider made from them, and what `gemserve doctor` reports. None of it sets OpenTelemetry's
global provider (the serve path does: tests/api/test_tracing_live.py)."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from gemserve.tracing import TracingConfigError, exporter_names, provider_from_env, status

ENDPOINT = "http://127.0.0.1:4318"
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ["otlp_proto_http"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "console, OTLP"}, ["console", "otlp_proto_http"]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["otlp_proto_grpc"],
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            ["otlp_proto_http"],
        ),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, []),
    ],
)
def test_which_exporters_the_environment_asks_for(
    environ: dict[str, str], expected: list[str]
) -> None:
    assert exporter_names(environ) == expected


def test_an_unsupported_otlp_protocol_is_a_configuration_error() -> None:
    with pytest.raises(TracingConfigError, match="http/json"):
        exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def only_exporter(provider: TracerProvider) -> object:
    """The exporter behind the provider's one (batch) span processor."""
    (processor,) = provider._active_span_processor._span_processors
    assert isinstance(processor, BatchSpanProcessor)
    return processor.span_exporter


def test_nothing_asked_for_makes_no_provider() -> None:
    assert provider_from_env() is None


def test_an_endpoint_alone_exports_otlp_over_http_as_gemserve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    provider = provider_from_env()
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "gemserve"
        assert provider.resource.attributes["service.version"]
        exporter = only_exporter(provider)
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == ENDPOINT + "/v1/traces"
    finally:
        provider.shutdown()


def test_the_service_name_and_console_exporter_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gemserve-eu-1")
    provider = provider_from_env()
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "gemserve-eu-1"
        exporter = only_exporter(provider)
        assert isinstance(exporter, ConsoleSpanExporter)
    finally:
        provider.shutdown()


def test_an_exporter_that_is_not_installed_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin_json")
    with pytest.raises(TracingConfigError, match="'zipkin_json'"):
        provider_from_env()


def test_status_says_why_tracing_is_off() -> None:
    report = status()
    assert report["active"] is False
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in report["reason"]


def test_status_names_the_exporter_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gemserve-eu-1")
    assert status() == {
        "active": True,
        "exporters": "otlp_proto_http",
        "endpoint": ENDPOINT + "/v1/traces",
        "service_name": "gemserve-eu-1",
    }


def test_status_reports_an_exporter_that_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,zipkin_json")
    assert status() == {"active": False, "error": "not installed: zipkin_json exporter"}


def test_status_reports_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    report = status()
    assert report["active"] is False
    assert "http/json" in report["error"]
