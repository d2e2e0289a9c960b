"""LocalBlobStore: server-made keys only (path safety), partial → complete, private directories."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gemserve.store import blobs as blobs_module
from gemserve.store.blobs import LocalBlobStore, new_blob_key

BAD_KEYS = [
    "../x",
    "../" + "a" * 29,
    "a" * 16 + "/" + "a" * 15,
    "/" + "a" * 31,
    "a" * 31,
    "a" * 33,
    "A" * 32,  # upper case: not what new_blob_key makes
    "g" * 32,
    "",
    ".",
    "..",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def blobs(root: Path) -> LocalBlobStore:
    store = LocalBlobStore(root)
    store.start()
    return store


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def test_new_keys_are_32_hex_and_distinct() -> None:
    keys = {new_blob_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) == 32 and set(k) <= set("0123456789abcdef") for k in keys)


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_anything_but_a_32_hex_key_is_refused(
    blobs: LocalBlobStore, root: Path, key: str
) -> None:
    """Nothing that is not a key made here ever becomes part of a path."""
    with pytest.raises(ValueError, match="invalid blob key"):
        blobs.path(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.append(key, b"payload")
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.partial_size(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.commit(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.delete(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.discard_partial(key)
    with pytest.raises(ValueError, match="invalid blob key"):
        await collect(blobs.read(key))
    with pytest.raises(ValueError, match="invalid blob key"):
        await collect(blobs.read_partial(key))
    # Nothing was written anywhere, inside the store or next to it.
    assert sorted(p.name for p in root.parent.rglob("*")) == ["blobs", "files", "partial"]


def test_a_key_with_a_trailing_newline_is_refused(blobs: LocalBlobStore) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        blobs.path("a" * 32 + "\n")


async def test_append_returns_the_size_so_far(blobs: LocalBlobStore) -> None:
    key = new_blob_key()
    assert await blobs.partial_size(key) == 0
    assert await blobs.append(key, b"hello ") == 6
    assert await blobs.append(key, b"") == 6
    assert await blobs.append(key, b"world") == 11
    assert await blobs.partial_size(key) == 11
    assert await collect(blobs.read_partial(key)) == b"hello world"
    assert await blobs.partial_keys() == {key}
    assert await blobs.keys() == set()


async def test_a_missing_partial_reads_as_nothing(blobs: LocalBlobStore) -> None:
    key = new_blob_key()
    assert await collect(blobs.read_partial(key)) == b""
    assert await blobs.partial_size(key) == 0


async def test_commit_moves_the_partial_into_place(
    blobs: LocalBlobStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_blob_key()
    data = bytes(range(256)) * 5
    await blobs.append(key, data[:700])
    await blobs.append(key, data[700:])
    await blobs.commit(key)
    assert not (root / "partial" / key).exists()
    assert blobs.path(key) == root / "blobs" / key
    assert blobs.path(key).read_bytes() == data
    assert await blobs.keys() == {key}
    assert await blobs.partial_keys() == set()
    assert await blobs.partial_size(key) == 0
    # read() streams in pieces; the pieces add up to the blob.
    monkeypatch.setattr(blobs_module, "READ_CHUNK", 100)
    pieces = [chunk async for chunk in blobs.read(key)]
    assert len(pieces) == 13
    assert b"".join(pieces) == data


async def test_an_empty_upload_commits_to_an_empty_blob(blobs: LocalBlobStore) -> None:
    key = new_blob_key()
    await blobs.commit(key)
    assert blobs.path(key).is_file()
    assert await collect(blobs.read(key)) == b""
    assert await blobs.keys() == {key}


async def test_delete_and_discard(blobs: LocalBlobStore) -> None:
    done, pending = new_blob_key(), new_blob_key()
    await blobs.append(done, b"done")
    await blobs.commit(done)
    await blobs.append(pending, b"pending")
    await blobs.delete(done)
    await blobs.discard_partial(pending)
    assert not blobs.path(done).exists()
    assert await blobs.keys() == set()
    assert await blobs.partial_keys() == set()
    # Deleting what is already gone is not an error (a sweep may race a DELETE).
    await blobs.delete(done)
    await blobs.discard_partial(pending)


async def test_keys_list_only_key_named_files(blobs: LocalBlobStore, root: Path) -> None:
    """A stray non-key file is never reported (or deleted) as a blob."""
    kept, partial = new_blob_key(), new_blob_key()
    await blobs.append(kept, b"x")
    await blobs.commit(kept)
    await blobs.append(partial, b"y")
    (root / "blobs" / "README.txt").write_text("not a blob")
    (root / "blobs" / ("F" * 32)).write_text("not a key")
    (root / "partial" / (partial + ".tmp")).write_text("not a key")
    assert await blobs.keys() == {kept}
    assert await blobs.partial_keys() == {partial}


def test_directories_are_private(root: Path) -> None:
    """Blobs are other tenants' data: owner-only, even if the directories already existed."""
    (root / "blobs").mkdir(parents=True, mode=0o755)
    (root / "blobs").chmod(0o755)
    LocalBlobStore(root).start()
    for name in ("blobs", "partial"):
        mode = stat.S_IMODE((root / name).stat().st_mode)
        assert mode == 0o700, (name, oct(mode))
    LocalBlobStore(root).start()  # idempotent
    assert stat.S_IMODE((root / "partial").stat().st_mode) == 0o700
