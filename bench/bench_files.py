"""Files API uploads: throughput on loopback and the server's memory while a big file arrives.

One gemserve process receives a ``--size-mb`` file (1 GB by default) through the resumable
protocol exactly as the SDKs send it (8 MiB chunks, ``upload`` then ``upload, finalize``),
twice: from a minimal httpx client and from the official Python SDK
(``client.files.upload`` of a file on disk). The server's RSS is sampled every 50 ms during
each upload. The baseline ("raw") is what the same disk and hash cost without HTTP: writing
the same bytes to a file in 1 MiB writes while computing their SHA-256, as the server does.
No peer serves the Files API (llama-server, llama-cpp-python's server), so there is none to
compare with.

Usage: .venv/bin/python bench/bench_files.py [--size-mb 1024] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    API_KEY,
    gemserve_server,
    md_table,
    print_preamble,
    ratio,
    rss_bytes,
)

CHUNK = 8 * 1024 * 1024  # the SDKs' chunk size
MIB = 1024 * 1024


class RssSampler:
    """Peak RSS of a process while the ``with`` block runs."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self._pid))
            time.sleep(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def pattern(size: int) -> Iterator[bytes]:
    """``size`` bytes in 8 MiB chunks of random data (one random block, reused)."""
    block = secrets.token_bytes(CHUNK)
    left = size
    while left > 0:
        take = min(CHUNK, left)
        yield block[:take]
        left -= take


def upload_raw_http(base_url: str, size: int) -> float:
    """The resumable protocol as the SDKs speak it; returns seconds for the whole upload."""
    headers = {"x-goog-api-key": API_KEY}
    start = time.perf_counter()
    with httpx.Client(timeout=600) as client:
        opened = client.post(
            f"{base_url}/upload/v1beta/files",
            headers={
                **headers,
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": str(size),
                "X-Goog-Upload-Header-Content-Type": "application/octet-stream",
            },
            json={"file": {"display_name": "bench"}},
        )
        opened.raise_for_status()
        url = opened.headers["x-goog-upload-url"]
        offset = 0
        for chunk in pattern(size):
            last = offset + len(chunk) >= size
            response = client.post(
                url,
                content=chunk,
                headers={
                    "X-Goog-Upload-Command": "upload, finalize" if last else "upload",
                    "X-Goog-Upload-Offset": str(offset),
                    "Content-Type": "application/json",
                },
            )
            response.raise_for_status()
            offset += len(chunk)
        name = response.json()["file"]["name"]
        client.delete(f"{base_url}/v1beta/{name}", headers=headers).raise_for_status()
    return time.perf_counter() - start


def upload_sdk(base_url: str, path: Path) -> float:
    from google import genai

    start = time.perf_counter()
    with genai.Client(api_key=API_KEY, http_options={"base_url": base_url}) as client:
        uploaded = client.files.upload(file=path, config={"mime_type": "application/octet-stream"})
        elapsed = time.perf_counter() - start
        assert uploaded.name is not None
        client.files.delete(name=uploaded.name)
    return elapsed


def write_raw(directory: Path, size: int) -> float:
    """The disk and hash work alone: 1 MiB writes plus SHA-256, no HTTP."""
    target = directory / "raw.bin"
    hasher = hashlib.sha256()
    start = time.perf_counter()
    with target.open("wb") as fh:
        for chunk in pattern(size):
            for offset in range(0, len(chunk), MIB):
                piece = chunk[offset : offset + MIB]
                fh.write(piece)
                hasher.update(piece)
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="a 128 MiB file")
    args = parser.parse_args()
    size = (128 if args.quick else args.size_mb) * MIB
    print_preamble(f"Files API: a {size // MIB} MiB upload on loopback")
    with tempfile.TemporaryDirectory(prefix="gemserve-bench-files-") as tmp:
        work = Path(tmp)
        sdk_file = work / "upload.bin"
        with sdk_file.open("wb") as fh:
            for chunk in pattern(size):
                fh.write(chunk)
        raw_s = write_raw(work, size)
        rows = []
        with gemserve_server(slots=1, threads=2) as server:
            time.sleep(2)
            idle = rss_bytes(server.pid)
            for name, run in (
                ("gemserve, httpx client", lambda: upload_raw_http(server.base_url, size)),
                ("gemserve, google-genai SDK", lambda: upload_sdk(server.base_url, sdk_file)),
            ):
                with RssSampler(server.pid) as sampler:
                    seconds = run()
                mbps = size / MIB / seconds
                rows.append(
                    [
                        name,
                        f"{mbps:.0f}",
                        f"{ratio(mbps, size / MIB / raw_s):.2f}",
                        f"{idle / MIB:.0f}",
                        f"{sampler.peak / MIB:.0f}",
                        f"{(sampler.peak - idle) / MIB:+.0f}",
                    ]
                )
                print(f"{name}: {mbps:.0f} MiB/s", file=sys.stderr, flush=True)
        rows.append(["raw: disk writes + SHA-256", f"{size / MIB / raw_s:.0f}", "1.00", "", "", ""])
        os.sync()
    print(
        md_table(
            [
                "path",
                "MiB/s",
                "vs raw",
                "server RSS idle MiB",
                "server RSS peak MiB",
                "growth MiB",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
