"""What the service tests share: an SQLite store in tmp_path and an InteractionService over
scripted engines (never evidence that generation works: tests/engine runs the real one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    sql_store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await sql_store.start()
    yield sql_store
    await sql_store.close()


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
