"""Waiting for, and stopping, a real upstream server process of the remote-engine tests
(llama-server, llama-cpp-python's server): the same loop for both."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_ready(
    process: subprocess.Popen[bytes],
    url: str,
    name: str,
    log: Callable[[], str],
    timeout: float,
) -> None:
    """Until ``url`` answers 200; fails with the log's text if the process exits or the time
    runs out (then killing it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{name} did not start:\n{log()}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
