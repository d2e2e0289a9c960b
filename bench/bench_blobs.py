"""Files in object storage: upload throughput through FileService, S3 (moto) against the
local folder.

A ``--size-mb`` file (64 MiB) is uploaded in ``--chunk-mb`` chunks (8 MiB, the SDKs' size), each
chunk streamed in 64 KiB pieces as a request body arrives, then finalized, exactly as the
upload endpoint drives FileService. Two blob stores take turns, repetition by repetition
(interleaved, so drift on a shared machine hits both): the local folder (temp file, fsync,
rename per chunk; finalize copies the segments into the file while hashing) and an S3 bucket on
moto's S3 server (``moto_server``, a separate process on loopback: one PUT per 8 MiB chunk;
finalize reads the segments back and writes the file as a multipart upload, hashing as it
goes). Both on an SQLite database in a temp dir, so only the blob store differs.

Printed per store: MB/s of the whole upload (chunks + finalize), and the time of the chunk
phase and of finalize; the ratio S3/local; and what SHA-256 of the file costs alone (the
share of finalize an in-memory running hash could save).

moto is a Python emulator sharing this machine's cores, not an S3 service: the figures bound
gemserve's own overhead, not a deployment's throughput.

Usage: .venv/bin/python bench/bench_blobs.py [--size-mb 64] [--chunk-mb 8] [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common import md_table, median, print_preamble, ratio

from gemserve.config import Limits, Settings
from gemserve.service.files import FileService
from gemserve.store import SqlStore
from gemserve.store.blobs import BlobStore, LocalBlobStore
from gemserve.store.blobs.s3 import S3BlobStore
from gemserve.store.sql_files import SqlFileStore

MIB = 1024 * 1024
PIECE = 64 * 1024  # what one read of a request body gives


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 in a process of its own on loopback; its endpoint."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


async def pieces(data: memoryview) -> AsyncIterator[bytes]:
    for i in range(0, len(data), PIECE):
        yield bytes(data[i : i + PIECE])


async def upload(files: FileService, data: bytes, chunk: int) -> tuple[float, float]:
    """Seconds of the chunk phase and of finalize."""
    view = memoryview(data)
    token = await files.start_upload(
        "bench",
        {"file": {"mime_type": "application/octet-stream"}},
        header_size=str(len(data)),
        header_mime_type=None,
    )
    began = time.perf_counter()
    offset = 0
    while len(data) - offset > chunk:
        await files.upload_chunk(
            token, offset, pieces(view[offset : offset + chunk]), finalize=False
        )
        offset += chunk
    chunks_done = time.perf_counter()
    outcome = await files.upload_chunk(token, offset, pieces(view[offset:]), finalize=True)
    finished = time.perf_counter()
    assert outcome.file is not None
    assert outcome.file.size_bytes == len(data)
    assert outcome.file.sha256 == hashlib.sha256(data).hexdigest()
    await files.delete("bench", outcome.file.name)
    return chunks_done - began, finished - chunks_done


async def run(args: argparse.Namespace) -> None:
    data = os.urandom(args.size_mb * MIB)
    chunk = args.chunk_mb * MIB
    limits = Limits(max_file_bytes=len(data) * 2, max_tenant_file_bytes=len(data) * 4)
    with tempfile.TemporaryDirectory() as tmp, moto_server() as endpoint:
        root = Path(tmp)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket="bench")
        store = SqlStore(f"sqlite+aiosqlite:///{root / 'bench.db'}")
        await store.start()
        stores: dict[str, BlobStore] = {
            "local": LocalBlobStore(root / "files"),
            "s3": S3BlobStore.from_settings(
                Settings(
                    data_dir=root,
                    blob_url="s3://bench/files",
                    s3_endpoint=endpoint,
                    s3_region="us-east-1",
                )
            ),
        }
        services = {}
        for name, blobs in stores.items():
            blobs.start()
            services[name] = FileService(SqlFileStore(store), blobs, limits)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in services}
        for files in services.values():  # warm-up, not counted
            await upload(files, data[: 2 * chunk + 1], chunk)
        for rep in range(args.reps):
            order = list(services) if rep % 2 == 0 else list(reversed(services))
            for name in order:
                times[name].append(await upload(services[name], data, chunk))
        hashing = []
        for _ in range(3):
            began = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            hashing.append(time.perf_counter() - began)
        await store.close()

    size_mb = len(data) / 1e6
    rows = []
    speed = {}
    for name, runs in times.items():
        totals = [c + f for c, f in runs]
        speed[name] = size_mb / median(totals)
        rows.append(
            [
                name,
                f"{speed[name]:.1f}",
                f"{size_mb / max(totals):.1f}-{size_mb / min(totals):.1f}",
                f"{median([c for c, _ in runs]) * 1000:.0f}",
                f"{median([f for _, f in runs]) * 1000:.0f}",
            ]
        )
    print(
        md_table(
            ["store", "MB/s (median)", "MB/s (range)", "chunks ms", "finalize ms"],
            rows,
        )
    )
    print(f"\nS3 (moto) / local: {ratio(speed['s3'], speed['local']):.2f}x")
    print(
        f"SHA-256 of the {args.size_mb} MiB alone: {median(hashing) * 1000:.0f} ms "
        "(what a running hash kept in memory could take off finalize)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--chunk-mb", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print_preamble("bench_blobs: upload throughput, S3 (moto) against the local folder")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
