"""The FileStore acceptance suite: SqlFileStore must pass all of it on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from gemserve.store import SqlStore
from gemserve.store.blobs import new_blob_key
from gemserve.store.files import FileRecord, NameTaken, QuotaExceeded, Segment, UploadRecord
from gemserve.store.schema import uploads
from gemserve.store.sql import MIGRATIONS
from gemserve.store.sql_files import SqlFileStore
from tests.support.postgres import async_url, fresh_database

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


def segment(start: int, size: int) -> Segment:
    return Segment(start, size, f"partial/{new_blob_key()}-{start:020d}-{secrets.token_hex(8)}")


async def test_add_segment_accepts_the_next_offset_only(files: SqlFileStore) -> None:
    upload = new_upload()
    await files.create_upload(upload, NOW)
    later = upload.expires_at + timedelta(minutes=30)
    first, second = segment(0, 512), segment(512, 100)
    assert await files.add_segment(upload.id, first, later)
    loaded = await files.get_upload(upload.id, upload.expires_at)
    assert loaded is not None
    assert (loaded.received, loaded.expires_at) == (512, later)
    assert await files.get_upload(upload.id, later) is None
    # A retried first chunk, or one from the future: refused, nothing changes.
    assert not await files.add_segment(upload.id, segment(0, 512), later + UPLOAD_TIMEOUT)
    assert not await files.add_segment(upload.id, segment(600, 10), later + UPLOAD_TIMEOUT)
    assert await files.add_segment(upload.id, second, later)
    # No bytes: only the deadline moves (at the right offset), and nothing is recorded.
    assert await files.add_segment(upload.id, Segment(612, 0, ""), later + UPLOAD_TIMEOUT)
    assert not await files.add_segment(upload.id, Segment(0, 0, ""), later + UPLOAD_TIMEOUT)
    loaded = await files.get_upload(upload.id, NOW)
    assert loaded is not None
    assert (loaded.received, loaded.expires_at) == (612, later + UPLOAD_TIMEOUT)
    assert await files.segments(upload.id) == [first, second]
    assert await files.segment_keys() == {first.key, second.key}
    assert not await files.add_segment("no-such-session", segment(0, 1), later)


async def test_of_many_requests_racing_one_offset_exactly_one_is_accepted(
    files: SqlFileStore,
) -> None:
    """Concurrent transactions (separate connections on PostgreSQL): one wins the offset."""
    upload = new_upload()
    await files.create_upload(upload, NOW)
    racers = [segment(0, 10 + i) for i in range(8)]
    accepted = await asyncio.gather(
        *(files.add_segment(upload.id, racer, NOW + UPLOAD_TIMEOUT) for racer in racers)
    )
    assert sum(accepted) == 1
    (winner,) = [racer for racer, won in zip(racers, accepted, strict=True) if won]
    assert await files.segments(upload.id) == [winner]
    loaded = await files.get_upload(upload.id, NOW)
    assert loaded is not None
    assert loaded.received == winner.size


async def test_ending_a_session_hands_back_its_segment_keys(files: SqlFileStore) -> None:
    cancelled, finished = new_upload(), new_upload()
    for upload in (cancelled, finished):
        await files.create_upload(upload, NOW)
    parts = [segment(0, 5), segment(5, 5)]
    for part in parts:
        assert await files.add_segment(cancelled.id, part, NOW + UPLOAD_TIMEOUT)
    kept = segment(0, 10)
    assert await files.add_segment(finished.id, kept, NOW + UPLOAD_TIMEOUT)
    assert sorted(await files.delete_upload(cancelled.id)) == sorted(p.key for p in parts)
    assert await files.delete_upload(cancelled.id) == []
    assert await files.segments(cancelled.id) == []
    assert await files.segment_keys() == {kept.key}
    await files.complete_upload(finished.id, file_of(finished, size_bytes=10))
    assert await files.segment_keys() == set()


async def test_create_upload_reserves_the_declared_size_within_the_quota(
    files: SqlFileStore,
) -> None:
    await add_file(files, "q", size_bytes=600)
    await files.create_upload(new_upload("q", declared_size=300), NOW, quota=1000)
    with pytest.raises(QuotaExceeded) as over:
        await files.create_upload(new_upload("q", declared_size=101), NOW, quota=1000)
    assert over.value.total == 1001
    assert await files.tenant_bytes("q", NOW) == 900
    # Without a size nothing is reserved; it passes while the tenant is within the quota.
    await files.create_upload(new_upload("q", declared_size=None), NOW, quota=1000)
    await files.create_upload(new_upload("other", declared_size=1000), NOW, quota=1000)


async def test_enforce_quota_drops_an_undeclared_upload_over_the_quota(
    files: SqlFileStore,
) -> None:
    await add_file(files, "q", size_bytes=600)
    undeclared = new_upload("q", declared_size=None)
    await files.create_upload(undeclared, NOW, quota=1000)
    part = segment(0, 401)
    assert await files.add_segment(undeclared.id, part, NOW + UPLOAD_TIMEOUT)
    with pytest.raises(QuotaExceeded) as over:
        await files.enforce_quota(undeclared.id, 1000, NOW)
    assert (over.value.total, over.value.dropped) == (1001, [part.key])
    assert await files.get_upload(undeclared.id, NOW) is None
    assert await files.segment_keys() == set()
    fits = new_upload("q", declared_size=None)
    await files.create_upload(fits, NOW, quota=1000)
    assert await files.add_segment(fits.id, segment(0, 400), NOW + UPLOAD_TIMEOUT)
    await files.enforce_quota(fits.id, 1000, NOW)
    await files.complete_upload(fits.id, file_of(fits, size_bytes=400))
    assert await files.tenant_bytes("q", NOW) == 1000
    await files.enforce_quota("gone", 1000, NOW)  # a session gone: completing it says so


async def test_of_two_undeclared_uploads_over_the_quota_together_one_fits(
    files: SqlFileStore,
) -> None:
    """Both hold 600 of 1000 bytes when they finalize at once: the first checked is refused
    and dropped in the same step, so the second, counted without it, fits."""
    racers = [new_upload("pair", declared_size=None) for _ in range(2)]
    for racer in racers:
        await files.create_upload(racer, NOW, quota=1000)
        assert await files.add_segment(racer.id, segment(0, 600), NOW + UPLOAD_TIMEOUT)

    async def finalize(upload: UploadRecord) -> bool:
        try:
            await files.enforce_quota(upload.id, 1000, NOW)
        except QuotaExceeded:
            return False
        return True

    assert sorted(await asyncio.gather(*(finalize(r) for r in racers))) == [False, True]
    assert await files.tenant_bytes("pair", NOW) == 600


async def test_concurrent_starts_cannot_pass_the_quota_together(files: SqlFileStore) -> None:
    """Check and insert are one step per tenant: of eight 300-byte uploads racing for 1000
    bytes, three get in, on separate connections (PostgreSQL: the advisory lock)."""

    async def start() -> bool:
        try:
            await files.create_upload(new_upload("racer", declared_size=300), NOW, quota=1000)
        except QuotaExceeded:
            return False
        return True

    outcomes = await asyncio.gather(*(start() for _ in range(8)))
    assert sum(outcomes) == 3
    assert await files.tenant_bytes("racer", NOW) == 900


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
    assert await files.add_segment(undeclared.id, segment(0, 30), NOW + UPLOAD_TIMEOUT)
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


def _migrate_to(connection: sa.Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_upload_in_progress_before_0005_resumes_from_its_partial_blob(
    backend: str, tmp_path: Path
) -> None:
    """An older server kept an upload's bytes in one blob, partial/<file id>: the migration
    makes it the session's first segment, of the bytes the session acknowledged."""
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        else:
            url = async_url(stack.enter_context(fresh_database()))
        midway, untouched = new_upload(received=700), new_upload(received=0)
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(_migrate_to, "0004")
            for upload in (midway, untouched):
                await conn.execute(uploads.insert().values(**vars(upload)))
        await engine.dispose()
        store = SqlStore(url)
        await store.start()
        try:
            files = SqlFileStore(store)
            assert await files.segments(midway.id) == [Segment(0, 700, f"partial/{midway.file_id}")]
            assert await files.segments(untouched.id) == []
            assert await files.add_segment(midway.id, segment(700, 322), NOW + UPLOAD_TIMEOUT)
        finally:
            await store.close()
