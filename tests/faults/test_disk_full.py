"""A full disk during an upload: the data directory on an 8 MiB tmpfs (this needs root and
mount(2); without them the test fails rather than pretend). An upload larger than the space
is refused in the Google envelope with 507 (RESOURCE_EXHAUSTED, Retry-After), no partial
blob stays on disk, and a normal interaction keeps working."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.faults import HEADERS, body
from tests.support.server import start_server, stop_server

pytestmark = pytest.mark.live

SIZE = 8 * 2**20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs (needs root): {done.stderr}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False, capture_output=True)


def used(directory: Path, skip: tuple[str, ...] = ("gemserve.db",)) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            if not name.startswith(skip):
                total += (Path(root) / name).stat().st_size
    return total


def upload(base_url: str, data: bytes) -> httpx.Response:
    start = httpx.post(
        base_url + "/upload/v1beta/files",
        json={"file": {"display_name": "big.txt", "mime_type": "text/plain"}},
        headers={
            **HEADERS,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
            "X-Goog-Upload-Header-Content-Type": "text/plain",
        },
        timeout=60,
    )
    assert start.status_code == 200, start.text
    return httpx.post(
        start.headers["x-goog-upload-url"],
        content=data,
        headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
        timeout=120,
    )


def test_an_upload_larger_than_the_disk_is_507_and_leaves_nothing(small_disk: Path) -> None:
    server = start_server(small_disk.parent, "--log-level", "warning")
    try:
        small = upload(server.base_url, b"fits on the disk\n" * 100)
        assert small.status_code == 200, small.text
        before = used(small_disk)
        response = upload(server.base_url, b"x" * (SIZE + 2 * 2**20))
        assert response.status_code == 507, response.text
        error = response.json()["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED"
        assert "storage is full" in error["message"]
        assert "retry-after" in response.headers
        assert used(small_disk) <= before, sorted(p.name for p in small_disk.rglob("*"))
        # The server goes on: a normal interaction, the small file, a new small upload.
        turn = httpx.post(
            server.base_url + "/v1beta/interactions", json=body(4), headers=HEADERS, timeout=60
        )
        assert turn.status_code == 200, turn.text
        name = small.json()["file"]["name"]
        got = httpx.get(f"{server.base_url}/v1beta/{name}", headers=HEADERS, timeout=30)
        assert got.status_code == 200, got.text
        assert upload(server.base_url, b"again\n").status_code == 200
    finally:
        stop_server(server)
