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
    file_id: str  # the blob key of the file to be; the partial blob is kept under it
    name: str
    display_name: str | None
    mime_type: str
    declared_size: int | None
    received: int
    created_at: datetime
    expires_at: datetime


class NameTaken(Exception):
    """A file or pending upload of this tenant already has the name."""


class UploadGone(Exception):
    """The upload session no longer exists (finalized, cancelled or expired meanwhile)."""


class FileStore(Protocol):
    # --- upload sessions ---------------------------------------------------------------------

    async def create_upload(self, record: UploadRecord, now: datetime) -> list[str]:
        """Insert a session; raises :class:`NameTaken` if the name is in use by the tenant.

        An expired file of the same name (not swept yet) is deleted: its blob key is returned.
        """

    async def get_upload(self, upload_id: str, now: datetime) -> UploadRecord | None:
        """The session, or None if missing or expired."""

    async def advance_upload(self, upload_id: str, received: int, expires_at: datetime) -> None:
        """Record bytes received so far and push the idle deadline back."""

    async def complete_upload(self, upload_id: str, file: FileRecord) -> None:
        """Delete the session and insert the file, atomically; :class:`UploadGone` if the
        session was already gone."""

    async def delete_upload(self, upload_id: str) -> None: ...

    async def expired_uploads(self, now: datetime, limit: int) -> list[UploadRecord]:
        """Sessions past their deadline (their partial blobs are swept with them)."""

    async def pending_file_ids(self) -> set[str]:
        """Blob keys of every upload session, for collecting orphaned partial blobs."""

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
