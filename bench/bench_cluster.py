"""gemserve replicas on one PostgreSQL: what sharing costs, and what survives a killed replica.

1. ``journal``: 8 concurrent streams on one replica storing in PostgreSQL against the same on
   the embedded SQLite (today's single process), interleaved rounds: aggregate decode speed
   and the server's CPU time per output token (journal, store and HTTP work included).
2. ``resume``: a background interaction runs on replica A; one client follows it on A, another
   on B (B polls the stored events). Per event: arrival on B minus arrival on A, p50 and p99.
3. ``load``: ``--clients`` clients (default 64) for ``--seconds`` against three replicas, each
   request to the next replica (a load balancer without stickiness): streamed turns,
   conversations continued on another replica, background interactions polled elsewhere.
   Replica 2 is killed (SIGKILL) at 1/3 of the run and restarted at 1/2. At the end, from the
   database: every interaction is terminal, and no event log has a gap.

Loopback only; every server is stopped on exit. Usage:
  .venv/bin/python bench/bench_cluster.py [journal|resume|load|all] [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from common import (
    API_KEY,
    LONG_PROMPTS,
    MODEL_ID,
    Server,
    exit_on_sigterm,
    free_port,
    gemserve_argv,
    md_table,
    median,
    percentile,
    postgres_database,
    print_preamble,
    ratio,
)
from cryptography.fernet import Fernet

ADMIN_URL = os.environ.get("GEMSERVE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test")
HEADERS = {"x-goog-api-key": API_KEY}
RECOVERY_SEQ = 900_000_000  # protocol/interactions/events.py: a recovered log's verdict ids


def pg_database() -> contextlib.AbstractContextManager[str]:
    return postgres_database(ADMIN_URL)


def replica(name: str, data_dir: Path, env: dict[str, str], *, threads: int = 1) -> Server:
    port = free_port()
    argv = [
        *gemserve_argv(), "serve", "--port", str(port), "--data-dir", str(data_dir),
        "--slots", "8", "--threads", str(threads), "--log-level", "warning",
    ]  # fmt: skip
    return Server(name, argv, port=port, ready_path="/readyz", env=env)


def cluster_env(database_url: str | None) -> dict[str, str]:
    env = {"GEMSERVE_THOUGHT_SIGNING_KEY": Fernet.generate_key().decode()}
    if database_url:
        env["GEMSERVE_DATABASE_URL"] = database_url
    return env


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sse_events(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> AsyncIterator[dict[str, Any]]:
    async with client.stream(method, url, headers=HEADERS, **kwargs) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                yield json.loads(line[6:])


# ----- 1. journal cost ---------------------------------------------------------------------


async def eight_streams(base_url: str, tokens: int) -> int:
    async def one(i: int) -> int:
        body = {
            "model": MODEL_ID,
            "input": LONG_PROMPTS[i % len(LONG_PROMPTS)],
            "stream": True,
            "generation_config": {"max_output_tokens": tokens, "temperature": 0},
        }
        out = 0
        async with httpx.AsyncClient(timeout=600) as client:
            url = base_url + "/v1beta/interactions"
            async for event in sse_events(client, "POST", url, json=body):
                if event["event_type"] == "interaction.completed":
                    out = int(event["interaction"]["usage"]["total_output_tokens"])
        return out

    return sum(await asyncio.gather(*(one(i) for i in range(8))))


def journal(rounds: int, tokens: int) -> None:
    print("### 1. Storing and the event journal: PostgreSQL against SQLite, 8 streams\n")
    results: dict[str, list[tuple[float, float]]] = {"sqlite": [], "postgresql": []}
    with pg_database() as database_url, tempfile.TemporaryDirectory() as tmp:
        servers = {
            "sqlite": replica("sqlite", Path(tmp) / "a", cluster_env(None), threads=2),
            "postgresql": replica("pg", Path(tmp) / "b", cluster_env(database_url), threads=2),
        }
        for kind in itertools.islice(itertools.cycle(servers), 2 * rounds):
            with servers[kind] as server:
                asyncio.run(eight_streams(server.base_url, 8))  # warm
                cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
                out = asyncio.run(eight_streams(server.base_url, tokens))
                wall, cpu = time.perf_counter() - t0, cpu_seconds(server.pid) - cpu0
            results[kind].append((out / wall, 1000 * cpu / out))
            print(f"  {kind}: {out / wall:.1f} tok/s, {1000 * cpu / out:.2f} CPU ms/token")
    sqlite, pg = (
        (median([r[0] for r in results[k]]), median([r[1] for r in results[k]]))
        for k in ("sqlite", "postgresql")
    )
    print()
    print(
        md_table(
            ["store", "aggregate tok/s (median)", "server CPU ms per token (median)"],
            [["SQLite (one process)", *sqlite], ["PostgreSQL (replica)", *pg]],
        )
    )
    print(
        f"\nPostgreSQL/SQLite: speed {ratio(pg[0], sqlite[0]):.3f}x, "
        f"CPU per token {ratio(pg[1], sqlite[1]):.3f}x\n"
    )


# ----- 2. resume latency -------------------------------------------------------------------


async def follow_both(a: str, b: str, tokens: int) -> list[float]:
    async with httpx.AsyncClient(timeout=600) as client:
        body = {
            "model": MODEL_ID,
            "input": random.choice(LONG_PROMPTS),
            "background": True,
            "generation_config": {"max_output_tokens": tokens},
        }
        created = await client.post(a + "/v1beta/interactions", json=body, headers=HEADERS)
        iid = created.json()["id"]
        arrived: dict[str, dict[str, float]] = {"a": {}, "b": {}}

        async def follow(name: str, base: str) -> None:
            url = f"{base}/v1beta/interactions/{iid}"
            async for event in sse_events(client, "GET", url, params={"stream": "true"}):
                arrived[name][event["event_id"]] = time.perf_counter()

        await asyncio.gather(follow("a", a), follow("b", b))
    return [
        1000 * (t - arrived["a"][event_id])
        for event_id, t in arrived["b"].items()
        if event_id in arrived["a"]
    ]


def resume(interactions: int, tokens: int) -> None:
    print("### 2. Following an interaction from another replica\n")
    with pg_database() as database_url, tempfile.TemporaryDirectory() as tmp:
        env = cluster_env(database_url)
        # One data dir (on one host the replicas share the blob folder; across hosts they
        # would share a bucket).
        shared = Path(tmp) / "shared"
        with replica("a", shared, env) as a, replica("b", shared, env) as b:
            lags: list[float] = []
            for _ in range(interactions):
                lags += asyncio.run(follow_both(a.base_url, b.base_url, tokens))
    print(
        md_table(
            ["events", "p50 ms", "p90 ms", "p99 ms", "max ms"],
            [
                [
                    len(lags),
                    percentile(lags, 50),
                    percentile(lags, 90),
                    percentile(lags, 99),
                    max(lags),
                ]
            ],
        )
    )
    print(
        "\nArrival on B (polling the stored events) minus arrival on A (the live log); the "
        "bound is the journal's flush interval (0.2 s) plus cluster_poll_seconds (0.1 s).\n"
    )


# ----- 3. load with a killed replica -------------------------------------------------------


class Balancer:
    """Round robin over the replicas' current addresses (a restarted one gets a new port)."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self._turn = itertools.count()

    def next(self) -> str:
        return self.servers[next(self._turn) % len(self.servers)].base_url


async def upload_across(lb: Balancer, client: httpx.AsyncClient) -> str:
    """A 3-chunk upload, each request to the next replica; the file's name."""
    data = random.randbytes(3 * 256 * 1024)
    started = await client.post(
        lb.next() + "/upload/v1beta/files",
        json={"file": {"mime_type": "application/octet-stream"}},
        headers={
            **HEADERS,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
        },
    )
    started.raise_for_status()
    path = started.headers["x-goog-upload-url"].split("/upload/", 1)[1]
    third = len(data) // 3
    for i in range(3):
        response = await client.post(
            f"{lb.next()}/upload/{path}",
            content=data[i * third : (i + 1) * third],
            headers={
                "X-Goog-Upload-Command": "upload, finalize" if i == 2 else "upload",
                "X-Goog-Upload-Offset": str(i * third),
            },
        )
        response.raise_for_status()
    return str(response.json()["file"]["name"])


async def client_loop(
    lb: Balancer, until: float, stats: Counter[str], ids: set[str], files: set[str]
) -> None:
    previous: str | None = None
    async with httpx.AsyncClient(timeout=120) as client:
        while time.monotonic() < until:
            kind = random.choices(["stream", "continue", "background", "upload"], [5, 3, 2, 1])[0]
            body: dict[str, Any] = {
                "model": MODEL_ID,
                "input": random.choice(["Say hi.", "Name a colour.", "Count to three."]),
                "generation_config": {"max_output_tokens": 12},
            }
            if kind == "continue" and previous:
                body["previous_interaction_id"] = previous
            try:
                if kind == "upload":
                    files.add(await upload_across(lb, client))
                    stats["upload completed"] += 1
                    continue
                if kind == "background":
                    body["background"] = True
                    created = await client.post(
                        lb.next() + "/v1beta/interactions", json=body, headers=HEADERS
                    )
                    stats[f"background {created.status_code}"] += 1
                    if created.status_code == 200:
                        ids.add(created.json()["id"])
                    continue
                body["stream"] = True
                last = None
                url = lb.next() + "/v1beta/interactions"
                async for event in sse_events(client, "POST", url, json=body):
                    last = event
                if last is not None and last["event_type"] == "interaction.completed":
                    previous = last["interaction"]["id"]
                    ids.add(previous)
                    stats[f"{kind} completed"] += 1
                else:
                    stats[f"{kind} cut short"] += 1
            except httpx.HTTPStatusError as exc:
                stats[f"{kind} {exc.response.status_code}"] += 1
                await asyncio.sleep(0.2)
            except httpx.TransportError:
                stats[f"{kind} connection error"] += 1  # the killed replica
                await asyncio.sleep(0.2)


async def drive(lb: Balancer, clients: int, seconds: float, kill_at: float, back_at: float):  # type: ignore[no-untyped-def]
    stats: Counter[str] = Counter()
    ids: set[str] = set()
    files: set[str] = set()
    until = time.monotonic() + seconds
    loops = [asyncio.create_task(client_loop(lb, until, stats, ids, files)) for _ in range(clients)]
    await asyncio.sleep(kill_at)
    victim = lb.servers[2]
    os.kill(victim.pid, signal.SIGKILL)
    print(f"  t={kill_at:.0f}s: killed replica 2 (pid {victim.pid})", flush=True)
    await asyncio.sleep(back_at - kill_at)
    await asyncio.to_thread(victim.start)
    print(f"  t={back_at:.0f}s: replica 2 restarted on port {victim.port}", flush=True)
    await asyncio.gather(*loops)
    return stats, ids, files


async def check_database(
    database_url: str,
    files: Collection[str] = (),
    blob_dir: Path | None = None,
) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM interactions GROUP BY status")
        seqs = await conn.fetch(
            "SELECT interaction_id, array_agg(seq ORDER BY seq) AS seqs "
            "FROM interaction_events GROUP BY interaction_id"
        )
        file_rows = await conn.fetch("SELECT id, name FROM files")
    finally:
        await conn.close()
    gaps = 0
    for row in seqs:
        live = [s for s in row["seqs"] if s < RECOVERY_SEQ]
        if live != list(range(1, len(live) + 1)):
            gaps += 1
    counts = {f"status {row['status']}": int(row["n"]) for row in rows}
    counts["event logs"] = len(seqs)
    counts["event logs with a gap"] = gaps
    stored = {row["name"] for row in file_rows}
    counts["uploads finalized by clients"] = len(files)
    counts["uploads lost (finalized, no row)"] = len(
        {f.removeprefix("files/") for f in files} - stored
    )
    if blob_dir is not None:
        blobs = {p.name for p in (blob_dir / "blobs").iterdir()}
        counts["blobs without a file row"] = len(blobs - {row["id"] for row in file_rows})
        counts["file rows without a blob"] = len({row["id"] for row in file_rows} - blobs)
    return counts


def load(clients: int, seconds: float) -> None:
    print(f"### 3. {clients} clients, {seconds:.0f} s, three replicas, one killed and restarted\n")
    with pg_database() as database_url, tempfile.TemporaryDirectory() as tmp:
        env = {**cluster_env(database_url), "GEMSERVE_REPLICA_LEASE_SECONDS": "5"}
        servers = [replica(f"r{i}", Path(tmp) / "shared", env) for i in range(3)]
        with contextlib.ExitStack() as stack:
            for server in servers:
                stack.enter_context(server)
            lb = Balancer(servers)
            began = time.perf_counter()
            stats, ids, files = asyncio.run(drive(lb, clients, seconds, seconds / 3, seconds / 2))
            elapsed = time.perf_counter() - began
            # Background work still running, and the killed replica's lease expiring.
            deadline = time.monotonic() + 120
            blob_dir = Path(tmp) / "shared" / "files"
            counts = asyncio.run(check_database(database_url, files, blob_dir))
            while counts.get("status in_progress") and time.monotonic() < deadline:
                time.sleep(1)
                counts = asyncio.run(check_database(database_url, files, blob_dir))
    print(md_table(["client outcome", "count"], sorted(stats.items())))
    print()
    print(md_table(["in the database afterwards", "count"], sorted(counts.items())))
    done = sum(n for key, n in stats.items() if key.endswith("completed"))
    print(f"\n{done} streamed turns completed in {elapsed:.0f} s ({done / elapsed:.1f}/s); "
          f"{len(ids)} interaction ids seen by clients.")  # fmt: skip
    ok = (
        not counts.get("status in_progress")
        and counts["event logs with a gap"] == 0
        and counts["uploads lost (finalized, no row)"] == 0
        and counts.get("blobs without a file row", 0) == 0
        and counts.get("file rows without a blob", 0) == 0
    )
    print(
        "Invariants (all terminal, no log gaps, no upload lost, no orphaned blob): "
        f"{'PASS' if ok else 'FAIL'}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "part", nargs="?", default="all", choices=["journal", "resume", "load", "all"]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--interactions", type=int, default=5)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    exit_on_sigterm()
    print_preamble("gemserve replicas on one PostgreSQL")
    if args.part in ("journal", "all"):
        journal(args.rounds, args.tokens)
    if args.part in ("resume", "all"):
        resume(args.interactions, args.tokens)
    if args.part in ("load", "all"):
        load(args.clients, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
