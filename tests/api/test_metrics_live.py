"""A real `gemserve serve --log-format json`: /metrics after a real generation, and its log
lines as JSON objects carrying the request id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gemserve.config.models import DEFAULT_MODEL_ID
from tests.support.server import LiveServer, start_server, stop_server

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("metrics"), "--log-format", "json")
    yield server
    stop_server(server)


def test_metrics_after_a_real_generation(json_server: LiveServer) -> None:
    body = {
        "model": "gemini-3-flash-preview",
        "input": "Count to five.",
        "generation_config": {"max_output_tokens": 8},
    }
    headers = {"x-goog-api-key": "anything", "X-Request-Id": "live-metrics-1"}
    with httpx.Client(base_url=json_server.base_url, timeout=120) as client:
        created = client.post("/v1beta/interactions", json=body, headers=headers)
        assert created.status_code == 200, created.text
        assert created.headers["x-request-id"] == "live-metrics-1"
        usage = created.json()["usage"]
        text = client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    model = (("model", DEFAULT_MODEL_ID),)
    assert samples["gemserve_time_to_first_token_seconds_count", model] == 1
    assert samples["gemserve_inter_token_latency_seconds_count", model] >= 1
    assert samples["gemserve_input_tokens_total", model] == usage["total_input_tokens"]
    assert samples["gemserve_output_tokens_total", model] == usage["total_output_tokens"]
    assert samples["gemserve_engine_step_seconds_count", model] >= usage["total_output_tokens"]
    assert samples["gemserve_engine_step_seconds_sum", model] > 0
    assert samples["gemserve_engine_kv_cells_used", model] > 0
    assert ("gemserve_engine_prefix_cache_hit_tokens_total", model) in samples
    assert samples["gemserve_engine_busy_slots", model] == 0
    assert samples["gemserve_store_write_seconds_count", ()] >= 1
    route = (
        ("code", "200"),
        ("method", "POST"),
        ("route", "/{version}/interactions"),
        ("surface", "interactions"),
    )
    assert samples["gemserve_http_requests_total", route] == 1

    lines = [json.loads(line) for line in Path(json_server.log_path).read_text().splitlines()]
    (access,) = [e for e in lines if e.get("request_id") == "live-metrics-1"
                 and e["logger"] == "gemserve.access"]  # fmt: skip
    assert access["message"].startswith("POST /v1beta/interactions 200")
    assert {"ts", "level", "logger", "message"} <= set(access)
