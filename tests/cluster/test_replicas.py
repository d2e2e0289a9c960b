"""Any replica answers any request: the guide's conversation spread over three replicas, an
upload whose chunks go to three replicas, a stream resumed on another replica, a cancel sent
to another replica, a replica with another signing key refused, and a replica killed with its
interaction running."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import time
from typing import Any

import httpx
import orjson
import pytest
from cryptography.fernet import Fernet
from google import genai

from tests.cluster.conftest import Cluster
from tests.support.contract import API_KEY, MODEL
from tests.support.server import LiveServer, start_server, wait_status

pytestmark = [pytest.mark.live]

HEADERS = {"x-goog-api-key": API_KEY}
LONG = {
    "model": MODEL,
    "input": "Write a very long essay about the sea, its tides and its storms.",
    "background": True,
    "generation_config": {"max_output_tokens": 400},
}


def client(server: LiveServer) -> genai.Client:
    return genai.Client(api_key=API_KEY, http_options={"base_url": server.base_url})


def post(server: LiveServer, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, headers=HEADERS, timeout=120)


def get(server: LiveServer, iid: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/v1beta/interactions/{iid}", params=params, headers=HEADERS, timeout=120
    )


def sse(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(
        e["delta"]["text"]
        for e in events
        if e["event_type"] == "step.delta" and e["delta"]["type"] == "text"
    )


def test_the_guides_conversation_with_each_turn_on_another_replica(cluster: Cluster) -> None:
    a, b, c = (client(server) for server in cluster.replicas)
    first = a.interactions.create(
        model=MODEL,
        system_instruction="You are a helpful assistant.",
        input="I have 2 dogs in my house.",
        generation_config={"max_output_tokens": 24},
    )
    second = b.interactions.create(
        model=MODEL,
        input="How many paws are in my house?",
        previous_interaction_id=first.id,
        generation_config={"max_output_tokens": 24},
    )
    assert second.status in {"completed", "incomplete"}  # stopped by max_output_tokens
    fetched = c.interactions.get(second.id)
    assert fetched.id == second.id
    assert fetched.status == second.status
    assert fetched.steps[-1].content[0].text == second.steps[-1].content[0].text
    chunks = list(
        c.interactions.create(
            model=MODEL,
            input="And how many tails?",
            previous_interaction_id=second.id,
            stream=True,
            generation_config={"max_output_tokens": 16},
        )
    )
    assert chunks[-1].event_type == "interaction.completed"
    third = chunks[-1].interaction.id
    assert a.interactions.get(third).previous_interaction_id == second.id


def test_an_upload_spread_over_replicas_is_one_file_any_replica_serves(cluster: Cluster) -> None:
    a, b, c = cluster.replicas
    data = bytes(range(256)) * 4096 * 3  # 3 MiB
    started = httpx.post(
        a.base_url + "/upload/v1beta/files",
        json={"file": {"display_name": "spread", "mime_type": "text/plain"}},
        headers={
            **HEADERS,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
            "X-Goog-Upload-Header-Content-Type": "text/plain",
        },
        timeout=60,
    )
    assert started.status_code == 200, started.text
    path = started.headers["x-goog-upload-url"].split("/upload/", 1)[1]
    third = len(data) // 3
    answers = []
    for i, server in enumerate((a, b, c)):
        last = i == 2
        chunk = data[i * third :] if last else data[i * third : (i + 1) * third]
        answers.append(
            httpx.post(
                f"{server.base_url}/upload/{path}",
                content=chunk,
                headers={
                    "X-Goog-Upload-Command": "upload, finalize" if last else "upload",
                    "X-Goog-Upload-Offset": str(i * third),
                },
                timeout=60,
            )
        )
    assert [r.status_code for r in answers] == [200, 200, 200], answers[-1].text
    file = answers[-1].json()["file"]
    assert file["sizeBytes"] == str(len(data))
    assert base64.b64decode(file["sha256Hash"]).hex() == hashlib.sha256(data).hexdigest()
    for server in (a, b):
        got = httpx.get(
            f"{server.base_url}/v1beta/{file['name']}:download",
            params={"alt": "media"},
            headers=HEADERS,
            timeout=60,
        )
        assert got.content == data


def test_a_replica_with_another_signing_key_refuses_to_start(cluster: Cluster) -> None:
    env = {**cluster.env, "GEMSERVE_THOUGHT_SIGNING_KEY": Fernet.generate_key().decode()}
    (cluster.root / "stranger").mkdir()
    with pytest.raises(RuntimeError, match="thought-signing key"):
        start_server(cluster.root / "stranger", env=env)


def test_a_stream_cut_on_one_replica_resumes_on_another(cluster: Cluster) -> None:
    a, b, c = cluster.replicas
    iid = post(a, "/v1beta/interactions", LONG).json()["id"]
    seen: list[dict[str, Any]] = []
    with httpx.stream(
        "GET",
        f"{a.base_url}/v1beta/interactions/{iid}",
        params={"stream": "true"},
        headers=HEADERS,
        timeout=120,
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                seen.append(orjson.loads(line[6:]))
                if sum(e["event_type"] == "step.delta" for e in seen) >= 5:
                    break
    rest = sse(get(b, iid, stream="true", last_event_id=seen[-1]["event_id"]).text)
    assert rest[-1]["event_type"] == "interaction.completed"
    ids = [e["event_id"] for e in seen + rest]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    whole = sse(get(c, iid, stream="true").text)
    assert text_of(seen) + text_of(rest) == text_of(whole)
    assert rest[-1] == whole[-1]
    assert [e for e in seen + rest if e["event_type"] != "step.delta"] == [
        e for e in whole if e["event_type"] != "step.delta"
    ]


def test_cancel_sent_to_another_replica_stops_the_generation(cluster: Cluster) -> None:
    a, b, _ = cluster.replicas
    iid = post(a, "/v1beta/interactions", LONG).json()["id"]
    deadline = time.monotonic() + 60
    while not get(a, iid).json()["steps"][-1].get("content"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = post(b, f"/v1beta/interactions/{iid}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert body["usage"]["total_output_tokens"] < 400
    assert get(a, iid).json()["status"] == "cancelled"
    again = post(b, f"/v1beta/interactions/{iid}/cancel")
    assert again.status_code == 400
    assert again.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_a_killed_replicas_interaction_is_failed_by_a_survivor(cluster: Cluster) -> None:
    a, b, _ = cluster.replicas
    iid = post(a, "/v1beta/interactions", LONG).json()["id"]
    deadline = time.monotonic() + 60
    while not get(b, iid).json()["steps"][-1].get("content"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(a.process.pid, signal.SIGKILL)
    a.process.wait()
    killed_at = time.monotonic()
    failed = wait_status(b, iid, {"failed"}, HEADERS)
    # Lease 3 s, renewed every second: declared lost within lease + one renewal (+ load).
    assert time.monotonic() - killed_at < 20
    assert "replica" in failed["errors"][0]["message"]
    events = sse(get(b, iid, stream="true").text)
    assert events[-2]["event_type"] == "error"
    assert events[-1]["event_type"] == "interaction.completed"
    assert events[-1]["interaction"]["status"] == "failed"
    restarted = cluster.restart(0)
    assert get(restarted, iid).json()["status"] == "failed"
    fresh = post(restarted, "/v1beta/interactions", {"model": MODEL, "input": "Hi"})
    assert fresh.status_code == 200, fresh.text
