"""The Files API: resumable uploads into the blob store, file metadata, expiry and quotas.

An upload is a session in the database; its URL carries a random token (the capability: chunk
requests need no API key, as the SDKs send none) whose hash is the session id. Nothing about
an upload lives in a process, so replicas behind a load balancer take its requests in any
order: chunk 1 on one, chunk 2 on another, finalize on a third.

- A chunk request streams its bytes into a blob of its own, ``partial/<file id>-<offset>-
  <nonce>`` (one PUT, or a multipart upload when longer than a part), and only then asks the
  database to accept it: ``received`` moves from the chunk's offset to its end only if it is
  still that offset, and the segment is recorded in the same transaction. Of two replicas
  racing one offset (a retried chunk) exactly one wins; the other deletes its blob and answers
  the 400 a wrong offset gets. The nonce keeps the racers' blobs apart: with ``<offset>``
  alone, the loser would overwrite the winner's bytes and then delete them. A chunk is
  all-or-nothing: a request cut short stores nothing, and ``query`` (the database's
  ``received``) tells the client where to resume.
- Finalize reads the segments in order into one blob, ``blobs/<file id>`` (a multipart
  upload), hashing while it copies: the SHA-256 is exact whichever replicas took the chunks,
  and costs no extra read (the copy reads every byte anyway), so no replica keeps a running
  hash. The file row replaces the session in one transaction; the segments are deleted.
- The quota is checked with the write it allows under a per-tenant lock of the database
  (see SqlFileStore), so concurrent uploads on any replicas never pass it together: the
  declared size is reserved at start; an upload without one is checked at finalize.
- Blobs nobody owns (a crash between a blob and its row, a losing racer that died) are
  collected by age: only those older than ``orphan_age``, so a blob that another replica has
  just written and whose row is on its way is never taken for an orphan.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

from gemserve.config import Limits
from gemserve.errors import (
    AlreadyExists,
    GemserveError,
    Internal,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    ResourceExhausted,
)
from gemserve.protocol.common import is_decimal_count
from gemserve.protocol.files import UploadStart, check_mime_type, file_id_from_name
from gemserve.service.clock import Clock, utc_now
from gemserve.service.paging import page_window
from gemserve.store.blobs import BlobNotFound, BlobStore, new_blob_key
from gemserve.store.files import (
    FileRecord,
    FileStore,
    NameTaken,
    QuotaExceeded,
    Segment,
    UploadGone,
    UploadRecord,
)

log = logging.getLogger("gemserve.files")

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
_NAME_ALPHABET = string.ascii_lowercase + string.digits


def _new_file_name() -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(16))


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def blob_key(file_id: str) -> str:
    """The blob of a complete file."""
    return f"blobs/{file_id}"


def segment_key(file_id: str, offset: int) -> str:
    """A new blob for the chunk of ``file_id``'s upload starting at ``offset``."""
    return f"partial/{file_id}-{offset:020d}-{secrets.token_hex(8)}"


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
        orphan_age: timedelta | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._files = files
        self._blobs = blobs
        self._limits = limits
        self._ttl = ttl
        self._upload_timeout = upload_timeout
        # Far longer than any blob waits for its row (a finalize's copy, then one commit).
        self._orphan_age = upload_timeout if orphan_age is None else orphan_age
        self._clock = clock

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
            # The declared size is reserved (checked and inserted as one step, cluster-wide).
            expired = await self._files.create_upload(
                record, now, self._limits.max_tenant_file_bytes
            )
        except NameTaken:
            raise AlreadyExists(f"A file named 'files/{name}' already exists.") from None
        except QuotaExceeded as exc:
            raise self._over_quota(exc.total) from None
        for file_id in expired:
            await self._blobs.delete(blob_key(file_id))
        return token

    def _over_quota(self, total: int) -> ResourceExhausted:
        quota = self._limits.max_tenant_file_bytes
        return ResourceExhausted(
            f"The files of this project would take {total} bytes; the quota is "
            f"{quota} bytes ({_gb(quota)}). Delete files or wait for them to expire.",
            retry_after=60,
        )

    async def _session(self, token: str) -> UploadRecord:
        session = await self._files.get_upload(_session_id(token), self._clock())
        if session is None:
            raise NotFound("The upload session was not found; it may have expired.")
        return session

    async def upload_status(self, token: str) -> int:
        """Bytes received so far (``X-Goog-Upload-Command: query``): the database's count,
        the same on every replica."""
        return (await self._session(token)).received

    async def cancel_upload(self, token: str) -> None:
        session = await self._session(token)
        await self._discard(session)

    async def upload_chunk(
        self, token: str, offset: int, chunks: AsyncIterable[bytes], *, finalize: bool
    ) -> UploadOutcome:
        """Store one chunk request's body at ``offset``; finalize if asked."""
        session = await self._session(token)
        if offset != session.received:
            raise _wrong_offset(offset, session.received)
        received = await self._append(session, offset, chunks)
        if not finalize:
            return UploadOutcome(received)
        return UploadOutcome(received, await self._finalize(session, received))

    async def _append(
        self, session: UploadRecord, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        """The chunk as a segment blob, then accepted if ``received`` is still ``offset``."""
        limit = session.declared_size
        if limit is None or limit > self._limits.max_file_bytes:
            limit = self._limits.max_file_bytes
        stream = aiter(chunks)
        first = b""
        async for piece in stream:
            if piece:
                first = piece
                break
        deadline = self._clock() + self._upload_timeout
        if not first:  # no bytes: the offset is checked again and the deadline pushed back
            if not await self._files.add_segment(session.id, Segment(offset, 0, ""), deadline):
                raise await self._lost(session, offset)
            return offset

        async def limited() -> AsyncIterator[bytes]:
            size = 0
            async for piece in _prepend(first, stream):
                size += len(piece)
                if offset + size > limit:
                    raise self._too_long(session, offset + size)
                yield piece

        key = segment_key(session.file_id, offset)
        size = await self._blobs.write(key, limited())
        deadline = self._clock() + self._upload_timeout
        if not await self._files.add_segment(session.id, Segment(offset, size, key), deadline):
            await self._blobs.delete(key)
            raise await self._lost(session, offset)
        return offset + size

    async def _lost(self, session: UploadRecord, offset: int) -> GemserveError:
        """Why a chunk at ``offset`` was not accepted: another request took the offset first
        (a retried chunk), or the session ended meanwhile."""
        current = await self._files.get_upload(session.id, self._clock())
        if current is None:
            return NotFound("The upload session was not found; it may have expired.")
        return _wrong_offset(offset, current.received)

    def _too_long(self, session: UploadRecord, size: int) -> GemserveError:
        if session.declared_size is not None and size > session.declared_size:
            return InvalidArgument(
                f"The upload sent more than the declared {session.declared_size} bytes."
            )
        limit = self._limits.max_file_bytes
        return PayloadTooLarge(
            f"The file exceeds the per-file limit of {limit} bytes ({_gb(limit)})."
        )

    async def _finalize(self, session: UploadRecord, received: int) -> FileRecord:
        if session.declared_size is not None and received != session.declared_size:
            await self._discard(session)
            raise InvalidArgument(
                f"The upload was finalized after {received} bytes, but {session.declared_size} "
                "were declared."
            )
        if session.declared_size is None:
            # Nothing was reserved at start. Every byte is in by now and counted with the
            # session (as the file will be): check before copying, the session deleted with
            # a refusal, cluster-wide in one step.
            try:
                await self._files.enforce_quota(
                    session.id, self._limits.max_tenant_file_bytes, self._clock()
                )
            except QuotaExceeded as exc:
                for key in exc.dropped:
                    await self._blobs.delete(key)
                raise self._over_quota(exc.total) from None
        chain = await self._chain(session, received)
        hasher = hashlib.sha256()

        async def composed() -> AsyncIterator[bytes]:
            for segment in chain:
                async for chunk in self._blobs.read(segment.key, 0, segment.size):
                    # hashlib lets go of the GIL: the loop serves others meanwhile.
                    await anyio.to_thread.run_sync(hasher.update, chunk)
                    yield chunk

        target = blob_key(session.file_id)
        try:
            written = await self._blobs.write(target, composed())
        except BlobNotFound:
            # A segment went: the session was cancelled, swept, or finalized by a duplicate
            # request meanwhile. This copy wrote nothing.
            raise NotFound("The upload session was not found; it may have expired.") from None
        if written != received:
            await self._blobs.delete(target)
            raise Internal(f"upload {session.file_id}: {written} bytes composed, not {received}")
        now = self._clock()
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
        try:
            await self._files.complete_upload(session.id, record)
        except UploadGone:
            # Cancelled or expired while this chunk streamed (or finalized by a duplicate
            # request): the blob is kept only if a file row owns it.
            owner = await self._files.get_file(session.tenant, session.name, now)
            if owner is None or owner.id != session.file_id:
                await self._blobs.delete(target)
            raise NotFound("The upload session was not found; it may have expired.") from None
        except NameTaken:
            # The session expired while its last chunk streamed and another upload took the
            # name: this one can never finish.
            await self._blobs.delete(target)
            await self._discard(session)
            raise AlreadyExists(f"A file named 'files/{session.name}' already exists.") from None
        for segment in chain:
            await self._blobs.delete(segment.key)
        log.info("file %s stored (%d bytes)", record.id, received)
        return record

    async def _chain(self, session: UploadRecord, received: int) -> list[Segment]:
        """The accepted segments covering ``[0, received)``, checked to follow each other."""
        chain: list[Segment] = []
        position = 0
        for segment in await self._files.segments(session.id):
            if segment.start >= received:
                break  # a chunk accepted after this finalize's own (a confused client)
            if segment.start != position:
                break
            chain.append(segment)
            position += segment.size
        if position == received:
            return chain
        if await self._files.get_upload(session.id, self._clock()) is None:
            # Finalized by a duplicate request (or cancelled) since this one's chunk.
            raise NotFound("The upload session was not found; it may have expired.")
        raise Internal(f"upload {session.file_id}: {position} of {received} bytes stored in order")

    async def _discard(self, session: UploadRecord) -> None:
        for key in await self._files.delete_upload(session.id):
            await self._blobs.delete(key)

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
            await self._blobs.delete(blob_key(record.id))
        if record is None or record.expires_at <= self._clock():
            raise NotFound(f"File 'files/{file_id}' was not found.")

    def content(self, record: FileRecord) -> AsyncIterator[bytes]:
        return self._blobs.read(blob_key(record.id))

    def local_file(self, record: FileRecord) -> AbstractAsyncContextManager[Path]:
        """A local file of the record's bytes for decoders (named by the file's id), valid
        inside the block: the blob itself on a local store, a private download otherwise."""
        return self._blobs.local_file(blob_key(record.id))

    # ----- sweeping --------------------------------------------------------------------------

    async def sweep(self, batch: int = 500) -> int:
        """Delete expired files (blob and row) and abandoned uploads; returns how many."""
        now = self._clock()
        removed = 0
        while expired := await self._files.delete_expired_files(now, batch):
            for file_id in expired:
                await self._blobs.delete(blob_key(file_id))
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
        """Delete blobs that no row owns, once older than ``orphan_age``: complete blobs without
        a file row or a session (a crash between blob and row), segments no session recorded
        (a racer that lost and died, a crash before acceptance). Ages are the store's own
        (its clock wrote them), compared with the real time. Safe on every replica at once."""
        cutoff = utc_now() - self._orphan_age
        complete = [info async for info in self._blobs.list("blobs") if info.modified < cutoff]
        partial = [info async for info in self._blobs.list("partial") if info.modified < cutoff]
        # Read after listing: a row written meanwhile is seen (and rows never come back).
        owned = {blob_key(i) for i in await self._files.all_file_ids()}
        owned |= {blob_key(i) for i in await self._files.pending_file_ids()}
        owned |= await self._files.segment_keys()
        removed = 0
        for info in [*complete, *partial]:
            if info.key not in owned:
                await self._blobs.delete(info.key)
                removed += 1
        return removed


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for piece in rest:
        yield piece


def _wrong_offset(offset: int, received: int) -> InvalidArgument:
    return InvalidArgument(
        f"Invalid value at 'X-Goog-Upload-Offset': {offset}; the upload has received "
        f"{received} bytes, so the next chunk starts there."
    )


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
