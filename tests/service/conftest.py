"""What the service tests share: an SQLite store in tmp_path (the services over scripted
engines are built by tests/support/service.py; never evidence that generation works:
tests/engine runs the real one)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gemserve.store import SqlStore


@pytest.fixture
async def store(tmp_path: Path, migrated_database: Path) -> AsyncIterator[SqlStore]:
    """On a copy of the session's migrated database (tests/store runs the migrations)."""
    path = tmp_path / "store.db"
    shutil.copy2(migrated_database, path)
    sql_store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await sql_store.start()
    yield sql_store
    await sql_store.close()
