"""The BlobStore interface: whole objects written once from a stream, read whole or by range.

Keys are ``<namespace>/<name>``, both lower-case letters, digits and (in the name) dashes,
made by the server only (``new_blob_key`` and the file service's key helpers): nothing a
client sends ever becomes part of one, and no key can leave its namespace (no dots, no
third level). The file service uses ``blobs/<file id>`` for complete files and
``partial/<file id>-<offset>-<nonce>`` for the segments of an upload in progress.

A blob is visible complete or not at all: ``write`` consumes the whole stream first (a temp
file renamed into place, or one PUT, or a multipart upload completed at the end), and a
stream that raises leaves nothing behind (the temp file is removed, the multipart upload
aborted). Blobs are never modified, only replaced whole or deleted.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gemserve.errors import Unavailable

_KEY = re.compile(r"[a-z]{1,32}/[0-9a-z][0-9a-z-]{0,127}")
# S3 takes multipart parts of at least 5 MiB (all but the last); a blob up to one part is
# written with a single PUT. 8 MiB is also the SDKs' chunk size: a chunk request is one PUT.
PART_SIZE = 8 * 1024 * 1024
READ_CHUNK = 1 << 20


def new_blob_key() -> str:
    """A file id: 32 random hex digits (the name part of ``blobs/<id>``)."""
    return secrets.token_hex(16)


def checked_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError("invalid blob key")
    return key


class BlobNotFound(LookupError):
    """No blob has this key."""


class BlobStoreUnavailable(Unavailable):
    """The object store did not answer (refused, timed out, 5xx after its client's retries):
    a 503 with Retry-After on every surface, never a 500; nothing was kept by the write."""

    retry_after = 5

    def __init__(self) -> None:
        super().__init__("The object store is unavailable; nothing was stored. Retry shortly.")


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    modified: datetime  # aware, UTC: when the blob was written (its age decides orphans)


class BlobStore(Protocol):
    def start(self) -> None:
        """Prepare local state (private directories); no network I/O (the first listing,
        orphan collection at start, is what reaches a remote store first)."""

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the stream as blob ``key`` (replacing any), atomically; returns its size.
        An exception from the stream propagates after everything written is discarded."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` (``end`` None: to the end) in chunks; :class:`BlobNotFound`
        (from the first iteration) if there is no such blob."""

    async def delete(self, key: str) -> None:
        """Delete the blob; nothing happens if there is none."""

    def list(self, namespace: str) -> AsyncIterator[BlobInfo]:
        """Every blob of the namespace (``"blobs"``, ``"partial"``) with its size and age."""

    def local_file(self, key: str) -> AbstractAsyncContextManager[Path]:
        """A local file holding the blob, for decoders that read files, valid in the block
        (the blob itself on a local store; a private download from a remote one)."""
