"""GET /metrics in-process: requests per surface and route template, time to first token and
inter-token latency, tokens in and out (every surface's turns are observed once, in the
shared pipeline), the engine's gauges, store writes and upload bytes; and the request id and
trace context on responses and log records."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gemserve.app import remote_engine
from gemserve.config import ModelRegistry
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.logs import JsonFormatter, TextFormatter
from tests.support.fake_upstream import FakeUpstream
from tests.support.inprocess import MODEL, InProcessApi, MakeApi
from tests.support.sse import parse_sse

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: InProcessApi) -> Samples:
    response = await api.client.get("/metrics")  # no API key
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def requests(surface: str, route: str, method: str = "POST", code: str = "200") -> dict[str, str]:
    return {"surface": surface, "route": route, "method": method, "code": code}


async def test_one_turn_per_surface_moves_every_instrument(api: InProcessApi) -> None:
    before = await scrape(api)
    model = {"model": DEFAULT_MODEL_ID}

    streamed = await api.create(stream=True)
    assert streamed.status_code == 200
    assert "interaction.completed" in [e.event for e in parse_sse(streamed.text)]
    classic = await api.client.post(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        headers=api.headers,
    )
    assert classic.status_code == 200
    chat = await api.client.post(
        "/v1beta/openai/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
        headers=api.headers,
    )
    assert chat.status_code == 200
    after = await scrape(api)

    total = "gemserve_http_requests_total"
    route = "/{version}/interactions"
    assert delta(before, after, total, **requests("interactions", route)) == 1
    classic_route = "/{version}/models/{target:path}:generateContent"
    assert delta(before, after, total, **requests("classic", classic_route)) == 1
    chat_route = "/{version}/openai/chat/completions"
    assert delta(before, after, total, **requests("openai", chat_route)) == 1
    # The first scrape was counted too (its response had ended before the second began).
    assert delta(before, after, total, **requests("health", "/metrics", "GET")) == 1
    assert not any("gemserve.test" in str(key) or "v1beta" in str(key) for key in after)

    # Three turns of the scripted engine: 5 prompt tokens, 3 pieces ("Hello", ", ", "world").
    assert delta(before, after, "gemserve_time_to_first_token_seconds_count", **model) == 3
    assert delta(before, after, "gemserve_inter_token_latency_seconds_count", **model) == 6
    assert delta(before, after, "gemserve_time_to_first_token_seconds_sum", **model) > 0
    assert delta(before, after, "gemserve_input_tokens_total", **model) == 15
    assert delta(before, after, "gemserve_output_tokens_total", **model) == 9
    assert delta(before, after, "gemserve_turns_total", reason="stop", **model) == 3
    assert classic.json()["usageMetadata"]["promptTokenCount"] == 5
    assert chat.json()["usage"]["completion_tokens"] == 3

    # Engine gauges, read from stats() at scrape time; the interaction was stored.
    assert value(after, "gemserve_engine_slots", **model) == 1
    assert value(after, "gemserve_engine_busy_slots", **model) == 0
    assert value(after, "gemserve_engine_queue_depth", **model) == 0
    assert delta(before, after, "gemserve_store_write_seconds_count") >= 1
    histogram = "gemserve_http_request_duration_seconds_count"
    assert delta(before, after, histogram, surface="openai", route=chat_route, method="POST") == 1


async def test_unmatched_paths_share_one_label(api: InProcessApi) -> None:
    for path in ("/nowhere/a", "/nowhere/b"):
        assert (await api.client.get(path)).status_code == 404
    samples = await scrape(api)
    labels = requests("none", "unmatched", "GET", "404")
    assert value(samples, "gemserve_http_requests_total", **labels) == 2
    assert not any("nowhere" in str(key) for key in samples)


async def test_upload_bytes_are_counted(api: InProcessApi) -> None:
    before = await scrape(api)
    url = await api.upload_url(11)
    response = await api.send(url, b"hello world", 0)
    assert response.status_code == 200, response.text
    after = await scrape(api)
    assert delta(before, after, "gemserve_upload_bytes_total") == 11
    route = "/upload/{version}/files"
    assert delta(before, after, "gemserve_http_requests_total", **requests("uploads", route)) == 2


async def test_the_tenant_label_is_opt_in(make_api: MakeApi) -> None:
    api = await make_api(metrics_tenant_label=True)
    assert (await api.create()).status_code == 200
    samples = await scrape(api)
    series = [labels for name, labels in samples if name == "gemserve_input_tokens_total"]
    assert len(series) == 1
    assert {key for key, _ in series[0]} == {"model", "tenant"}


async def test_metrics_can_be_switched_off(make_api: MakeApi) -> None:
    api = await make_api(metrics_enabled=False)
    assert (await api.create()).status_code == 200
    response = await api.client.get("/metrics")
    assert response.status_code == 404
    assert api.app.state.ctx.metrics is None


async def test_two_apps_keep_their_own_counts(make_api: MakeApi) -> None:
    first = await make_api()
    second = await make_api()
    assert (await first.create()).status_code == 200
    model = {"model": DEFAULT_MODEL_ID}
    assert value(await scrape(first), "gemserve_turns_total", reason="stop", **model) == 1
    assert value(await scrape(second), "gemserve_turns_total", reason="stop", **model) == 0


# ----- request ids and trace context ----------------------------------------------------------


async def test_a_valid_request_id_is_echoed_and_on_every_log_line(
    api: InProcessApi, records: list[logging.LogRecord]
) -> None:
    response = await api.create(headers={**api.headers, "X-Request-Id": "client-id 42"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-id 42"
    access = [r for r in records if r.name == "gemserve.access"]
    assert len(access) == 1
    assert access[0].request_id == "client-id 42"  # type: ignore[attr-defined]
    assert "POST /v1beta/interactions 200" in access[0].getMessage()
    # The service's own lines (the interaction's task inherits the request's context) too.
    assert any(r.name == "gemserve.interactions" for r in records)
    assert {r.request_id for r in records} == {"client-id 42"}  # type: ignore[attr-defined]
    line = TextFormatter().format(access[0])
    assert "INFO gemserve.access: [client-id 42] POST /v1beta/interactions 200" in line


@pytest.mark.parametrize("sent", ["x" * 129, "tab\there", " padded"])
async def test_an_invalid_request_id_is_replaced(
    api: InProcessApi, records: list[logging.LogRecord], sent: str
) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-Id": sent})
    made = response.headers["x-request-id"]
    assert made != sent
    assert len(made) == 16
    (access,) = [r for r in records if r.name == "gemserve.access"]
    assert access.request_id == made  # type: ignore[attr-defined]


async def test_requests_without_an_id_get_distinct_ones(api: InProcessApi) -> None:
    ids = {(await api.client.get("/healthz")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


async def test_traceparent_is_honoured_and_a_child_echoed(
    api: InProcessApi, records: list[logging.LogRecord]
) -> None:
    sent = f"00-{TRACE_ID}-{PARENT}-01"
    response = await api.client.get("/healthz", headers={"traceparent": sent})
    version, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id != PARENT
    assert len(span_id) == 16
    (access,) = [r for r in records if r.name == "gemserve.access"]
    assert (access.trace_id, access.span_id) == (TRACE_ID, span_id)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "sent",
    [
        f"ff-{TRACE_ID}-{PARENT}-01",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID}-{PARENT}-01-extra",
        "garbage",
    ],
)
async def test_an_invalid_traceparent_is_ignored(api: InProcessApi, sent: str) -> None:
    response = await api.client.get("/healthz", headers={"traceparent": sent})
    assert response.status_code == 200
    assert "traceparent" not in response.headers


async def test_json_log_lines_carry_the_request(
    api: InProcessApi, records: list[logging.LogRecord]
) -> None:
    sent = f"00-{TRACE_ID}-{PARENT}-01"
    await api.client.get("/healthz", headers={"X-Request-Id": "abc", "traceparent": sent})
    (access,) = [r for r in records if r.name == "gemserve.access"]
    line = JsonFormatter().format(access)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "gemserve.access"
    assert entry["message"].startswith("GET /healthz 200")
    assert (entry["request_id"], entry["trace_id"]) == ("abc", TRACE_ID)
    assert entry["ts"].endswith("+00:00")


def test_json_lines_carry_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "gemserve", logging.ERROR, __file__, 1, "failed %s", ("x",), None
        )
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed x"
    assert "ValueError: boom" in entry["exc_info"]
    assert "request_id" not in entry


# ----- a remote model: per-upstream health --------------------------------------------------


@pytest.fixture
async def pool_api(make_api: MakeApi) -> AsyncIterator[InProcessApi]:
    fakes = [await FakeUpstream().start(), await FakeUpstream().start()]
    entry: dict[str, Any] = {
        "id": "pool",
        "engine": "openai",
        "upstreams": [f.url for f in fakes],
        "timeouts": {"health_interval": 0.2, "idle": 2},
    }
    spec = ModelRegistry.from_config([entry], {}, "pool").resolve("pool").spec
    engine = remote_engine(spec, None)  # type: ignore[arg-type]
    yield await make_api(engines={"pool": engine}, models=[entry], default_model="pool")  # type: ignore[dict-item]
    for fake in fakes:
        await fake.stop()


async def test_upstreams_report_health_and_load(pool_api: InProcessApi) -> None:
    assert (await pool_api.create(model=MODEL)).json()["status"] == "completed"
    samples = await scrape(pool_api)
    for index in ("0", "1"):
        assert value(samples, "gemserve_upstream_healthy", model="pool", upstream=index) == 1
        assert value(samples, "gemserve_upstream_in_flight", model="pool", upstream=index) == 0
    assert value(samples, "gemserve_turns_total", model="pool", reason="stop") == 1
    assert value(samples, "gemserve_input_tokens_total", model="pool") == 7


async def test_the_classic_route_is_split_by_method(api: InProcessApi) -> None:
    body = {"content": {"parts": [{"text": "Hi"}]}}
    embedded = await api.client.post(
        "/v1beta/models/gemini-embedding-001:embedContent", json=body, headers=api.headers
    )
    assert embedded.status_code == 200, embedded.text
    counted = await api.client.post(
        "/v1beta/models/gemini-2.5-flash:countTokens",
        json={"contents": [{"parts": [{"text": "Hi"}]}]},
        headers=api.headers,
    )
    assert counted.status_code == 200, counted.text
    samples = await scrape(api)
    route = "/{version}/models/{target:path}"
    total = "gemserve_http_requests_total"
    assert value(samples, total, **requests("embeddings", route + ":embedContent")) == 1
    assert value(samples, total, **requests("classic", route + ":countTokens")) == 1


def test_the_json_format_writes_one_object_per_line() -> None:
    code = (
        "import logging, warnings\n"
        "from gemserve.logs import RequestContext, bind, configure_logging\n"
        "configure_logging('info', 'json')\n"
        "logging.getLogger('gemserve.x').info('outside')\n"
        "bind(RequestContext('rid-1'))\n"
        "logging.getLogger('gemserve.x').warning('inside\\nwith a newline')\n"
        "try:\n    1 / 0\n"
        "except ZeroDivisionError:\n    logging.getLogger('gemserve.x').exception('oops')\n"
        "warnings.warn('careful')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["message"] for e in entries[:3]] == ["outside", "inside\nwith a newline", "oops"]
    assert "request_id" not in entries[0]
    assert entries[1]["request_id"] == entries[2]["request_id"] == "rid-1"
    assert "ZeroDivisionError" in entries[2]["exc_info"]
    assert entries[3]["logger"] == "py.warnings"
    assert "careful" in entries[3]["message"]
