"""A client that opens a streamed interaction and never reads a byte: the answer is generated
in full and stored regardless (the socket's buffers fill, the server's do not grow), the
server's RSS stays within 50 MiB of where it started, and the stream ends or is dropped."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.faults import HEADERS, TERMINAL
from tests.support.server import start_server, stop_server

pytestmark = pytest.mark.live

RSS_BOUND = 50 * 2**20


def test_a_stream_nobody_reads_keeps_memory_bounded(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--log-level", "warning")
    process = psutil.Process(server.process.pid)
    try:
        warm = httpx.post(
            server.base_url + "/v1beta/interactions",
            json={"model": "gemini-3-flash-preview", "input": "Hi"},
            headers=HEADERS,
            timeout=60,
        )
        assert warm.status_code == 200
        start_rss = process.memory_info().rss
        payload = json.dumps(
            {
                "model": "gemini-3-flash-preview",
                "input": "Write a very long story about a lighthouse keeper.",
                "stream": True,
                "generation_config": {"max_output_tokens": 400, "temperature": 0},
            }
        ).encode()
        host, port = server.base_url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.sendall(
            b"POST /v1beta/interactions?alt=sse HTTP/1.1\r\nHost: x\r\n"
            b"x-goog-api-key: " + HEADERS["x-goog-api-key"].encode() + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        peak = start_rss
        status = None
        deadline = time.monotonic() + 240
        with httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=30) as http:
            while time.monotonic() < deadline:
                peak = max(peak, process.memory_info().rss)
                listed = http.get("/v1beta/interactions").json().get("interactions", [])
                mine = [i for i in listed if i["id"] != warm.json()["id"]]
                if mine:
                    status = http.get(f"/v1beta/interactions/{mine[0]['id']}").json()["status"]
                    if status in TERMINAL:
                        break
                time.sleep(0.5)
        assert status in TERMINAL, status
        assert peak - start_rss < RSS_BOUND, (start_rss, peak)
        sock.close()
        # The server is still fine.
        again = httpx.get(server.base_url + "/healthz", timeout=10)
        assert again.status_code == 200
    finally:
        stop_server(server)
