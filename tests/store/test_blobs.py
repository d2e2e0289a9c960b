"""The BlobStore acceptance suite: the local folder and an S3 bucket (moto's S3 server on
loopback) must pass all of it. Plus what only the local store has: path safety on disk,
private directories, atomic writes through a temp file."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gemserve.config import Settings
from gemserve.store.blobs import (
    PART_SIZE,
    BlobNotFound,
    BlobStore,
    BlobStoreUnavailable,
    LocalBlobStore,
    new_blob_key,
    open_blob_store,
)
from gemserve.store.blobs import local as local_module
from gemserve.store.blobs.s3 import S3BlobStore, parse_blob_url
from tests.support.s3 import S3Server, moto_s3

BAD_KEYS = [
    "",
    "blobs",
    "blobs/",
    "/blobs/" + "a" * 32,
    "blobs/../x",
    "../blobs/x",
    "blobs/..",
    "blobs/.",
    "blobs/a/b",
    "blobs/a.b",
    "blobs/-a",
    "Blobs/a",
    "blobs/A",
    "blobs/a\n",
    "blobs/a b",
    "blobs/" + "a" * 129,
    "a" * 32,
]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    store: BlobStore
    if request.param == "local":
        store = LocalBlobStore(tmp_path / "files")
        store.start()
    else:
        server: S3Server = request.getfixturevalue("s3")
        store = server.store(tmp_path, server.new_bucket())
    return store


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def stream(data: bytes, piece: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


def payload(size: int) -> bytes:
    """Bytes that are not all alike, so that a misplaced range shows."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


async def keys(blobs: BlobStore, namespace: str) -> set[str]:
    return {info.key async for info in blobs.list(namespace)}


def test_new_keys_are_32_hex_and_distinct() -> None:
    made = {new_blob_key() for _ in range(100)}
    assert len(made) == 100
    assert all(len(k) == 32 and set(k) <= set("0123456789abcdef") for k in made)


# ----- the acceptance suite ---------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_anything_but_a_namespaced_key_is_refused(blobs: BlobStore, key: str) -> None:
    """Nothing that is not a key made here ever becomes part of a path or an object name."""
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.write(key, stream(b"payload"))
    with pytest.raises(ValueError, match="invalid blob key"):
        await collect(blobs.read(key))
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.delete(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        async with blobs.local_file(key):
            pass


async def test_write_then_read_whole_and_by_range(blobs: BlobStore) -> None:
    key = f"blobs/{new_blob_key()}"
    data = payload(3000)
    assert await blobs.write(key, stream(data, 700)) == 3000
    assert await collect(blobs.read(key)) == data
    assert await collect(blobs.read(key, 0, 1)) == data[:1]
    assert await collect(blobs.read(key, 1000, 2500)) == data[1000:2500]
    assert await collect(blobs.read(key, 2999)) == data[2999:]
    assert await collect(blobs.read(key, 2500, 10_000)) == data[2500:]  # clipped at the end
    assert await collect(blobs.read(key, 3000)) == b""
    assert await collect(blobs.read(key, 10, 10)) == b""


async def test_an_empty_blob(blobs: BlobStore) -> None:
    key = f"blobs/{new_blob_key()}"
    assert await blobs.write(key, stream(b"")) == 0
    assert await collect(blobs.read(key)) == b""
    assert [(i.key, i.size) async for i in blobs.list("blobs")] == [(key, 0)]


async def test_a_missing_blob_is_blob_not_found(blobs: BlobStore) -> None:
    key = f"blobs/{new_blob_key()}"
    with pytest.raises(BlobNotFound):
        await collect(blobs.read(key))
    with pytest.raises(BlobNotFound):
        await collect(blobs.read(key, 5, 10))
    with pytest.raises(BlobNotFound):
        async with blobs.local_file(key):
            pass


async def test_a_multipart_write_over_one_part(blobs: BlobStore) -> None:
    """More than PART_SIZE (8 MiB: parts ≥ 5 MiB as S3 requires) is a multipart upload on S3;
    ranges across the part boundaries read back exactly."""
    key = f"blobs/{new_blob_key()}"
    data = os.urandom(2 * PART_SIZE + 12345)
    assert await blobs.write(key, stream(data)) == len(data)
    assert await collect(blobs.read(key)) == data
    edge = PART_SIZE
    assert await collect(blobs.read(key, edge - 10, edge + 10)) == data[edge - 10 : edge + 10]
    tail = len(data) - 100
    assert await collect(blobs.read(key, tail)) == data[tail:]
    (info,) = [i async for i in blobs.list("blobs")]
    assert info.size == len(data)


async def test_a_write_whose_stream_fails_leaves_nothing(blobs: BlobStore) -> None:
    """Small (one PUT) or multipart: the blob is there complete or not at all."""

    class Cut(Exception):
        pass

    for size in (1000, PART_SIZE + 5 * 65536):
        key = f"blobs/{new_blob_key()}"

        async def cut(size: int = size) -> AsyncIterator[bytes]:
            async for piece in stream(payload(size)):
                yield piece
            raise Cut

        with pytest.raises(Cut):
            await blobs.write(key, cut())
        assert await keys(blobs, "blobs") == set()
        with pytest.raises(BlobNotFound):
            await collect(blobs.read(key))


async def test_a_write_replaces_the_blob_whole(blobs: BlobStore) -> None:
    key = f"blobs/{new_blob_key()}"
    await blobs.write(key, stream(b"first version, longer"))
    await blobs.write(key, stream(b"second"))
    assert await collect(blobs.read(key)) == b"second"


async def test_list_gives_each_namespace_with_sizes_and_ages(blobs: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    done = f"blobs/{new_blob_key()}"
    part = f"partial/{new_blob_key()}-{0:020d}-{'a' * 16}"
    await blobs.write(done, stream(b"done"))
    await blobs.write(part, stream(b"in progress"))
    listed = {i.key: i async for i in blobs.list("blobs")}
    assert set(listed) == {done}
    assert listed[done].size == 4
    assert before <= listed[done].modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert listed[done].modified.tzinfo is not None
    assert [(i.key, i.size) async for i in blobs.list("partial")] == [(part, 11)]
    assert await keys(blobs, "other") == set()


async def test_delete_is_idempotent(blobs: BlobStore) -> None:
    key = f"blobs/{new_blob_key()}"
    await blobs.write(key, stream(b"x"))
    await blobs.delete(key)
    assert await keys(blobs, "blobs") == set()
    # Deleting what is already gone is not an error (a sweep may race a DELETE).
    await blobs.delete(key)


async def test_local_file_holds_the_blob_named_by_its_key(blobs: BlobStore) -> None:
    file_id = new_blob_key()
    data = payload(5000)
    await blobs.write(f"blobs/{file_id}", stream(data))
    async with blobs.local_file(f"blobs/{file_id}") as path:
        assert path.name == file_id  # decoders' caches key on the name
        assert path.read_bytes() == data
    if isinstance(blobs, S3BlobStore):
        assert not path.exists()  # the private download is gone with the block


async def test_a_failed_multipart_write_is_aborted(s3: S3Server, tmp_path: Path) -> None:
    """No multipart upload is left open (S3 would keep its parts, hidden, and bill them)."""
    bucket = s3.new_bucket()
    store = s3.store(tmp_path, bucket)

    async def cut() -> AsyncIterator[bytes]:
        async for piece in stream(payload(2 * PART_SIZE + 1)):
            yield piece
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        await store.write(f"blobs/{new_blob_key()}", cut())
    assert s3.multipart_uploads(bucket) == []
    assert s3.client().list_objects_v2(Bucket=bucket).get("Contents", []) == []


async def test_an_s3_outage_is_blob_store_unavailable_on_every_call(tmp_path: Path) -> None:
    """Connections refused (the server stopped) after a blob was written: every call is the
    503 the API answers with, not an error of the client library; a missing blob on a live
    server stays BlobNotFound."""
    with moto_s3() as server:
        store = server.store(tmp_path, server.new_bucket())
        key = f"blobs/{new_blob_key()}"
        await store.write(key, stream(b"kept"))
        with pytest.raises(BlobNotFound):
            await collect(store.read(f"blobs/{new_blob_key()}"))
        server.stop()
        with pytest.raises(BlobStoreUnavailable):
            await store.write(f"blobs/{new_blob_key()}", stream(b"lost"))
        with pytest.raises(BlobStoreUnavailable):
            await collect(store.read(key))
        with pytest.raises(BlobStoreUnavailable):
            await store.delete(key)
        with pytest.raises(BlobStoreUnavailable):
            await keys(store, "blobs")


# ----- the local folder -------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def local(root: Path) -> LocalBlobStore:
    store = LocalBlobStore(root)
    store.start()
    return store


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_a_refused_key_touches_no_file(local: LocalBlobStore, root: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        await local.write(key, stream(b"payload"))
    assert sorted(p.name for p in root.parent.rglob("*")) == ["blobs", "files", "partial", "tmp"]


async def test_a_local_blob_is_a_file_under_its_key(local: LocalBlobStore, root: Path) -> None:
    file_id = new_blob_key()
    await local.write(f"blobs/{file_id}", stream(b"on disk"))
    assert (root / "blobs" / file_id).read_bytes() == b"on disk"
    assert list((root / "tmp").iterdir()) == []  # renamed into place
    async with local.local_file(f"blobs/{file_id}") as path:
        assert path == root / "blobs" / file_id  # no copy


async def test_a_local_write_is_invisible_until_complete(local: LocalBlobStore, root: Path) -> None:
    key = f"blobs/{new_blob_key()}"
    seen: list[set[str]] = []

    async def watched() -> AsyncIterator[bytes]:
        yield b"x" * local_module.WRITE_BUFFER  # written to disk: in the temp file
        seen.append(await keys(local, "blobs"))
        yield b"y"

    await local.write(key, watched())
    assert seen == [set()]
    assert await keys(local, "blobs") == {key}


async def test_only_key_named_files_are_listed(local: LocalBlobStore, root: Path) -> None:
    """A stray non-key file is never reported (or deleted) as a blob."""
    kept = f"blobs/{new_blob_key()}"
    await local.write(kept, stream(b"x"))
    (root / "blobs" / "README.txt").write_text("not a blob")
    (root / "blobs" / ("F" * 32)).write_text("not a key")
    (root / "blobs" / "sub").mkdir()
    assert await keys(local, "blobs") == {kept}


def test_directories_are_private(root: Path) -> None:
    """Blobs are other tenants' data: owner-only, even if the directories already existed."""
    (root / "blobs").mkdir(parents=True, mode=0o755)
    (root / "blobs").chmod(0o755)
    LocalBlobStore(root).start()
    for name in ("blobs", "partial", "tmp"):
        mode = stat.S_IMODE((root / name).stat().st_mode)
        assert mode == 0o700, (name, oct(mode))
    LocalBlobStore(root).start()  # idempotent
    assert stat.S_IMODE((root / "partial").stat().st_mode) == 0o700


def test_start_removes_a_crashed_writers_old_temp_files(root: Path) -> None:
    LocalBlobStore(root).start()
    old, young = root / "tmp" / "write-old", root / "tmp" / "write-young"
    old.write_bytes(b"left by a crash")
    young.write_bytes(b"being written")
    a_day_ago = time.time() - local_module.STALE_TEMP_SECONDS - 60
    os.utime(old, (a_day_ago, a_day_ago))
    LocalBlobStore(root).start()
    assert sorted(p.name for p in (root / "tmp").iterdir()) == ["write-young"]


# ----- configuration ----------------------------------------------------------------------------


def test_the_factory_picks_the_store_from_blob_url(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(Settings(data_dir=tmp_path)), LocalBlobStore)
    remote = Settings(
        data_dir=tmp_path, blob_url="s3://bucket/some/prefix", s3_endpoint="http://127.0.0.1:9"
    )
    assert isinstance(open_blob_store(remote), S3BlobStore)
    assert parse_blob_url("s3://bucket") == ("bucket", None)
    assert parse_blob_url("s3://bucket/a/b/") == ("bucket", "a/b")


def test_plain_http_is_refused_off_loopback_unless_allowed(tmp_path: Path) -> None:
    far = Settings(data_dir=tmp_path, blob_url="s3://bucket", s3_endpoint="http://minio.lan:9000")
    with pytest.raises(ValueError, match="s3_allow_http"):
        open_blob_store(far)
    allowed = far.model_copy(update={"s3_allow_http": True})
    assert isinstance(open_blob_store(allowed), S3BlobStore)
    https = far.model_copy(update={"s3_endpoint": "https://minio.lan:9000"})
    assert isinstance(open_blob_store(https), S3BlobStore)


@pytest.mark.parametrize("url", ["file:///tmp/x", "s3://", "s3:/bucket", "bucket/prefix"])
def test_a_blob_url_that_is_not_s3_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="blob_url"):
        Settings(data_dir=tmp_path, blob_url=url)
