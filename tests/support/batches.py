"""What the in-process tests of generate and embedding batches share: the JSONL of an input
file, polling a batch until it is done, the stats of one that answered every request, and a
data directory to serve from again after a restart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gemserve.config import Settings
from tests.support.inprocess import InProcessApi, scripted_settings
from tests.support.wait import wait_for_async


def jsonl(*lines: Any) -> bytes:
    """An input file: each line a JSON object, or given as bytes as it is."""
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


async def wait_done(api: InProcessApi, name: str) -> dict[str, Any]:
    """The batch's operation, polled with GET until it says ``done``."""

    async def done() -> dict[str, Any]:
        response = await api.client.get(f"/v1/{name}", headers=api.headers)
        body: dict[str, Any] = response.json()
        return body if body["done"] else {}

    return await wait_for_async(done, what=f"{name} to finish")


def all_succeeded(count: int) -> dict[str, str]:
    """``batchStats`` of a batch of ``count`` requests that all answered (counts as strings,
    as int64 fields are in JSON)."""
    return {
        "requestCount": str(count),
        "successfulRequestCount": str(count),
        "failedRequestCount": "0",
        "pendingRequestCount": "0",
    }


def restartable_settings(tmp_path: Path, migrated_database: Path) -> Settings:
    """Settings for apps served one after another on one data directory (a copy of the
    migrated database), one batch request at a time: a restart in the middle of a batch."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    shutil.copy2(migrated_database, data / "gemserve.db")
    return scripted_settings(data, batch_concurrency=1)
