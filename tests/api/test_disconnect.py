"""A client that hangs up cancels its generation and frees the engine slot."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.support.server import LiveServer

pytestmark = [pytest.mark.contract, pytest.mark.live]

KEY = {"x-goog-api-key": "test-key"}
MODEL = "smollm2-135m-instruct"
LONG = {
    "model": "gemini-3-flash-preview",
    "input": "Write a very long essay about the history of ships.",
    "generation_config": {"max_output_tokens": 90, "temperature": 0},
}
SHORT = {
    "model": "gemini-3-flash-preview",
    "input": "Hi",
    "generation_config": {"max_output_tokens": 1},
}


def stats(base_url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(base_url + "/statsz").json()[MODEL]
    return data


def wait_for_cancellation(base_url: str, cancelled_before: int) -> dict[str, Any]:
    """Poll the engine counters (bounded) until the cancellation shows up."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = stats(base_url)
        if now["requests_cancelled"] > cancelled_before and now["active"] == 0:
            return now
        time.sleep(0.01)
    raise AssertionError(f"generation was not cancelled: {stats(base_url)}")


def test_stream_disconnect_cancels_generation(limited_server: LiveServer) -> None:
    before = stats(limited_server.base_url)
    with (
        httpx.Client(base_url=limited_server.base_url, headers=KEY, timeout=30) as client,
        client.stream("POST", "/v1/interactions", json={**LONG, "stream": True}) as response,
    ):
        lines = response.iter_lines()
        while "step.delta" not in next(lines):
            pass
        busy = client.post("/v1/interactions", json=SHORT)
        assert busy.status_code == 429  # the only slot is taken
    # Leaving the block closed the connection mid-stream.
    after = wait_for_cancellation(limited_server.base_url, before["requests_cancelled"])
    assert after["requests_finished"] == before["requests_finished"] + 1
    ok = httpx.post(
        limited_server.base_url + "/v1/interactions", json=SHORT, headers=KEY, timeout=30
    )
    assert ok.status_code == 200


def test_non_streaming_disconnect_cancels_generation(limited_server: LiveServer) -> None:
    before = stats(limited_server.base_url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            limited_server.base_url + "/v1/interactions", json=LONG, headers=KEY, timeout=0.3
        )
    wait_for_cancellation(limited_server.base_url, before["requests_cancelled"])
    ok = httpx.post(
        limited_server.base_url + "/v1/interactions", json=SHORT, headers=KEY, timeout=30
    )
    assert ok.status_code == 200
