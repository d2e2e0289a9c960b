"""Batches survive a crash: kill -9 a live gemserve mid-batch, restart it on the same data
directory, and the batch resumes (answered requests keep their answers, the rest run); a
generate batch and an embedding batch (asyncBatchEmbedContent) alike."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import start_server, stop_server

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


def test_kill_9_mid_batch_then_restart_resumes_it(tmp_path: Path) -> None:
    server = start_server(tmp_path, env=ONE_AT_A_TIME)
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
    body = {"batch": {"inputConfig": {"requests": {"requests": requests}}}}
    created = httpx.post(
        f"{server.base_url}/v1beta/models/{MODEL}:batchGenerateContent",
        json=body,
        headers=HEADERS,
        timeout=60,
    ).json()
    name = created["name"]
    running = wait(
        server.base_url,
        name,
        lambda op: op["metadata"]["batchStats"]["successfulRequestCount"] == "1",
    )
    assert running["metadata"]["state"] == "BATCH_STATE_RUNNING"
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()

    restarted = start_server(tmp_path, env=ONE_AT_A_TIME)
    try:
        after = get(restarted.base_url, name)
        assert int(after["metadata"]["batchStats"]["successfulRequestCount"]) >= 1
        done = wait(restarted.base_url, name, lambda op: op["done"])
        assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
        assert done["metadata"]["batchStats"]["successfulRequestCount"] == "3"
        answers = done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
        assert [a["metadata"]["topic"] for a in answers] == ["rivers", "mountains", "forests"]
        assert all(a["response"]["candidates"][0]["content"]["parts"][0]["text"] for a in answers)
        assert f"batch {name.removeprefix('batches/')} resumed" in restarted.log()
    finally:
        stop_server(restarted)


def test_kill_9_mid_embedding_batch_then_restart_resumes_it(tmp_path: Path) -> None:
    server = start_server(tmp_path, env=ONE_AT_A_TIME)
    # Sixteen texts of about 400 tokens, one at a time: still running when killed.
    texts = [
        f"Part {i}. " + "The river runs past the old mill and on to the sea. " * 30
        for i in range(16)
    ]
    requests = [
        {"request": {"content": {"parts": [{"text": text}]}}, "metadata": {"part": i}}
        for i, text in enumerate(texts)
    ]
    body = {"batch": {"inputConfig": {"requests": {"requests": requests}}}}
    created = httpx.post(
        f"{server.base_url}/v1beta/models/gemini-embedding-001:asyncBatchEmbedContent",
        json=body,
        headers=HEADERS,
        timeout=60,
    ).json()
    name = created["name"]
    running = wait(
        server.base_url,
        name,
        lambda op: op["metadata"]["batchStats"]["successfulRequestCount"] != "0",
    )
    assert running["metadata"]["state"] == "BATCH_STATE_RUNNING"
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()

    restarted = start_server(tmp_path, env=ONE_AT_A_TIME)
    try:
        after = get(restarted.base_url, name)
        assert int(after["metadata"]["batchStats"]["successfulRequestCount"]) >= 1
        done = wait(restarted.base_url, name, lambda op: op["done"], seconds=600)
        assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
        assert done["metadata"]["batchStats"]["successfulRequestCount"] == "16"
        answers = done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
        assert [a["metadata"]["part"] for a in answers] == list(range(16))
        assert all(len(a["response"]["embedding"]["values"]) == 576 for a in answers)
        assert f"batch {name.removeprefix('batches/')} resumed" in restarted.log()
    finally:
        stop_server(restarted)
