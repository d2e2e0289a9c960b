"""The FileStore acceptance suite: SqlFileStore must pass all of it on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gemserve.store import SqlStore
from gemserve.store.blobs import new_blob_key
from gemserve.store.files import FileRecord, NameTaken, UploadRecord
from gemserve.store.sql_files import SqlFileStore

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(hours=48)
UPLOAD_TIMEOUT = timedelta(hours=1)


@pytest.fixture
def files(store: SqlStore) -> SqlFileStore:
    """The file store over the backend under test (the same database as the interactions)."""
    return SqlFileStore(store)


def new_upload(tenant: str = "t1", name: str | None = None, **overrides: Any) -> UploadRecord:
    values: dict[str, Any] = {
        "id": secrets.token_hex(32),
        "tenant": tenant,
        "file_id": new_blob_key(),
        "name": name or "u" + secrets.token_hex(6),
        "display_name": "Ünïcode display 🙂",
        "mime_type": "image/png",
        "declared_size": 1022,
        "received": 0,
        "created_at": NOW,
        "expires_at": NOW + UPLOAD_TIMEOUT,
    }
    values.update(overrides)
    return UploadRecord(**values)


def file_of(upload: UploadRecord, **overrides: Any) -> FileRecord:
    """The file a finished upload becomes."""
    values: dict[str, Any] = {
        "id": upload.file_id,
        "tenant": upload.tenant,
        "name": upload.name,
        "display_name": upload.display_name,
        "mime_type": upload.mime_type,
        "size_bytes": upload.declared_size or 0,
        "sha256": secrets.token_hex(32),
        "state": "ACTIVE",
        "source": "UPLOADED",
        "created_at": NOW,
        "updated_at": NOW,
        "expires_at": NOW + TTL,
    }
    values.update(overrides)
    return FileRecord(**values)


async def add_file(files: SqlFileStore, tenant: str = "t1", **overrides: Any) -> FileRecord:
    """A stored file, made the only way the service makes one: an upload, then completion."""
    upload = new_upload(tenant, name=overrides.pop("name", None))
    await files.create_upload(upload, NOW)
    record = file_of(upload, **overrides)
    await files.complete_upload(upload.id, record)
    return record


async def test_upload_roundtrip_preserves_every_field(files: SqlFileStore) -> None:
    upload = new_upload(declared_size=None, received=0)
    await files.create_upload(upload, NOW)
    loaded = await files.get_upload(upload.id, NOW)
    assert loaded == upload
    assert loaded is not None
    assert loaded.created_at.tzinfo is not None
    sized = new_upload(declared_size=5 * 1024**3)  # int64, beyond 32 bits
    await files.create_upload(sized, NOW)
    assert await files.get_upload(sized.id, NOW) == sized


async def test_upload_is_invisible_when_unknown_or_past_its_deadline(files: SqlFileStore) -> None:
    upload = new_upload()
    await files.create_upload(upload, NOW)
    assert await files.get_upload("0" * 64, NOW) is None
    assert await files.get_upload(upload.id, upload.expires_at - timedelta(seconds=1)) is not None
    assert await files.get_upload(upload.id, upload.expires_at) is None


async def test_name_held_by_a_live_file_is_taken_for_its_tenant_only(
    files: SqlFileStore,
) -> None:
    await add_file(files, "alice", name="report")
    with pytest.raises(NameTaken):
        await files.create_upload(new_upload("alice", name="report"), NOW)
    # Another tenant's namespace is separate.
    other = new_upload("bob", name="report")
    await files.create_upload(other, NOW)
    assert await files.get_upload(other.id, NOW) == other


async def test_name_held_by_a_pending_upload_is_taken_for_its_tenant_only(
    files: SqlFileStore,
) -> None:
    first = new_upload("alice", name="pending")
    await files.create_upload(first, NOW)
    second = new_upload("alice", name="pending")
    with pytest.raises(NameTaken):
        await files.create_upload(second, NOW)
    assert await files.get_upload(second.id, NOW) is None
    await files.create_upload(new_upload("bob", name="pending"), NOW)


async def test_expired_holders_do_not_take_a_name(files: SqlFileStore) -> None:
    """An expired file or session awaiting the sweeper must not block a new upload."""
    old_file = await add_file(files, name="reused", expires_at=NOW - timedelta(seconds=1))
    await files.create_upload(new_upload(name="stale", expires_at=NOW), NOW)
    for name in ("reused", "stale"):
        upload = new_upload(name=name)
        await files.create_upload(upload, NOW)
        # ...and the new upload can become a file of that name (the unique constraint holds).
        record = file_of(upload)
        await files.complete_upload(upload.id, record)
        assert await files.get_file("t1", name, NOW) == record
    listed = await files.list_files("t1", NOW, 0, 10)
    assert {f.name for f in listed} == {"reused", "stale"}
    assert old_file.id not in {f.id for f in listed}


async def test_advance_upload_records_bytes_and_pushes_the_deadline(files: SqlFileStore) -> None:
    upload = new_upload()
    await files.create_upload(upload, NOW)
    later = upload.expires_at + timedelta(minutes=30)
    await files.advance_upload(upload.id, 512, later)
    loaded = await files.get_upload(upload.id, upload.expires_at)
    assert loaded is not None
    assert (loaded.received, loaded.expires_at) == (512, later)
    assert await files.get_upload(upload.id, later) is None


async def test_complete_upload_turns_the_session_into_the_file(files: SqlFileStore) -> None:
    upload = new_upload()
    await files.create_upload(upload, NOW)
    assert upload.file_id in await files.pending_file_ids()
    record = file_of(upload)
    await files.complete_upload(upload.id, record)
    assert await files.get_upload(upload.id, NOW) is None
    assert await files.get_file("t1", upload.name, NOW) == record
    assert upload.file_id not in await files.pending_file_ids()
    assert upload.file_id in await files.all_file_ids()


async def test_complete_upload_is_atomic(files: SqlFileStore) -> None:
    """A file that cannot be inserted leaves the session as it was: nothing half-done."""
    await add_file(files, name="taken")
    upload = new_upload(name="free")
    await files.create_upload(upload, NOW)
    with pytest.raises(NameTaken):
        await files.complete_upload(upload.id, file_of(upload, name="taken"))
    assert await files.get_upload(upload.id, NOW) == upload
    assert upload.file_id not in await files.all_file_ids()


async def test_get_file_isolates_tenants_and_hides_expired_files(files: SqlFileStore) -> None:
    record = await add_file(files, "alice")
    assert await files.get_file("alice", record.name, NOW) == record
    assert await files.get_file("bob", record.name, NOW) is None
    assert await files.get_file("alice", "no-such-file", NOW) is None
    assert await files.get_file("alice", record.name, record.expires_at) is None


async def test_list_files_is_newest_first_with_offset_and_limit(files: SqlFileStore) -> None:
    made = [
        await add_file(files, "lister", created_at=NOW + timedelta(seconds=i)) for i in range(5)
    ]
    await add_file(files, "lister", expires_at=NOW)  # expired
    await add_file(files, "someone-else")
    newest_first = [r.id for r in reversed(made)]
    assert [r.id for r in await files.list_files("lister", NOW, 0, 10)] == newest_first
    pages = [await files.list_files("lister", NOW, offset, 2) for offset in (0, 2, 4, 6)]
    assert [[r.id for r in page] for page in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
        [],
    ]
    assert await files.list_files("nobody", NOW, 0, 10) == []


async def test_delete_file_returns_the_record_once(files: SqlFileStore) -> None:
    record = await add_file(files, "alice")
    assert await files.delete_file("bob", record.name) is None
    assert await files.get_file("alice", record.name, NOW) == record
    assert await files.delete_file("alice", record.name) == record
    assert await files.get_file("alice", record.name, NOW) is None
    assert record.id not in await files.all_file_ids()
    assert await files.delete_file("alice", record.name) is None


async def test_tenant_bytes_counts_files_and_pending_uploads(files: SqlFileStore) -> None:
    assert await files.tenant_bytes("quota", NOW) == 0
    await add_file(files, "quota", size_bytes=1000)
    await add_file(files, "quota", size_bytes=3 * 1024**3)  # beyond 32 bits
    await files.create_upload(new_upload("quota", declared_size=200, received=50), NOW)
    # Without a declared size, what has arrived so far counts.
    undeclared = new_upload("quota", declared_size=None)
    await files.create_upload(undeclared, NOW)
    await files.advance_upload(undeclared.id, 30, NOW + UPLOAD_TIMEOUT)
    # Expired files and sessions, and other tenants, do not count.
    await add_file(files, "quota", size_bytes=10**6, expires_at=NOW)
    await files.create_upload(new_upload("quota", declared_size=10**6, expires_at=NOW), NOW)
    await add_file(files, "other", size_bytes=10**6)
    assert await files.tenant_bytes("quota", NOW) == 1000 + 3 * 1024**3 + 200 + 30


async def test_delete_expired_files_returns_blob_keys_in_batches(files: SqlFileStore) -> None:
    expired = {(await add_file(files, expires_at=NOW - timedelta(minutes=i))).id for i in range(5)}
    live = await add_file(files)
    batches = [await files.delete_expired_files(NOW, 2) for _ in range(4)]
    assert [len(b) for b in batches] == [2, 2, 1, 0]
    assert {key for batch in batches for key in batch} == expired
    assert await files.all_file_ids() == {live.id}
    assert await files.get_file("t1", live.name, NOW) == live


async def test_expired_uploads_are_listed_up_to_the_limit(files: SqlFileStore) -> None:
    stale = [new_upload(expires_at=NOW - timedelta(minutes=i)) for i in range(3)]
    fresh = new_upload()
    for upload in [*stale, fresh]:
        await files.create_upload(upload, NOW - timedelta(hours=2))
    found = await files.expired_uploads(NOW, 10)
    assert sorted(u.id for u in found) == sorted(u.id for u in stale)
    assert {u.id: u for u in found} == {u.id: u for u in stale}
    assert len(await files.expired_uploads(NOW, 2)) == 2
    await files.delete_upload(stale[0].id)
    assert len(await files.expired_uploads(NOW, 10)) == 2


async def test_pending_and_stored_blob_keys(files: SqlFileStore) -> None:
    """What the orphan collector compares the disk against: every key with a row."""
    assert await files.pending_file_ids() == set()
    assert await files.all_file_ids() == set()
    pending = new_upload()
    expired_pending = new_upload(expires_at=NOW - timedelta(seconds=1))
    await files.create_upload(pending, NOW)
    await files.create_upload(expired_pending, NOW - timedelta(hours=1))
    stored = await add_file(files)
    expired_file = await add_file(files, expires_at=NOW - timedelta(seconds=1))
    # Rows still present keep their blobs, expired or not: the sweeper deletes both together.
    assert await files.pending_file_ids() == {pending.file_id, expired_pending.file_id}
    assert await files.all_file_ids() == {stored.id, expired_file.id}
    await files.delete_upload(pending.id)
    assert await files.pending_file_ids() == {expired_pending.file_id}
