"""``LocalBlobStore``: blobs as files under one private folder (``data_dir/files``).

``blobs/<id>`` is the file ``<root>/blobs/<id>``. A write goes to a temp file in
``<root>/tmp`` (same file system), is flushed to disk and renamed into place, so a blob that
exists is complete. File I/O runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import anyio

from gemserve.store.blobs.base import READ_CHUNK, BlobInfo, BlobNotFound, checked_key

# Bytes gathered before one write (a chunk request streams in ~64 KiB pieces).
WRITE_BUFFER = 1 << 20
# Temp files older than this are a crashed writer's (a live one writes every moment).
STALE_TEMP_SECONDS = 24 * 3600


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._tmp = root / "tmp"

    def start(self) -> None:
        for directory in (self._root / "blobs", self._root / "partial", self._tmp):
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        cutoff = time.time() - STALE_TEMP_SECONDS
        for leftover in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def _path(self, key: str) -> Path:
        return self._root / checked_key(key)

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        target = self._path(key)
        fd, name = await anyio.to_thread.run_sync(
            lambda: tempfile.mkstemp(dir=self._tmp, prefix="write-")
        )
        temp = Path(name)
        fh = os.fdopen(fd, "wb")
        size = 0
        try:
            buffer = bytearray()
            async for piece in chunks:
                buffer += piece
                if len(buffer) >= WRITE_BUFFER:
                    await anyio.to_thread.run_sync(fh.write, buffer)
                    size += len(buffer)
                    buffer = bytearray()
            if buffer:
                await anyio.to_thread.run_sync(fh.write, buffer)
                size += len(buffer)
            await anyio.to_thread.run_sync(_commit, fh, temp, target)
        except BaseException:
            _discard(fh, temp)  # quick, and must run even when cancelled
            raise
        return size

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            fh = await anyio.to_thread.run_sync(path.open, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        try:
            if start:
                await anyio.to_thread.run_sync(fh.seek, start)
            left = None if end is None else max(0, end - start)
            while left is None or left > 0:
                want = READ_CHUNK if left is None else min(READ_CHUNK, left)
                chunk = await anyio.to_thread.run_sync(fh.read, want)
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            fh.close()

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    async def list(self, namespace: str) -> AsyncIterator[BlobInfo]:
        directory = self._root / namespace
        checked_key(namespace + "/x")  # a namespace, never a path
        for info in await anyio.to_thread.run_sync(_scan, directory, namespace):
            yield info

    @contextlib.asynccontextmanager
    async def local_file(self, key: str) -> AsyncIterator[Path]:
        path = self._path(key)
        if not await anyio.to_thread.run_sync(path.is_file):
            raise BlobNotFound(key)
        yield path


def _commit(fh: IO[bytes], temp: Path, target: Path) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
    if not target.parent.is_dir():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.replace(temp, target)


def _discard(fh: IO[bytes], temp: Path) -> None:
    fh.close()
    temp.unlink(missing_ok=True)


def _scan(directory: Path, namespace: str) -> list[BlobInfo]:
    found: list[BlobInfo] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return found
    for entry in entries:
        key = f"{namespace}/{entry.name}"
        try:
            checked_key(key)
            stat = entry.stat()
        except (ValueError, FileNotFoundError):
            continue
        if entry.is_file():
            found.append(BlobInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
    return found
