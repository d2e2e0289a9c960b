"""Conversation state: what storing costs, what KV reuse saves, how fast the store writes.

1. Added latency of storing an interaction: p50 wall time of a 1-token, non-streaming
   interaction with ``store: true`` minus the same with ``store: false``, on SQLite and on
   PostgreSQL (a fresh database on 127.0.0.1:5432).
2. Time to first token of a conversation turn whose history is >= 1,500 tokens: warm (the
   previous turn's KV cache is still in the slot) against cold (an unrelated request evicted
   it first, so the whole history is prefilled). Target: warm <= 0.3 x cold.
3. Store throughput with 16 concurrent writers, each writing an interaction the way a run does
   (create with 2 events, 5 batches of 10 events, finish): interactions/s and events/s.

Usage: .venv/bin/python bench/bench_state.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    API_KEY,
    MODEL_ID,
    Server,
    free_port,
    gemserve_argv,
    md_table,
    median,
    print_preamble,
    ratio,
    verdict,
)

from gemserve.store import InteractionRecord, SqlStore

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
HEADERS = {"x-goog-api-key": API_KEY}


@contextlib.asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str | None]:
    """A throw-away PostgreSQL database, or None if the server is not reachable."""
    name = "gemserve_bench_" + secrets.token_hex(4)
    try:
        admin = await asyncpg.connect(PG_ADMIN)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL not reachable ({exc}); skipping it", file=sys.stderr)
        yield None
        return
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.contextmanager
def gemserve(*extra: str, slots: int = 1) -> Iterator[Server]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gemserve-bench-") as data_dir:
        argv = [
            *gemserve_argv(),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            data_dir,
            "--slots",
            str(slots),
            "--threads",
            "2",
            "--log-level",
            "warning",
            *extra,
        ]
        with Server("gemserve", argv, port=port, ready_path="/readyz") as server:
            yield server


# ----- 1. added latency of storing ----------------------------------------------------------------


def store_latency(base_url: str, requests: int) -> tuple[float, float]:
    """p50 seconds of a 1-token interaction with store=true and with store=false (interleaved)."""
    stored: list[float] = []
    unstored: list[float] = []
    with httpx.Client(base_url=base_url, headers=HEADERS, timeout=60) as client:
        for i in range(requests + 4):
            store = i % 2 == 0
            body = {
                "model": MODEL_ID,
                "input": "Hi",
                "store": store,
                "generation_config": {"max_output_tokens": 1, "temperature": 0},
            }
            t0 = time.perf_counter()
            response = client.post("/v1/interactions", json=body)
            elapsed = time.perf_counter() - t0
            response.raise_for_status()
            if i >= 4:  # warm-up
                (stored if store else unstored).append(elapsed)
    return median(stored), median(unstored)


# ----- 2. TTFT with a long history, warm vs cold -----------------------------------------

HISTORY = (
    "Here are my notes on the history of sailing ships, from the earliest rafts to the clipper "
    "ships of the nineteenth century, with the names of many ports and captains. "
) * 50


def stream_ttft(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    ttft = float("nan")
    usage: dict[str, Any] = {}
    with client.stream("POST", "/v1/interactions", json={**body, "stream": True}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if '"step.delta"' in line and math.isnan(ttft):
                ttft = time.perf_counter() - t0
            elif '"interaction.completed"' in line:
                usage = json.loads(line.removeprefix("data: "))["interaction"]["usage"]
    return ttft, usage


def kv_reuse(base_url: str, rounds: int) -> tuple[float, float, int, int]:
    with httpx.Client(base_url=base_url, headers=HEADERS, timeout=120) as client:
        first = client.post(
            "/v1/interactions",
            json={
                "model": MODEL_ID,
                "input": HISTORY,
                "generation_config": {"max_output_tokens": 32, "temperature": 0},
            },
        ).json()
        history_tokens = (
            first["usage"]["total_input_tokens"] + first["usage"]["total_output_tokens"]
        )
        turn = {
            "model": MODEL_ID,
            "input": "Which ship was the fastest?",
            "previous_interaction_id": first["id"],
            "generation_config": {"max_output_tokens": 4, "temperature": 0},
        }
        evict = {
            "model": MODEL_ID,
            "input": "Say something unrelated.",
            "store": False,
            "generation_config": {"max_output_tokens": 1},
        }
        warm: list[float] = []
        cold: list[float] = []
        cached = 0
        stream_ttft(client, turn)  # fills the slot with this conversation
        for _ in range(rounds):
            ttft, usage = stream_ttft(client, turn)
            warm.append(ttft)
            cached = usage.get("total_cached_tokens", 0)
            client.post("/v1/interactions", json=evict).raise_for_status()
            ttft, usage = stream_ttft(client, turn)
            assert usage.get("total_cached_tokens", 0) < 50, usage
            cold.append(ttft)
            stream_ttft(client, turn)  # refill for the next warm measurement
    return median(warm), median(cold), history_tokens, cached


# ----- 3. store throughput, 16 concurrent writers ----------------------------------------


async def store_throughput(url: str, writers: int, per_writer: int) -> tuple[float, float]:
    store = SqlStore(url)
    await store.start()
    now = datetime.now(UTC)

    def event(seq: int) -> dict[str, Any]:
        delta = {"type": "text", "text": " token"}
        return {"event_type": "step.delta", "event_id": f"evt_{seq}", "index": 0, "delta": delta}

    async def writer() -> None:
        for _ in range(per_writer):
            record = InteractionRecord(
                id="v1_" + secrets.token_hex(12),
                tenant="bench",
                model=MODEL_ID,
                status="in_progress",
                created_at=now,
                updated_at=now,
                expires_at=now + timedelta(days=1),
                input=[{"type": "user_input", "content": [{"type": "text", "text": "Hi"}]}],
            )
            await store.create_interaction(record, [event(1), event(2)])
            seq = 3
            for _batch in range(5):
                await store.append_events(record.id, seq, [event(seq + i) for i in range(10)])
                seq += 10
            await store.finish_interaction(
                record.id, first_seq=seq, events=[event(seq)], status="completed",
                steps=[], usage={"total_tokens": 1}, error=None, updated_at=now,
            )  # fmt: skip

    t0 = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - t0
    await store.close()
    total = writers * per_writer
    return total / elapsed, total * 53 / elapsed


async def main_async(args: argparse.Namespace) -> None:
    quick = args.quick
    requests = 10 if quick else 60
    rounds = 2 if quick else 6
    per_writer = 3 if quick else 20
    print_preamble("bench_state: storing, KV reuse, store throughput")

    async with fresh_postgres() as pg_url:
        rows = []
        backends: list[tuple[str, list[str]]] = [("SQLite", [])]
        if pg_url:
            backends.append(("PostgreSQL", ["--database-url", pg_url]))
        for name, extra in backends:
            with gemserve(*extra) as server:
                stored, unstored = store_latency(server.base_url, requests)
            rows.append(
                [
                    name,
                    f"{unstored * 1000:.1f}",
                    f"{stored * 1000:.1f}",
                    f"{(stored - unstored) * 1000:+.1f}",
                ]
            )
        print(
            "\n### Added latency of storing (1-token interaction, p50 of", requests // 2, "each)\n"
        )
        print(md_table(["store", "store=false p50 ms", "store=true p50 ms", "added ms"], rows))

        with gemserve() as server:
            warm, cold, history, cached = kv_reuse(server.base_url, rounds)
        print(f"\n### TTFT of a turn with a {history}-token history (median of {rounds})\n")
        print(md_table(
            ["cold (prefill) ms", "warm (KV reuse) ms", "cached tokens", "warm/cold", "≤ 0.3"],
            [[f"{cold * 1000:.0f}", f"{warm * 1000:.0f}", cached, f"{ratio(warm, cold):.3f}",
              verdict(ratio(warm, cold), 0.3, higher_is_better=False)]],
        ))  # fmt: skip

        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            targets = [("SQLite", f"sqlite+aiosqlite:///{tmp}/bench.db")]
            if pg_url:
                targets.append(
                    ("PostgreSQL", pg_url.replace("postgresql://", "postgresql+asyncpg://", 1))
                )
            for name, url in targets:
                per_s, events_s = await store_throughput(url, 16, per_writer)
                rows.append([name, f"{per_s:.0f}", f"{events_s:.0f}"])
        print(
            f"\n### Store throughput, 16 concurrent writers × {per_writer} interactions"
            " (53 events each)\n"
        )
        print(md_table(["store", "interactions/s", "events/s"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
