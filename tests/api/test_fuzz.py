"""Schemathesis over /openapi.json against a server process (the real app over scripted
engines: this probes the HTTP layer, validation, the store and files, not generation): every
answer is a non-5xx in its surface's envelope, nothing hangs past the request timeout, and the
server is alive at the end. CI's short profile; bench/bench_fuzz.py runs >= 10,000 cases
against the real engine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.paths import ROOT
from tests.support.server import free_port

pytestmark = [pytest.mark.live]


@pytest.fixture
def scripted_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.scripted_server", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url, process
    process.terminate()
    process.wait(timeout=30)


def test_fuzzing_the_documented_api_finds_no_5xx_and_no_stray_envelope(
    scripted_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, process = scripted_server
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"), "run", url + "/openapi.json",
            "--checks", "not_a_server_error,error_envelope",
            "--mode", "all", "--max-examples", "8", "--request-timeout", "30",
            "--phases", "examples,fuzzing,stateful", "--seed", "20261128",
            "--header", "x-goog-api-key: fuzz", "--continue-on-failure", "--no-color",
        ],
        cwd=ROOT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.fuzz_checks"},
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated is not None
    assert int(generated.group(1)) >= 200, report
    assert process.poll() is None, "the server died"
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200
