"""Fault injection on a live gemserve: kill -9 under load and restart, checking what the store
kept (tests/faults and bench/bench_faults.py share it).

A few client threads stream and run background interactions on small ``max_output_tokens``;
at a random moment the server gets SIGKILL. With the server down the store is checked (SQLite
``PRAGMA integrity_check``; on both, every interaction's event seqs contiguous from 1 up to the
verdict, and a terminal row's log ending in ``interaction.completed``); after the restart every
interaction the clients saw finish is byte-identical (GET) to what they saw, and every one
they saw running is ``failed`` with the "stopped" reason (or finished in the instant before
the kill: its log then says so). On PostgreSQL the restarted server is a new replica: it fails
the dead one's interactions once that one's lease has expired (``replica_lease_seconds``),
so the check waits for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gemserve.protocol.interactions.events import RECOVERY_SEQ
from tests.support.server import LiveServer, start_server

MODEL = "gemini-3-flash-preview"
HEADERS = {"x-goog-api-key": "faults"}
TERMINAL = {"completed", "requires_action", "incomplete", "failed", "cancelled"}
SETTLE_SECONDS = 25.0  # a dead replica's lease (10 s) and the survivor's next duty round
PROMPTS = ("Write a story about a cat.", "Explain how rain forms.", "List ten fruits.")


def body(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "input": random.choice(PROMPTS),
        "generation_config": {"max_output_tokens": max_tokens},
        **extra,
    }


@dataclass
class Seen:
    """What the clients saw: finished interactions' GET bodies, and those still running."""

    finished: dict[str, bytes] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, iid: str) -> None:
        with self.lock:
            self.running.add(iid)

    def done(self, iid: str, raw: bytes) -> None:
        with self.lock:
            self.running.discard(iid)
            self.finished[iid] = raw


def _client(base_url: str, seen: Seen, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base_url, headers=HEADERS, timeout=30) as http:
        while not stop.is_set():
            try:
                if rng.random() < 0.5:
                    _stream_one(http, seen, rng)
                else:
                    _background_one(http, seen, stop, rng)
            except (httpx.HTTPError, json.JSONDecodeError, KeyError):
                time.sleep(0.05)  # the server was killed under us: expected


def _finish(http: httpx.Client, seen: Seen, iid: str) -> None:
    response = http.get(f"/v1beta/interactions/{iid}")
    if response.status_code == 200 and response.json()["status"] in TERMINAL:
        seen.done(iid, response.content)


def _stream_one(http: httpx.Client, seen: Seen, rng: random.Random) -> None:
    payload = {**body(rng.randint(16, 96)), "stream": True}
    iid = None
    with http.stream("POST", "/v1beta/interactions", json=payload) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and iid is None:
                event = json.loads(line[5:])
                if event.get("event_type") == "interaction.created":
                    iid = event["interaction"]["id"]
                    seen.started(iid)
    if iid is not None:
        _finish(http, seen, iid)


def _background_one(
    http: httpx.Client, seen: Seen, stop: threading.Event, rng: random.Random
) -> None:
    response = http.post("/v1beta/interactions", json=body(rng.randint(16, 96), background=True))
    if response.status_code != 200:
        time.sleep(0.2)
        return
    iid = response.json()["id"]
    seen.started(iid)
    while not stop.is_set():
        got = http.get(f"/v1beta/interactions/{iid}")
        if got.status_code == 200 and got.json()["status"] in TERMINAL:
            seen.done(iid, got.content)
            return
        time.sleep(0.1)


# ----- checks with the server down ------------------------------------------------------------


def _contiguous(rows: list[tuple[str, int, str]]) -> list[str]:
    """Problems in (interaction id, seq, event_type) rows sorted by id then seq."""
    problems = []
    by_id: dict[str, list[tuple[int, str]]] = {}
    for iid, seq, kind in rows:
        by_id.setdefault(iid, []).append((seq, kind))
    for iid, events in by_id.items():
        run = [seq for seq, _ in events if seq < RECOVERY_SEQ]
        if run != list(range(1, len(run) + 1)):
            problems.append(f"{iid}: seqs {run[:5]}… not contiguous from 1")
        verdict = [seq for seq, _ in events if seq >= RECOVERY_SEQ]
        if verdict and verdict != list(range(RECOVERY_SEQ, RECOVERY_SEQ + len(verdict))):
            problems.append(f"{iid}: verdict seqs {verdict}")
    return problems


def _terminal_without_end(rows: list[tuple[str, str]], last: dict[str, str]) -> list[str]:
    return [
        f"{iid}: {status} but its log ends with {last.get(iid)}"
        for iid, status in rows
        if status in TERMINAL and last.get(iid) != "interaction.completed"
    ]


def check_sqlite(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        problems = [
            f"integrity_check: {row[0]}"
            for row in conn.execute("PRAGMA integrity_check")
            if row[0] != "ok"
        ]
        rows = conn.execute(
            "select interaction_id, seq, json_extract(event, '$.event_type') "
            "from interaction_events order by interaction_id, seq"
        ).fetchall()
        statuses = conn.execute("select id, status from interactions").fetchall()
    last = {iid: kind for iid, _, kind in rows}
    return problems + _contiguous(rows) + _terminal_without_end(statuses, last)


def check_postgres(url: str) -> list[str]:
    import asyncpg  # type: ignore[import-untyped]

    async def read() -> tuple[list[Any], list[Any]]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "select interaction_id, seq, (event::jsonb)->>'event_type' "
                "from interaction_events order by interaction_id, seq"
            )
            statuses = await conn.fetch("select id, status from interactions")
        finally:
            await conn.close()
        return rows, statuses

    rows, statuses = asyncio.run(read())
    tuples = [(r[0], r[1], r[2]) for r in rows]
    last = {iid: kind for iid, _, kind in tuples}
    return _contiguous(tuples) + _terminal_without_end([(r[0], r[1]) for r in statuses], last)


# ----- the cycle ------------------------------------------------------------------------------


@dataclass
class KillReport:
    kills: int = 0
    restarts_s: list[float] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def _settled(http: httpx.Client, iid: str) -> httpx.Response:
    """GET, waiting while it is still ``in_progress``: on PostgreSQL the restarted server is a
    new replica, and fails the dead one's interactions once its lease has run out
    (``replica_lease_seconds``, 10 s), "stopped renewing its lease"; SQLite at start."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        got = http.get(f"/v1beta/interactions/{iid}")
        if got.status_code != 200 or got.json()["status"] in TERMINAL:
            return got
        if time.monotonic() > deadline:
            return got
        time.sleep(0.25)


def _after_restart(server: LiveServer, seen: Seen, report: KillReport) -> None:
    with httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=30) as http:
        for iid, raw in seen.finished.items():
            got = http.get(f"/v1beta/interactions/{iid}")
            if got.content == raw:
                report.counts["finished: byte-identical"] += 1
            else:
                report.problems.append(f"{iid} changed:\n{raw!r}\n{got.content!r}")
        for iid in sorted(seen.running):
            got = _settled(http, iid)
            if got.status_code == 404:
                report.counts["running: never stored"] += 1  # killed before its row committed
                continue
            value = got.json()
            if value["status"] == "failed" and "stopped" in value["errors"][0]["message"]:
                report.counts["running: failed (stopped)"] += 1
            elif value["status"] in TERMINAL and value["status"] != "failed":
                report.counts[f"running: {value['status']} just before the kill"] += 1
            else:
                report.problems.append(f"{iid} after restart: {value['status']} {value}")
            if value["status"] in TERMINAL:
                seen.done(iid, got.content)
        seen.running.clear()
        fresh = http.post("/v1beta/interactions", json=body(4))
        if fresh.status_code != 200:
            report.problems.append(f"a new interaction after restart: {fresh.status_code}")


def kill_cycles(
    tmp: Path,
    kills: int,
    *,
    database_url: str | None = None,
    clients: int = 3,
    seed: int = 0,
    load_seconds: tuple[float, float] = (1.0, 4.0),
) -> KillReport:
    """``kills`` rounds of load, kill -9 at a random moment, checks, restart, checks."""
    rng = random.Random(seed)
    env = {"GEMSERVE_DATABASE_URL": database_url} if database_url else None
    seen = Seen()
    report = KillReport()
    server = start_server(tmp, "--log-level", "warning", env=env)
    try:
        for round_ in range(kills):
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=_client, args=(server.base_url, seen, stop, seed * 100 + round_ * 10 + i)
                )
                for i in range(clients)
            ]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(*load_seconds))
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait()
            report.kills += 1
            stop.set()
            for thread in threads:
                thread.join(timeout=35)
            found = (
                check_postgres(database_url)
                if database_url
                else check_sqlite(tmp / "data" / "gemserve.db")
            )
            report.problems += [f"kill {round_ + 1}: {p}" for p in found]
            began = time.monotonic()
            server = start_server(tmp, "--log-level", "warning", env=env)
            report.restarts_s.append(time.monotonic() - began)
            _after_restart(server, seen, report)
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(Exception):
            server.process.wait(timeout=15)
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    return report
