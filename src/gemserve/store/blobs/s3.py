"""``S3BlobStore``: blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, …) through
``obstore`` (Rust ``object_store``: async I/O of its own, nothing blocks the event loop).

A write of up to :data:`PART_SIZE` bytes (an SDK's 8 MiB chunk included) is one PUT of the
buffered bytes; a longer one is a multipart upload of ``PART_SIZE`` parts (S3 wants ≥ 5 MiB,
the last excepted), completed when the stream ends and aborted if it raises, so a key holds
a whole blob or nothing. Reads are ranged GETs of at most :data:`READ_WINDOW` bytes each, so
one request never outlives the client timeout however slowly the bytes are consumed.

Configuration: ``blob_url = "s3://bucket/prefix"``, ``s3_endpoint`` (another service than
AWS), ``s3_region``; credentials as the AWS tools take them (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, or instance and container roles). An
``http://`` endpoint is accepted on loopback, elsewhere only with ``s3_allow_http``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import obstore
from obstore.store import S3Store

from gemserve.hosts import is_loopback
from gemserve.store.blobs.base import (
    PART_SIZE,
    READ_CHUNK,
    BlobInfo,
    BlobNotFound,
    BlobStoreUnavailable,
    checked_key,
)

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

    from gemserve.config import Settings

READ_WINDOW = 16 * 1024 * 1024
# Parts of one multipart upload in flight at once.
PART_CONCURRENCY = 4
# One HTTP request's whole life (a 16 MiB window read by a client at 28 KB/s still fits).
REQUEST_TIMEOUT = timedelta(minutes=10)
STALE_SPOOL_SECONDS = 24 * 3600


class S3BlobStore:
    def __init__(self, store: S3Store, spool: Path) -> None:
        self._store = store
        self._spool = spool  # private downloads for decoders that read files

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        bucket, prefix = parse_blob_url(settings.blob_url)
        config: S3Config = {}
        client: ClientConfig = {
            "timeout": REQUEST_TIMEOUT,
            "connect_timeout": timedelta(seconds=10),
        }
        if settings.s3_endpoint:
            endpoint = urlsplit(settings.s3_endpoint)
            if endpoint.scheme == "http":
                if not (settings.s3_allow_http or is_loopback(endpoint.hostname or "")):
                    raise ValueError(
                        f"s3_endpoint {settings.s3_endpoint!r} is plain http off loopback; "
                        "set s3_allow_http to allow it"
                    )
                client["allow_http"] = True
            config["endpoint"] = settings.s3_endpoint
        if settings.s3_region:
            config["region"] = settings.s3_region
        store = S3Store(bucket, prefix=prefix, config=config, client_options=client)
        return cls(store, settings.data_dir / "files" / "spool")

    def start(self) -> None:
        self._spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._spool, 0o700)
        cutoff = time.time() - STALE_SPOOL_SECONDS
        for leftover in self._spool.iterdir():
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover)

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        checked_key(key)
        stream = aiter(chunks)
        head = bytearray()
        async for piece in stream:
            head += piece
            if len(head) > PART_SIZE:
                break
        else:
            with _outage_as_unavailable():
                await obstore.put_async(self._store, key, bytes(head), use_multipart=False)
            return len(head)
        size = len(head)

        async def parts() -> AsyncIterator[bytes]:
            nonlocal size
            yield bytes(head)
            head.clear()
            async for piece in stream:
                size += len(piece)
                yield piece

        with _outage_as_unavailable():
            await obstore.put_async(
                self._store,
                key,
                parts(),
                use_multipart=True,
                chunk_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            )
        return size

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        checked_key(key)
        position = start
        while True:
            stop = position + READ_WINDOW if end is None else min(end, position + READ_WINDOW)
            if stop <= position:
                return
            try:
                result = await obstore.get_async(
                    self._store, key, options={"range": (position, stop)}
                )
            except FileNotFoundError:
                raise BlobNotFound(key) from None
            except Exception as exc:
                # A range from the very end of the blob (an empty one included) is refused.
                if position == start and _unsatisfiable(exc) and await self._size(key) <= position:
                    return
                if _is_outage(exc):
                    raise BlobStoreUnavailable() from exc
                raise
            with _outage_as_unavailable():
                async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                    position += len(chunk)
                    yield chunk
            size = int(result.meta["size"])
            if position >= size or (end is not None and position >= end):
                return

    async def _size(self, key: str) -> int:
        try:
            with _outage_as_unavailable():
                meta = await obstore.head_async(self._store, key)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return int(meta["size"])

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError), _outage_as_unavailable():
            await obstore.delete_async(self._store, checked_key(key))

    async def list(self, namespace: str) -> AsyncIterator[BlobInfo]:
        checked_key(namespace + "/x")
        with _outage_as_unavailable():
            async for batch in obstore.list(self._store, prefix=namespace + "/", chunk_size=1000):
                for meta in batch:
                    key = meta["path"]
                    with contextlib.suppress(ValueError):
                        yield BlobInfo(checked_key(key), int(meta["size"]), meta["last_modified"])

    @contextlib.asynccontextmanager
    async def local_file(self, key: str) -> AsyncIterator[Path]:
        checked_key(key)
        directory = Path(await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(dir=self._spool)))
        try:
            # Named as the blob: decoders and caches key on the name (blobs are immutable).
            path = directory / key.rsplit("/", 1)[1]
            fh = await anyio.to_thread.run_sync(path.open, "wb")
            try:
                async for chunk in self.read(key):
                    await anyio.to_thread.run_sync(fh.write, chunk)
            finally:
                fh.close()
            yield path
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(directory, ignore_errors=True))


def parse_blob_url(url: str) -> tuple[str, str | None]:
    """``s3://bucket/prefix`` → bucket and prefix (None without one)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"blob_url {url!r} is not s3://bucket or s3://bucket/prefix")
    prefix = parts.path.strip("/")
    return parts.netloc, prefix or None


# What object_store writes when a request failed below S3's own answers (refused, reset,
# timed out, 5xx after its retries); a client error (403, 404, a bad bucket) is not an outage.
_OUTAGE_MARKS = ("HTTP error", "error sending request", "Server error", "timed out", "timeout")


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if not isinstance(exc, obstore.exceptions.BaseError):
        return False
    text = str(exc)
    return "Client error" not in text and any(mark in text for mark in _OUTAGE_MARKS)


@contextlib.contextmanager
def _outage_as_unavailable() -> Iterator[None]:
    """An outage of the object store becomes :class:`BlobStoreUnavailable` (a 503)."""
    try:
        yield
    except Exception as exc:
        if _is_outage(exc):
            raise BlobStoreUnavailable() from exc
        raise


def _unsatisfiable(exc: Any) -> bool:
    text = str(exc)
    return "416" in text or "Range Not Satisfiable" in text or "InvalidRange" in text
