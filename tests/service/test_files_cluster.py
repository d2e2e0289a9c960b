"""Files across replicas: three FileServices (three "replicas", each with its own database
connection pool and S3 client) on one PostgreSQL database and one S3 bucket (moto's server on
loopback). Any replica takes any request of an upload; races between replicas have exactly
one winner; the quota holds cluster-wide; orphans are collected by age only."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gemserve.config import Limits
from gemserve.errors import InvalidArgument, NotFound, ResourceExhausted
from gemserve.service.files import FileService, blob_key, segment_key
from gemserve.store.blobs import PART_SIZE, BlobStore, new_blob_key
from gemserve.store.sql_files import SqlFileStore
from tests.support.postgres import MakeStore
from tests.support.s3 import S3Server, moto_s3

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


class Cluster:
    """Replicas made on demand, all on the test's database and bucket."""

    def __init__(self, make_store: MakeStore, s3: S3Server, root: Path) -> None:
        self._make_store = make_store
        self._s3 = s3
        self._root = root
        self.bucket = s3.new_bucket()
        self.blobs: list[BlobStore] = []

    async def replica(self, limits: Limits | None = None, **options: timedelta) -> FileService:
        index = len(self.blobs)
        blobs = self._s3.store(self._root / f"replica{index}", self.bucket)
        self.blobs.append(blobs)
        store = await self._make_store()
        return FileService(SqlFileStore(store), blobs, limits or Limits(), **options)

    async def keys(self, namespace: str) -> set[str]:
        return {info.key async for info in self.blobs[0].list(namespace)}


@pytest.fixture
async def cluster(postgres_stores: MakeStore, s3: S3Server, tmp_path: Path) -> Cluster:
    return Cluster(postgres_stores, s3, tmp_path)


async def body(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


async def start(replica: FileService, size: int | None, tenant: str = "t1") -> str:
    return await replica.start_upload(
        tenant,
        {"file": {"mime_type": "application/octet-stream"}},
        header_size=None if size is None else str(size),
        header_mime_type=None,
    )


async def read(replica: FileService, tenant: str, name: str) -> bytes:
    record = await replica.get(tenant, name)
    return b"".join([chunk async for chunk in replica.content(record)])


async def test_an_upload_split_across_three_replicas(cluster: Cluster) -> None:
    """Chunk 1 (over a part: a multipart segment) reaches A, chunk 2 B, the last chunk with
    finalize C; query on any replica says what the database says; the SHA-256 is exact."""
    a, b, c = [await cluster.replica() for _ in range(3)]
    data = os.urandom(PART_SIZE + MiB + 17) + os.urandom(5 * MiB) + os.urandom(3 * MiB)
    first, second = PART_SIZE + MiB + 17, PART_SIZE + 6 * MiB + 17
    token = await start(a, len(data))
    assert (await a.upload_chunk(token, 0, body(data[:first]), finalize=False)).received == first
    assert await b.upload_status(token) == await c.upload_status(token) == first
    outcome = await b.upload_chunk(token, first, body(data[first:second]), finalize=False)
    assert outcome.received == second
    assert len(await cluster.keys("partial")) == 2
    done = await c.upload_chunk(token, second, body(data[second:]), finalize=True)
    assert done.file is not None
    assert done.file.size_bytes == len(data)
    assert done.file.sha256 == hashlib.sha256(data).hexdigest()
    assert await read(a, "t1", done.file.name) == data
    assert await cluster.keys("partial") == set()  # the segments went with the session
    assert await cluster.keys("blobs") == {blob_key(done.file.id)}
    with pytest.raises(NotFound):
        await a.upload_status(token)
    async with b.local_file(done.file) as path:  # what decoders read, on another replica
        assert path.name == done.file.id
        assert hashlib.sha256(path.read_bytes()).hexdigest() == done.file.sha256


async def test_a_cancel_on_another_replica_deletes_the_segments(cluster: Cluster) -> None:
    a, b = [await cluster.replica() for _ in range(2)]
    token = await start(a, 300)
    await a.upload_chunk(token, 0, body(b"x" * 100), finalize=False)
    await b.cancel_upload(token)
    assert await cluster.keys("partial") == set()
    with pytest.raises(NotFound):
        await a.upload_chunk(token, 100, body(b"y" * 200), finalize=True)


class Held:
    """A chunk body that stops after its first piece until released: both racers are inside
    their upload (past the offset check) before either finishes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.inside = asyncio.Event()
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data[:1000]
        self.inside.set()
        await self.release.wait()
        yield self.data[1000:]


async def test_two_replicas_racing_one_offset_have_exactly_one_winner(cluster: Cluster) -> None:
    """A retried chunk reaching another replica while the first is still streaming: both
    store a segment, the database accepts one; the loser gets the wrong-offset 400 and
    deletes its own segment (never the winner's: segment keys carry a nonce)."""
    a, b, c = [await cluster.replica() for _ in range(3)]
    head, tail = os.urandom(3000), os.urandom(500)
    token = await start(a, len(head) + len(tail))
    bodies = [Held(head), Held(bytes(reversed(head)))]  # different bytes, same length
    racers = [
        asyncio.create_task(replica.upload_chunk(token, 0, held, finalize=False))
        for replica, held in zip((a, b), bodies, strict=True)
    ]
    for held in bodies:
        await asyncio.wait_for(held.inside.wait(), 10)
    for held in bodies:
        held.release.set()
    results = await asyncio.gather(*racers, return_exceptions=True)
    winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    (loser,) = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(loser, InvalidArgument)
    assert "'X-Goog-Upload-Offset': 0" in loser.message
    assert "received 3000 bytes" in loser.message
    assert len(await cluster.keys("partial")) == 1
    done = await c.upload_chunk(token, 3000, body(tail), finalize=True)
    assert done.file is not None
    expected = bodies[winners[0]].data + tail
    assert done.file.sha256 == hashlib.sha256(expected).hexdigest()
    assert await read(b, "t1", done.file.name) == expected


async def test_a_duplicate_finalize_on_another_replica_does_not_destroy_the_file(
    cluster: Cluster,
) -> None:
    a, b = [await cluster.replica() for _ in range(2)]
    data = os.urandom(4000)
    token = await start(a, len(data))
    await a.upload_chunk(token, 0, body(data), finalize=False)
    results = await asyncio.gather(
        a.upload_chunk(token, 4000, body(b""), finalize=True),
        b.upload_chunk(token, 4000, body(b""), finalize=True),
        return_exceptions=True,
    )
    files = [r.file for r in results if not isinstance(r, BaseException) and r.file is not None]
    assert len(files) == 1, results
    assert all(isinstance(r, NotFound) for r in results if isinstance(r, BaseException))
    assert await read(b, "t1", files[0].name) == data
    assert await cluster.keys("partial") == set()


async def test_the_quota_holds_across_replicas_uploading_at_once(cluster: Cluster) -> None:
    limits = Limits(max_file_bytes=1000, max_tenant_file_bytes=1000)
    a, b = [await cluster.replica(limits) for _ in range(2)]
    # Declared sizes are reserved at start: of two 600-byte starts at once, one gets in.
    started = await asyncio.gather(
        start(a, 600, "declared"), start(b, 600, "declared"), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in started) == ["ResourceExhausted", "str"]
    # Without sizes, finalize checks what arrived: both hold 600 when they finalize at once;
    # the first checked is refused (and dropped), the other fits.
    tokens = [await start(replica, None, "undeclared") for replica in (a, b)]
    for replica, token in zip((a, b), tokens, strict=True):
        await replica.upload_chunk(token, 0, body(b"z" * 600), finalize=False)
    finals = await asyncio.gather(
        *(
            replica.upload_chunk(token, 600, body(b""), finalize=True)
            for replica, token in zip((b, a), tokens, strict=True)  # each on the other one
        ),
        return_exceptions=True,
    )
    refused = [r for r in finals if isinstance(r, BaseException)]
    assert len(refused) == 1, finals
    assert isinstance(refused[0], ResourceExhausted)
    assert "quota is 1000 bytes" in refused[0].message
    listed, _ = await a.list("undeclared", None, None)
    assert [f.size_bytes for f in listed] == [600]
    assert len(await cluster.keys("partial")) == 0  # the refused upload's segment went too


async def test_orphans_are_collected_by_age_only(cluster: Cluster) -> None:
    """A blob that no row owns is deleted only once older than orphan_age: one another
    replica has just written (its row on the way) is left alone."""
    young = await cluster.replica(upload_timeout=timedelta(hours=1))  # orphan_age: 1 h
    eager = await cluster.replica(orphan_age=timedelta(0))
    stored = await young.upload_chunk(await start(young, 5), 0, body(b"kept!"), finalize=True)
    assert stored.file is not None
    pending = await start(young, 10)
    await young.upload_chunk(pending, 0, body(b"half"), finalize=False)
    owned = await cluster.keys("blobs") | await cluster.keys("partial")
    blobs = cluster.blobs[0]
    stray_file, stray_id = f"blobs/{new_blob_key()}", new_blob_key()
    stray_segment = segment_key(stray_id, 0)
    for key in (stray_file, stray_segment):
        await blobs.write(key, body(b"no row yet"))
    assert await young.collect_orphans() == 0
    assert await cluster.keys("blobs") | await cluster.keys("partial") == owned | {
        stray_file,
        stray_segment,
    }
    assert await eager.collect_orphans() == 2
    assert await cluster.keys("blobs") | await cluster.keys("partial") == owned
    # What rows own survived: the file reads back, the upload finishes.
    assert await read(eager, "t1", stored.file.name) == b"kept!"
    done = await eager.upload_chunk(pending, 4, body(b"-whole"), finalize=True)
    assert done.file is not None
    assert await read(young, "t1", done.file.name) == b"half-whole"
