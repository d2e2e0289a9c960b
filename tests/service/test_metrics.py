"""The Metrics object alone: engine gauges read from stats() at scrape time (llama.cpp's KV
cells, prefix-cache hits and step time; a remote pool's upstreams), and the store, speech and
upload hooks."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gemserve.engine import EngineStats
from gemserve.service.metrics import Metrics


class StatsOnly:
    def __init__(self, stats: EngineStats) -> None:
        self.calls = 0
        self._stats = stats

    def stats(self) -> EngineStats:
        self.calls += 1
        return self._stats


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_engine_state_is_read_at_each_scrape() -> None:
    llama = StatsOnly(
        EngineStats(
            slots=4,
            active=2,
            queued=3,
            decode_steps=10,
            tokens_generated=40,
            extra={
                "kv_cells_used": 300.0,
                "prefix_hit_tokens": 120.0,
                "step_seconds": 0.5,
                "steps_timed": 10.0,
            },
        )
    )
    remote = StatsOnly(
        EngineStats(
            slots=8,
            active=1,
            queued=0,
            decode_steps=0,
            tokens_generated=5,
            extra={
                "upstream0_in_flight": 1.0,
                "upstream0_healthy": 1.0,
                "upstream0_ejections": 0.0,
                "upstream1_in_flight": 0.0,
                "upstream1_healthy": 0.0,
                "upstream1_ejections": 2.0,
            },
        )
    )
    engines: dict[str, Any] = {"local": llama, "remote": remote}
    metrics = Metrics()
    metrics.watch_engines(engines)
    assert llama.calls == 0  # nothing is read until a scrape
    got = samples(metrics)
    assert llama.calls == 1
    local = (("model", "local"),)
    assert got["gemserve_engine_queue_depth", local] == 3
    assert got["gemserve_engine_busy_slots", local] == 2
    assert got["gemserve_engine_slots", local] == 4
    assert got["gemserve_engine_kv_cells_used", local] == 300
    assert got["gemserve_engine_prefix_cache_hit_tokens_total", local] == 120
    assert got["gemserve_engine_step_seconds_count", local] == 10
    assert got["gemserve_engine_step_seconds_sum", local] == 0.5
    assert got["gemserve_engine_tokens_generated_total", local] == 40
    assert ("gemserve_engine_kv_cells_used", (("model", "remote"),)) not in got

    def upstream(index: str) -> tuple[tuple[str, str], ...]:
        return (("model", "remote"), ("upstream", index))

    assert got["gemserve_upstream_healthy", upstream("0")] == 1
    assert got["gemserve_upstream_healthy", upstream("1")] == 0
    assert got["gemserve_upstream_in_flight", upstream("0")] == 1
    assert got["gemserve_upstream_ejections_total", upstream("1")] == 2
    samples(metrics)
    assert llama.calls == 2


def test_hooks_observe() -> None:
    metrics = Metrics()
    metrics.observe_store_write(0.002)
    metrics.observe_store_write(0.004)
    metrics.observe_transcription(1.5)
    metrics.count_upload(1000)
    got = samples(metrics)
    assert got["gemserve_store_write_seconds_count", ()] == 2
    assert abs(got["gemserve_store_write_seconds_sum", ()] - 0.006) < 1e-9
    assert got["gemserve_transcription_seconds_count", ()] == 1
    assert got["gemserve_upload_bytes_total", ()] == 1000


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.count_upload(5)
    assert samples(second)["gemserve_upload_bytes_total", ()] == 0
