"""Keys-required mode, the loopback rule, crash recovery after kill -9, and the retention sweep."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.server import start_server, stop_server
from tests.support.wait import wait_until

pytestmark = [pytest.mark.contract, pytest.mark.live]

MODEL = "gemini-3-flash-preview"
BODY = {"model": MODEL, "input": "Hi", "generation_config": {"max_output_tokens": 2}}


def gemserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gemserve", *args], capture_output=True, text=True, timeout=60
    )


def stored_events(db: Path, interaction_id: str) -> int:
    """Events of an interaction in the SQLite store, read as another process would."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        (count,) = conn.execute(
            "select count(*) from interaction_events where interaction_id = ?",
            (interaction_id,),
        ).fetchone()
    return int(count)


def test_non_loopback_without_keys_required_refuses_to_start(tmp_path: Path) -> None:
    result = gemserve("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--require-keys" in result.stderr


def test_keys_required_mode(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    made = gemserve("keys", "create", "--name", "ci", "--tenant", "team-a", "--data-dir", data)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    key_id = made.stderr.split("id=")[1].split()[0]
    other = gemserve("keys", "create", "--data-dir", data).stdout.strip()
    listing = gemserve("keys", "list", "--data-dir", data).stdout
    assert key_id in listing
    assert "team-a" in listing
    assert key not in listing  # keys are stored only as hashes
    assert key not in (tmp_path / "data" / "gemserve.db").read_bytes().decode("latin-1")

    server = start_server(tmp_path, "--require-keys")
    try:
        url = server.base_url + "/v1/interactions"
        ok = httpx.post(url, json=BODY, headers={"x-goog-api-key": key}, timeout=60)
        assert ok.status_code == 200, ok.text
        unknown = httpx.post(url, json=BODY, headers={"x-goog-api-key": "made-up"})
        assert unknown.status_code == 400
        assert unknown.json()["error"]["message"].startswith("API key not valid")
        missing = httpx.post(url, json=BODY)
        assert missing.status_code == 403
        # The other key is another tenant: it cannot see the first key's interaction.
        iid = ok.json()["id"]
        foreign = httpx.get(f"{url}/{iid}", headers={"x-goog-api-key": other})
        assert foreign.status_code == 404
        revoked = gemserve("keys", "revoke", key_id, "--data-dir", data)
        assert revoked.returncode == 0
        after = httpx.post(url, json=BODY, headers={"x-goog-api-key": key})
        assert after.status_code == 400
    finally:
        stop_server(server)


def test_kill_9_mid_generation_then_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    headers = {"x-goog-api-key": "k"}
    url = server.base_url + "/v1/interactions"
    done = httpx.post(url, json=BODY, headers=headers, timeout=60).json()
    running = httpx.post(
        url,
        json={
            **BODY,
            "input": "Write a long essay.",
            "background": True,
            "generation_config": {"max_output_tokens": 400},
        },
        headers=headers,
        timeout=60,
    ).json()
    deadline = time.monotonic() + 60
    while (
        httpx.get(f"{url}/{running['id']}", headers=headers).json()["steps"][-1]["type"]
        != "model_output"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Some of its text deltas in the store (the journal writes every 200 ms), not only the
    # opening events the row was created with.
    wait_until(
        lambda: stored_events(tmp_path / "data" / "gemserve.db", running["id"]) > 3,
        seconds=30,
        what="the journal to store some of the running interaction's events",
    )
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()

    restarted = start_server(tmp_path)
    try:
        url = restarted.base_url + "/v1/interactions"
        intact = httpx.get(f"{url}/{done['id']}", headers=headers).json()
        assert intact["status"] == done["status"]
        assert intact["steps"][-1] == done["steps"][-1]
        failed = httpx.get(f"{url}/{running['id']}", headers=headers).json()
        assert failed["status"] == "failed"
        assert "stopped" in failed["errors"][0]["message"]
        replay = httpx.get(f"{url}/{running['id']}", params={"stream": "true"}, headers=headers)
        events = [
            orjson.loads(line[6:]) for line in replay.text.splitlines() if line.startswith("data: ")
        ]
        assert events[0]["event_type"] == "interaction.created"
        assert events[-1]["event_type"] == "interaction.completed"
        assert events[-1]["interaction"]["status"] == "failed"
        fresh = httpx.post(url, json=BODY, headers=headers, timeout=60)
        assert fresh.status_code == 200
    finally:
        stop_server(restarted)


def test_retention_sweeper_deletes_expired_interactions(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text("[server]\ninteraction_ttl_days = 0.00002\nsweep_interval_seconds = 0.2\n")
    server = start_server(tmp_path, "--config", str(config))
    try:
        headers = {"x-goog-api-key": "k"}
        created: dict[str, Any] = httpx.post(
            server.base_url + "/v1/interactions", json=BODY, headers=headers, timeout=60
        ).json()
        db = tmp_path / "data" / "gemserve.db"
        deadline = time.monotonic() + 30
        while True:
            with sqlite3.connect(db) as conn:
                rows = conn.execute(
                    "select count(*) from interactions where id = ?", (created["id"],)
                )
                events = conn.execute(
                    "select count(*) from interaction_events where interaction_id = ?",
                    (created["id"],),
                )
                remaining = rows.fetchone()[0] + events.fetchone()[0]
            if remaining == 0:
                break
            assert time.monotonic() < deadline, "the sweeper never deleted the interaction"
            time.sleep(0.2)
        gone = httpx.get(f"{server.base_url}/v1/interactions/{created['id']}", headers=headers)
        assert gone.status_code == 404
    finally:
        stop_server(server)
