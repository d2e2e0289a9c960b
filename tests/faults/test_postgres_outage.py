"""PostgreSQL stopped for 10 s under a live server: requests meanwhile get 503 UNAVAILABLE in
the Google envelope with Retry-After (never a 500), a generation running through it is
written once the database returns (or fails cleanly), and the server serves again without a
restart. PostgreSQL is started again in a ``finally``, whatever happens."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gemserve.protocol.interactions.fold import InteractionFold
from tests.support.faults import HEADERS, TERMINAL, body
from tests.support.postgres import fresh_database
from tests.support.server import start_server, stop_server

pytestmark = pytest.mark.live

CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main"]


def postgres(action: str) -> None:
    subprocess.run([*CLUSTER, action], check=True, timeout=60, capture_output=True)


def outage_answers(base_url: str, known: str, seconds: float) -> tuple[Counter[str], list[str]]:
    """Creates, reads and lists for ``seconds``: each answer's status counted; bad ones
    (a 500, a 503 without Retry-After or outside the envelope) listed."""
    counts: Counter[str] = Counter()
    bad: list[str] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base_url, headers=HEADERS, timeout=30) as http:
        while time.monotonic() < deadline:
            calls: tuple[tuple[str, Callable[[], httpx.Response]], ...] = (
                ("create", lambda: http.post("/v1beta/interactions", json=body(4))),
                ("stream", lambda: http.post("/v1beta/interactions", json=body(4, stream=True))),
                ("get", lambda: http.get(f"/v1beta/interactions/{known}")),
                ("list", lambda: http.get("/v1beta/interactions")),
                ("files", lambda: http.get("/v1beta/files")),
            )
            for name, call in calls:
                response = call()
                counts[f"{name} {response.status_code}"] += 1
                if response.status_code == 503:
                    error = response.json().get("error", {})
                    if (
                        error.get("status") != "UNAVAILABLE"
                        or "retry-after" not in response.headers
                    ):
                        bad.append(f"{name}: 503 {response.headers} {response.text}")
                elif response.status_code >= 500:
                    bad.append(f"{name}: {response.status_code} {response.text[:300]}")
            time.sleep(0.2)
    return counts, bad


def run_outage(tmp: Path, url: str, seconds: float) -> dict[str, Any]:
    server = start_server(tmp, "--log-level", "warning", env={"GEMSERVE_DATABASE_URL": url})
    try:
        with httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=60) as http:
            known = http.post("/v1beta/interactions", json=body(4)).json()["id"]
            running = http.post("/v1beta/interactions", json=body(160, background=True)).json()[
                "id"
            ]
            # A stream that is mid-answer when the database goes.
            streamed: list[str] = []
            reader = threading.Thread(target=_read_stream, args=(server.base_url, streamed))
            reader.start()
            time.sleep(1.0)
            stopped_at = time.monotonic()
            try:
                postgres("stop")
                counts, bad = outage_answers(server.base_url, known, seconds)
            finally:
                postgres("start")
            back_after = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if http.post("/v1beta/interactions", json=body(4)).status_code == 200:
                    back_after = time.monotonic() - stopped_at - seconds
                    break
                time.sleep(0.5)
            reader.join(timeout=120)
            finals = {}
            for iid in (running, *streamed):
                got: dict[str, Any] = {}
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    response = http.get(f"/v1beta/interactions/{iid}")
                    got = response.json() if response.status_code == 200 else {"status": "404"}
                    if got.get("status") in TERMINAL:
                        break
                    time.sleep(0.5)
                fold = InteractionFold()
                replay = http.get(f"/v1beta/interactions/{iid}", params={"stream": "true"})
                for line in replay.text.splitlines():
                    if line.startswith("data:"):
                        fold.apply(json.loads(line[5:]))
                folded = fold.result()
                finals[iid] = (got.get("status"), folded.get("status"), got.get("errors"))
                if folded.get("usage") != got.get("usage"):
                    bad.append(f"{iid}: replayed usage differs")
        return {"counts": counts, "bad": bad, "back_after": back_after, "finals": finals}
    finally:
        stop_server(server)


def _read_stream(base_url: str, ids: list[str]) -> None:
    payload = {**body(160), "stream": True}
    try:
        with (
            httpx.Client(base_url=base_url, headers=HEADERS, timeout=120) as http,
            http.stream("POST", "/v1beta/interactions", json=payload) as response,
        ):
            for line in response.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("event_type") == "interaction.created":
                        ids.append(event["interaction"]["id"])
    except httpx.HTTPError:
        pass


def test_postgres_stopped_for_10_seconds(tmp_path: Path) -> None:
    with fresh_database() as url:
        result = run_outage(tmp_path, url, 10.0)
    assert not result["bad"], result
    counts = result["counts"]
    assert isinstance(counts, Counter)
    assert any(key.endswith(" 503") for key in counts), counts
    assert result["back_after"] is not None, result
    finals = result["finals"]
    assert isinstance(finals, dict)
    assert finals, result
    for iid, (status, replayed, errors) in finals.items():
        assert status in TERMINAL, (iid, status)
        assert replayed == status, (iid, status, replayed, errors)
