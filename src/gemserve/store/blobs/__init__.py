"""Blob storage for uploaded files: a local folder (the embedded default) or an S3-compatible
bucket (``blob_url = "s3://bucket/prefix"``), behind one streaming interface (base.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gemserve.store.blobs.base import (
    PART_SIZE,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreUnavailable,
    checked_key,
    new_blob_key,
)
from gemserve.store.blobs.local import LocalBlobStore

if TYPE_CHECKING:
    from gemserve.config import Settings

__all__ = [
    "PART_SIZE",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreUnavailable",
    "LocalBlobStore",
    "checked_key",
    "new_blob_key",
    "open_blob_store",
]


def open_blob_store(settings: Settings) -> BlobStore:
    """The store ``settings.blob_url`` names: empty, the folder ``data_dir/files``."""
    if not settings.blob_url:
        return LocalBlobStore(settings.data_dir / "files")
    from gemserve.store.blobs.s3 import S3BlobStore

    return S3BlobStore.from_settings(settings)
