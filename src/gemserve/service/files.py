"""The Files API: resumable uploads into the blob store, file metadata, expiry and quotas.

An upload is a session in the database plus a partial blob; its URL carries a random token
(the capability: chunk requests need no API key, as the SDKs send none) whose hash is the
session id. Bytes are hashed while they stream in; finalizing moves the blob into place and
turns the session into a file row in one transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import string
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gemserve.config import Limits
from gemserve.errors import (
    AlreadyExists,
    GemserveError,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    ResourceExhausted,
)
from gemserve.protocol.common import is_decimal_count
from gemserve.protocol.files import UploadStart, check_mime_type, file_id_from_name
from gemserve.service.clock import Clock, utc_now
from gemserve.service.paging import page_window
from gemserve.store.blobs import BlobStore, new_blob_key
from gemserve.store.files import FileRecord, FileStore, NameTaken, UploadGone, UploadRecord

log = logging.getLogger("gemserve.files")

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
# Bytes gathered before one write to disk (a chunk request streams in ~64 KiB pieces).
WRITE_BUFFER = 1 << 20
_NAME_ALPHABET = string.ascii_lowercase + string.digits


def _new_file_name() -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(16))


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


@dataclass(frozen=True)
class UploadOutcome:
    """What a chunk request achieved: more expected, or the finished file."""

    received: int
    file: FileRecord | None = None


class FileService:
    def __init__(
        self,
        files: FileStore,
        blobs: BlobStore,
        limits: Limits,
        *,
        ttl: timedelta = timedelta(hours=48),
        upload_timeout: timedelta = timedelta(hours=1),
        clock: Clock = utc_now,
    ) -> None:
        self._files = files
        self._blobs = blobs
        self._limits = limits
        self._ttl = ttl
        self._upload_timeout = upload_timeout
        self._clock = clock
        # Per upload session: a lock (one chunk at a time) and the running hash.
        self._locks: dict[str, asyncio.Lock] = {}
        self._hashes: dict[str, tuple[int, Any]] = {}
        # Per tenant, while a quota check and the write it allows run: without it, concurrent
        # uploads all see the same bytes held and together pass the quota.
        self._quota_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # ----- upload ----------------------------------------------------------------------------

    async def start_upload(
        self,
        tenant: str,
        body: Any,
        *,
        header_size: str | None,
        header_mime_type: str | None,
    ) -> str:
        """Open a session; returns the upload token to put in the upload URL."""
        meta = UploadStart.parse(body).file
        size = meta.size() if meta is not None else None
        if size is None and header_size is not None:
            if not is_decimal_count(header_size):
                raise InvalidArgument(
                    "Invalid value at 'X-Goog-Upload-Header-Content-Length': not a byte count."
                )
            size = int(header_size)
        mime = (meta.mime_type if meta is not None else None) or header_mime_type
        if not mime:
            raise InvalidArgument(
                "Missing required field 'file.mime_type' (or the X-Goog-Upload-Header-Content-Type "
                "header): the file's MIME type is required."
            )
        mime = check_mime_type(mime.split(";")[0].strip(), "file.mime_type")
        name = (
            file_id_from_name(meta.name, "file.name")
            if meta is not None and meta.name is not None
            else _new_file_name()
        )
        limit = self._limits.max_file_bytes
        if size is not None and size > limit:
            raise PayloadTooLarge(
                f"Invalid value at 'file.size_bytes': {size} bytes exceeds the per-file limit of "
                f"{limit} bytes ({_gb(limit)})."
            )
        now = self._clock()
        token = secrets.token_urlsafe(32)
        record = UploadRecord(
            id=_session_id(token),
            tenant=tenant,
            file_id=new_blob_key(),
            name=name,
            display_name=meta.display_name if meta is not None else None,
            mime_type=mime,
            declared_size=size,
            received=0,
            created_at=now,
            expires_at=now + self._upload_timeout,
        )
        try:
            async with self._quota_lock(tenant):
                await self._check_quota(tenant, size or 0, now)
                expired = await self._files.create_upload(record, now)
        except NameTaken:
            raise AlreadyExists(f"A file named 'files/{name}' already exists.") from None
        for key in expired:
            await self._blobs.delete(key)
        return token

    def _quota_lock(self, tenant: str) -> asyncio.Lock:
        lock = self._quota_locks.get(tenant)
        if lock is None:
            lock = self._quota_locks[tenant] = asyncio.Lock()
        return lock

    async def _check_quota(self, tenant: str, adding: int, now: datetime) -> None:
        held = await self._files.tenant_bytes(tenant, now)
        quota = self._limits.max_tenant_file_bytes
        if held + adding > quota:
            raise ResourceExhausted(
                f"The files of this project would take {held + adding} bytes; the quota is "
                f"{quota} bytes ({_gb(quota)}). Delete files or wait for them to expire.",
                retry_after=60,
            )

    async def _session(self, token: str) -> UploadRecord:
        session = await self._files.get_upload(_session_id(token), self._clock())
        if session is None:
            raise NotFound("The upload session was not found; it may have expired.")
        return session

    async def upload_status(self, token: str) -> int:
        """Bytes received so far (``X-Goog-Upload-Command: query``)."""
        session = await self._session(token)
        return await self._blobs.partial_size(session.file_id)

    async def cancel_upload(self, token: str) -> None:
        session = await self._session(token)
        await self._discard(session)

    async def upload_chunk(
        self, token: str, offset: int, chunks: AsyncIterator[bytes], *, finalize: bool
    ) -> UploadOutcome:
        """Append one chunk request's body at ``offset``; finalize if asked."""
        session = await self._session(token)
        lock = self._locks.setdefault(session.id, asyncio.Lock())
        async with lock:
            try:
                # Read again under the lock: a concurrent request (a retried final chunk)
                # may have finalized or cancelled the session meanwhile.
                session = await self._session(token)
                return await self._append(session, offset, chunks, finalize)
            finally:
                if finalize or session.id not in self._hashes:
                    self._locks.pop(session.id, None)

    async def _append(
        self, session: UploadRecord, offset: int, chunks: AsyncIterator[bytes], finalize: bool
    ) -> UploadOutcome:
        received, hasher = await self._running_hash(session)
        if offset != received:
            raise InvalidArgument(
                f"Invalid value at 'X-Goog-Upload-Offset': {offset}; the upload has received "
                f"{received} bytes, so the next chunk starts there."
            )
        limit = session.declared_size
        if limit is None or limit > self._limits.max_file_bytes:
            limit = self._limits.max_file_bytes
        buffer = bytearray()
        try:
            async for piece in chunks:
                size = received + len(buffer) + len(piece)
                if size > limit:
                    raise self._too_long(session, size)
                buffer += piece
                if len(buffer) >= WRITE_BUFFER:
                    received = await self._write(session, hasher, buffer)
                    buffer = bytearray()
            if buffer:
                received = await self._write(session, hasher, buffer)
        finally:
            self._hashes[session.id] = (received, hasher)
        now = self._clock()
        if not finalize:
            await self._files.advance_upload(session.id, received, now + self._upload_timeout)
            return UploadOutcome(received)
        return UploadOutcome(received, await self._finalize(session, received, hasher, now))

    async def _write(self, session: UploadRecord, hasher: Any, data: bytearray) -> int:
        size = await self._blobs.append(session.file_id, bytes(data))
        hasher.update(data)  # after the write, so the hash never covers bytes not on disk
        return size

    def _too_long(self, session: UploadRecord, size: int) -> GemserveError:
        if session.declared_size is not None and size > session.declared_size:
            return InvalidArgument(
                f"The upload sent more than the declared {session.declared_size} bytes."
            )
        limit = self._limits.max_file_bytes
        return PayloadTooLarge(
            f"The file exceeds the per-file limit of {limit} bytes ({_gb(limit)})."
        )

    async def _running_hash(self, session: UploadRecord) -> tuple[int, Any]:
        """The hash of what is on disk; rebuilt from the partial blob after a restart."""
        on_disk = await self._blobs.partial_size(session.file_id)
        known = self._hashes.get(session.id)
        if known is not None and known[0] == on_disk:
            return known
        hasher = hashlib.sha256()
        size = 0
        async for chunk in self._blobs.read_partial(session.file_id):
            hasher.update(chunk)
            size += len(chunk)
        return size, hasher

    async def _finalize(
        self, session: UploadRecord, received: int, hasher: Any, now: datetime
    ) -> FileRecord:
        self._hashes.pop(session.id, None)
        if session.declared_size is not None and received != session.declared_size:
            await self._discard(session)
            raise InvalidArgument(
                f"The upload was finalized after {received} bytes, but {session.declared_size} "
                "were declared."
            )
        # The check and the write it allows, as one step for this tenant (see _quota_locks).
        async with self._quota_lock(session.tenant):
            if session.declared_size is None:
                # Nothing was reserved at start: check the quota against what arrived (the
                # session counts with the bytes stored at its last chunk, replaced by all of them).
                held = await self._files.tenant_bytes(session.tenant, now) - session.received
                if held + received > self._limits.max_tenant_file_bytes:
                    await self._discard(session)
                    await self._check_quota(session.tenant, received, now)
            record = FileRecord(
                id=session.file_id,
                tenant=session.tenant,
                name=session.name,
                display_name=session.display_name,
                mime_type=session.mime_type,
                size_bytes=received,
                sha256=hasher.hexdigest(),
                state="ACTIVE",
                source="UPLOADED",
                created_at=now,
                updated_at=now,
                expires_at=now + self._ttl,
            )
            await self._blobs.commit(session.file_id)
            try:
                await self._files.complete_upload(session.id, record)
            except UploadGone:
                # Cancelled or expired while this chunk streamed (or, with several processes,
                # finalized by another): the blob is kept only if a file row owns it.
                owner = await self._files.get_file(session.tenant, session.name, now)
                if owner is None or owner.id != session.file_id:
                    await self._blobs.delete(session.file_id)
                raise NotFound("The upload session was not found; it may have expired.") from None
            except NameTaken:
                await self._blobs.delete(session.file_id)
                raise AlreadyExists(
                    f"A file named 'files/{session.name}' already exists."
                ) from None
        log.info("file %s stored (%d bytes)", record.id, received)
        return record

    async def _discard(self, session: UploadRecord) -> None:
        self._hashes.pop(session.id, None)
        self._locks.pop(session.id, None)
        await self._files.delete_upload(session.id)
        await self._blobs.discard_partial(session.file_id)

    # ----- files -----------------------------------------------------------------------------

    async def get(self, tenant: str, name: str) -> FileRecord:
        file_id = file_id_from_name(name)
        record = await self._files.get_file(tenant, file_id, self._clock())
        if record is None:
            raise NotFound(f"File 'files/{file_id}' was not found.")
        return record

    async def list(
        self, tenant: str, page_size: str | None, page_token: str | None
    ) -> tuple[list[FileRecord], str | None]:
        offset, size = page_window(page_size, page_token, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = await self._files.list_files(tenant, self._clock(), offset, size + 1)
        next_token = str(offset + size) if len(page) > size else None
        return page[:size], next_token

    async def delete(self, tenant: str, name: str) -> None:
        file_id = file_id_from_name(name)
        record = await self._files.delete_file(tenant, file_id)
        if record is not None:
            await self._blobs.delete(record.id)
        if record is None or record.expires_at <= self._clock():
            raise NotFound(f"File 'files/{file_id}' was not found.")

    def content(self, record: FileRecord) -> AsyncIterator[bytes]:
        return self._blobs.read(record.id)

    def local_path(self, record: FileRecord) -> Path:
        """Where decoders read the file (a path of the server's own making)."""
        return self._blobs.path(record.id)

    # ----- sweeping --------------------------------------------------------------------------

    async def sweep(self, batch: int = 500) -> int:
        """Delete expired files (blob and row) and abandoned uploads; returns how many."""
        now = self._clock()
        removed = 0
        while expired := await self._files.delete_expired_files(now, batch):
            for key in expired:
                await self._blobs.delete(key)
            removed += len(expired)
            if len(expired) < batch:
                break
        while abandoned := await self._files.expired_uploads(now, batch):
            for session in abandoned:
                await self._discard(session)
            removed += len(abandoned)
            if len(abandoned) < batch:
                break
        return removed

    async def collect_orphans(self) -> int:
        """At start: delete blobs without a row and partial blobs without a session."""
        known = await self._files.all_file_ids()
        orphans = (await self._blobs.keys()) - known
        for key in orphans:
            await self._blobs.delete(key)
        pending = await self._files.pending_file_ids()
        stale = (await self._blobs.partial_keys()) - pending
        for key in stale:
            await self._blobs.discard_partial(key)
        return len(orphans) + len(stale)


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
