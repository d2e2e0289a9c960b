"""Blob storage for uploaded files: a local directory, keyed only by server-made names.

Uploads are written to ``partial/<key>`` and moved to ``blobs/<key>`` when finalized, so a
blob that exists is complete. Keys are random hex made here; nothing a client sends ever
becomes part of a path. File I/O runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import anyio

_KEY = re.compile(r"^[0-9a-f]{32}$")
READ_CHUNK = 1 << 20


def new_blob_key() -> str:
    return secrets.token_hex(16)


class BlobStore(Protocol):
    async def append(self, key: str, data: bytes) -> int:
        """Append to the partial blob ``key``; returns its size afterwards."""

    async def partial_size(self, key: str) -> int:
        """Bytes in the partial blob (0 if none)."""

    def read_partial(self, key: str) -> AsyncIterator[bytes]:
        """The partial blob's bytes, in chunks (to rebuild a hash after a restart)."""

    async def commit(self, key: str) -> None:
        """Make the partial blob ``key`` a complete one."""

    async def discard_partial(self, key: str) -> None: ...

    def path(self, key: str) -> Path:
        """A local path of the complete blob, for decoders that read files."""

    def read(self, key: str) -> AsyncIterator[bytes]: ...

    async def delete(self, key: str) -> None: ...

    async def keys(self) -> set[str]:
        """Complete blobs on disk."""

    async def partial_keys(self) -> set[str]: ...


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self._blobs = root / "blobs"
        self._partial = root / "partial"

    def start(self) -> None:
        for directory in (self._blobs, self._partial):
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o700)

    @staticmethod
    def _checked(key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError("invalid blob key")
        return key

    def _partial_path(self, key: str) -> Path:
        return self._partial / self._checked(key)

    def path(self, key: str) -> Path:
        return self._blobs / self._checked(key)

    async def append(self, key: str, data: bytes) -> int:
        target = self._partial_path(key)

        def write() -> int:
            with target.open("ab") as fh:
                fh.write(data)
                return fh.tell()

        return await anyio.to_thread.run_sync(write)

    async def partial_size(self, key: str) -> int:
        target = self._partial_path(key)

        def size() -> int:
            try:
                return target.stat().st_size
            except FileNotFoundError:
                return 0

        return await anyio.to_thread.run_sync(size)

    async def read_partial(self, key: str) -> AsyncIterator[bytes]:
        path = self._partial_path(key)
        if await anyio.to_thread.run_sync(path.exists):
            async for chunk in _read_file(path):
                yield chunk

    async def commit(self, key: str) -> None:
        source, target = self._partial_path(key), self.path(key)

        def move() -> None:
            if not source.exists():
                source.touch()  # an empty upload
            os.replace(source, target)

        await anyio.to_thread.run_sync(move)

    async def discard_partial(self, key: str) -> None:
        await anyio.to_thread.run_sync(lambda: self._partial_path(key).unlink(missing_ok=True))

    async def read(self, key: str) -> AsyncIterator[bytes]:
        async for chunk in _read_file(self.path(key)):
            yield chunk

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(lambda: self.path(key).unlink(missing_ok=True))

    async def keys(self) -> set[str]:
        return await anyio.to_thread.run_sync(_list_keys, self._blobs)

    async def partial_keys(self) -> set[str]:
        return await anyio.to_thread.run_sync(_list_keys, self._partial)


def _list_keys(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if _KEY.fullmatch(p.name)}


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    fh = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        while chunk := await anyio.to_thread.run_sync(fh.read, READ_CHUNK):
            yield chunk
    finally:
        fh.close()
