"""File metadata and resumable upload sessions: records and the FileStore interface.

Blobs live in a :class:`~gemserve.store.blobs.BlobStore`; this is only what the database keeps.
Every backend passes the same acceptance suite as the interaction store (tests/store).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass
class FileRecord:
    id: str  # the blob key, made by the server
    tenant: str
    name: str  # the resource name without "files/"
    display_name: str | None
    mime_type: str
    size_bytes: int
    sha256: str  # hex digest
    state: str  # ACTIVE (uploads are complete when the row exists)
    source: str  # UPLOADED
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


@dataclass
class UploadRecord:
    id: str  # SHA-256 of the upload token (the token itself is never stored)
    tenant: str
    file_id: str  # the file's id to be (its blob: blobs/<file_id>)
    name: str
    display_name: str | None
    mime_type: str
    declared_size: int | None
    received: int
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Segment:
    """One accepted chunk of an upload: bytes ``[start, start + size)`` in blob ``key``."""

    start: int
    size: int
    key: str


class NameTaken(Exception):
    """A file or pending upload of this tenant already has the name."""


class UploadGone(Exception):
    """The upload session no longer exists (finalized, cancelled or expired meanwhile)."""


class QuotaExceeded(Exception):
    """The tenant's files would take ``total`` bytes, more than the quota; ``dropped``: the
    segment keys of a session deleted with the refusal (see ``enforce_quota``)."""

    def __init__(self, total: int, dropped: list[str] | None = None) -> None:
        super().__init__(total)
        self.total = total
        self.dropped = dropped or []


class FileStore(Protocol):
    # --- upload sessions ---------------------------------------------------------------------

    async def create_upload(
        self, record: UploadRecord, now: datetime, quota: int | None = None
    ) -> list[str]:
        """Insert a session; raises :class:`NameTaken` if the name is in use by the tenant,
        and with a ``quota``, :class:`QuotaExceeded` if the tenant's bytes (``tenant_bytes``)
        plus the declared size would pass it. Check and insert are one step for the tenant
        across every process on the database (no two uploads pass the quota together).

        An expired file of the same name (not swept yet) is deleted: its blob key is returned.
        """

    async def get_upload(self, upload_id: str, now: datetime) -> UploadRecord | None:
        """The session, or None if missing or expired."""

    async def add_segment(self, upload_id: str, segment: Segment, expires_at: datetime) -> bool:
        """Accept a chunk: if the session has received exactly ``segment.start`` bytes, record
        the segment, advance ``received`` past it and push the idle deadline back, atomically;
        False (nothing written) if another request got there first or the session is gone.
        A segment of no bytes only pushes the deadline back (nothing is recorded)."""

    async def segments(self, upload_id: str) -> list[Segment]:
        """The session's accepted segments, in offset order."""

    async def enforce_quota(self, upload_id: str, quota: int, now: datetime) -> None:
        """At the finalize of a session that declared no size (every byte of it received, so
        counted in ``tenant_bytes``): if the tenant's bytes pass the quota, delete the session
        in the same step and raise :class:`QuotaExceeded` with its segment keys. One step per
        tenant across processes, as in create_upload: of two such uploads that together pass
        the quota, the first checked fails and the second, counted without it, fits."""

    async def complete_upload(self, upload_id: str, file: FileRecord) -> None:
        """Delete the session (and its segment rows) and insert the file, atomically;
        :class:`UploadGone` if the session was already gone."""

    async def delete_upload(self, upload_id: str) -> list[str]:
        """Delete the session; returns the keys of its segments (the caller deletes them)."""

    async def expired_uploads(self, now: datetime, limit: int) -> list[UploadRecord]:
        """Sessions past their deadline (their segments are swept with them)."""

    async def pending_file_ids(self) -> set[str]:
        """File ids of every upload session (a finalize may be writing its blob)."""

    async def segment_keys(self) -> set[str]:
        """The blob key of every recorded segment, for collecting orphaned ones."""

    # --- files -------------------------------------------------------------------------------

    async def get_file(self, tenant: str, name: str, now: datetime) -> FileRecord | None:
        """The tenant's file, or None if missing, foreign or expired."""

    async def list_files(
        self, tenant: str, now: datetime, offset: int, limit: int
    ) -> list[FileRecord]:
        """The tenant's live files, newest first."""

    async def delete_file(self, tenant: str, name: str) -> FileRecord | None:
        """Delete the row and return it (the caller deletes the blob), or None if missing."""

    async def tenant_bytes(self, tenant: str, now: datetime) -> int:
        """Bytes held by the tenant: live files plus the declared size of pending uploads."""

    async def delete_expired_files(self, now: datetime, limit: int) -> list[str]:
        """Delete expired rows; returns their blob keys."""

    async def all_file_ids(self) -> set[str]:
        """Every blob key with a row, for collecting orphaned blobs after a crash."""
