"""An InteractionService over scripted engines and an SQLite store, built without the app."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from gemserve.config import Limits, ModelRegistry
from gemserve.engine import Engine
from gemserve.service.files import FileService
from gemserve.service.interactions import InteractionService
from gemserve.service.media import MediaPipeline
from gemserve.service.signatures import ThoughtSigner
from gemserve.service.turn import TurnPipeline
from gemserve.store import SqlStore
from gemserve.store.blobs import LocalBlobStore
from gemserve.store.sql_files import SqlFileStore

NOON = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def build_service(
    store: SqlStore,
    files_dir: Path,
    registry: ModelRegistry,
    engines: Mapping[str, Engine],
    *,
    signer: ThoughtSigner | None = None,
    **options: Any,
) -> InteractionService:
    """An InteractionService on ``store``, with files under ``files_dir`` and a clock at noon."""
    blobs = LocalBlobStore(files_dir)
    blobs.start()
    files = FileService(SqlFileStore(store), blobs, Limits())
    turns = TurnPipeline(
        registry,
        engines,
        Limits(),
        MediaPipeline(files, Limits(), transcriber=None),
        signer or ThoughtSigner(Fernet.generate_key()),
    )
    return InteractionService(turns, Limits(), store, clock=lambda: NOON, **options)
