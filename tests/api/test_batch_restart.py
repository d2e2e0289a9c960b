"""Batches survive a crash: kill -9 a live gemserve mid-batch, restart it on the same data
directory, and the batch resumes (answered requests keep their answers, the rest run); a
generate batch and an embedding batch (asyncBatchEmbedContent) alike."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import LiveServer, start_server, stop_server

pytestmark = [pytest.mark.contract, pytest.mark.live]

MODEL = "gemini-3-flash-preview"
HEADERS = {"x-goog-api-key": "batch-restart-key"}
ONE_AT_A_TIME = {"GEMSERVE_BATCH_CONCURRENCY": "1"}


def get(base_url: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{base_url}/v1beta/{name}", headers=HEADERS).json()
    return body


def wait(base_url: str, name: str, done: Any, seconds: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        operation = get(base_url, name)
        if done(operation):
            return operation
        assert time.monotonic() < deadline, operation
        time.sleep(0.1)


def kill_9_mid_batch(tmp_path: Path, method: str, requests: list[dict[str, Any]]) -> str:
    """Starts a server, creates a batch of ``requests`` (``models/{model}:{method}``), and
    kills the server with SIGKILL once a request is answered while the batch still runs; the
    batch's name."""
    server = start_server(tmp_path, env=ONE_AT_A_TIME)
    body = {"batch": {"inputConfig": {"requests": {"requests": requests}}}}
    created = httpx.post(
        f"{server.base_url}/v1beta/models/{method}", json=body, headers=HEADERS, timeout=60
    ).json()
    name: str = created["name"]
    running = wait(
        server.base_url,
        name,
        lambda op: op["metadata"]["batchStats"]["successfulRequestCount"] != "0",
    )
    assert running["metadata"]["state"] == "BATCH_STATE_RUNNING"
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    return name


@contextmanager
def restarted(tmp_path: Path) -> Iterator[LiveServer]:
    """The server again, on the killed one's data directory."""
    server = start_server(tmp_path, env=ONE_AT_A_TIME)
    try:
        yield server
    finally:
        stop_server(server)


def resumed(server: LiveServer, name: str, count: int, seconds: float) -> list[dict[str, Any]]:
    """The answers of batch ``name`` of ``count`` requests once the restarted ``server`` has
    resumed it: the answers given before the kill are kept, and every request succeeds."""
    after = get(server.base_url, name)
    assert int(after["metadata"]["batchStats"]["successfulRequestCount"]) >= 1
    done = wait(server.base_url, name, lambda op: op["done"], seconds=seconds)
    assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert done["metadata"]["batchStats"]["successfulRequestCount"] == str(count)
    assert f"batch {name.removeprefix('batches/')} resumed" in server.log()
    answers: list[dict[str, Any]] = done["metadata"]["output"]["inlinedResponses"][
        "inlinedResponses"
    ]
    return answers


def test_kill_9_mid_batch_then_restart_resumes_it(tmp_path: Path) -> None:
    requests = [
        {
            "request": {
                "contents": [{"parts": [{"text": f"Write a long essay about {topic}."}]}],
                "generationConfig": {"maxOutputTokens": 120, "temperature": 0},
            },
            "metadata": {"topic": topic},
        }
        for topic in ("rivers", "mountains", "forests")
    ]
    name = kill_9_mid_batch(tmp_path, f"{MODEL}:batchGenerateContent", requests)
    with restarted(tmp_path) as server:
        answers = resumed(server, name, 3, seconds=300)
    assert [a["metadata"]["topic"] for a in answers] == ["rivers", "mountains", "forests"]
    assert all(a["response"]["candidates"][0]["content"]["parts"][0]["text"] for a in answers)


def test_kill_9_mid_embedding_batch_then_restart_resumes_it(tmp_path: Path) -> None:
    # Sixteen texts of about 400 tokens, one at a time: still running when killed.
    texts = [
        f"Part {i}. " + "The river runs past the old mill and on to the sea. " * 30
        for i in range(16)
    ]
    requests = [
        {"request": {"content": {"parts": [{"text": text}]}}, "metadata": {"part": i}}
        for i, text in enumerate(texts)
    ]
    name = kill_9_mid_batch(tmp_path, "gemini-embedding-001:asyncBatchEmbedContent", requests)
    with restarted(tmp_path) as server:
        answers = resumed(server, name, 16, seconds=600)
    assert [a["metadata"]["part"] for a in answers] == list(range(16))
    assert all(len(a["response"]["embedding"]["values"]) == 576 for a in answers)
