"""A real ``gemserve serve`` process on a free loopback port (the live and contract tiers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> LiveServer:
    port = free_port()
    log_path = tmp / f"gemserve-{port}.log"
    cmd = [
        sys.executable, "-m", "gemserve", "serve",
        "--port", str(port), "--data-dir", str(tmp / "data"), *extra,
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    server = LiveServer(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gemserve exited early:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"gemserve did not become ready:\n{server.log()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def wait_status(
    server: LiveServer, iid: str, statuses: Collection[str], headers: dict[str, str]
) -> dict[str, Any]:
    """Poll ``GET /v1/interactions/{iid}`` until its status is one of ``statuses``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx.get(
            f"{server.base_url}/v1/interactions/{iid}", headers=headers, timeout=60
        ).json()
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{iid} never reached {statuses}")
