"""Fail at start, loudly: a model that cannot decode its start-up batch stops `gemserve serve`
with a non-zero status and its reason in the log, and /readyz never answers 200 meanwhile."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gemserve.engine.llama.selfcheck import FAULT_ENV
from tests.support.server import free_port

# Each test starts `gemserve serve`, which loads the model before it fails as told.
pytestmark = pytest.mark.live


def serve_until_exit(tmp: Path, fault: str) -> tuple[int, str, list[int]]:
    """Run `gemserve serve` with a forced start-up fault; its exit status, its log, and every
    /readyz status seen while it ran."""
    port = free_port()
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gemserve", "serve", "--port", str(port),
                "--data-dir", str(tmp / "data"), "--log-level", "info",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=os.environ | {FAULT_ENV: fault},
        )  # fmt: skip
    seen: list[int] = []
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                seen.append(httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code)
            time.sleep(0.05)
        returncode = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return returncode, log_path.read_text(errors="replace"), seen


def test_a_failed_start_up_decode_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    returncode, log, seen = serve_until_exit(tmp_path, "error")
    assert returncode == 1, log
    assert f"model smollm2-135m-instruct failed to start: forced by {FAULT_ENV}=error" in log
    assert "gemserve: stopped: model smollm2-135m-instruct failed to start" in log
    assert seen, "the server never answered /readyz while it ran"
    assert 200 not in seen
    assert set(seen) == {503}


@pytest.mark.parametrize("name", ["SIGILL", "SIGSEGV"])
def test_a_native_crash_at_start_dies_by_its_signal_with_the_stacks(
    tmp_path: Path, name: str
) -> None:
    returncode, log, seen = serve_until_exit(tmp_path, name)
    assert returncode == -signal.Signals[name]
    assert "Fatal Python error: " in log
    assert "gemserve-native" in log or "native_thread.py" in log
    assert 200 not in seen


def test_the_log_at_info_has_gemserves_lines_and_one_for_the_schema(tmp_path: Path) -> None:
    _, log, _ = serve_until_exit(tmp_path, "error")
    assert "alembic" not in log
    assert log.count("database schema migrated from empty to") == 1
