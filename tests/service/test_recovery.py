"""Interactions a crash cut short: closed once at start, resumable, no event id reused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from gemserve.config import ModelRegistry
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.protocol.interactions.events import RECOVERY_SEQ, EventSequencer
from gemserve.store import InteractionRecord, SqlStore
from tests.support.scripted import ScriptedEngine
from tests.support.service import NOON, build_service

IID = "v1_" + "cd" * 12


async def crashed(store: SqlStore) -> list[dict[str, Any]]:
    """A run whose journal stored the opening events and two text deltas before the process
    died (the client had already been sent more)."""
    make = EventSequencer(IID)
    header = {"id": IID, "name": IID, "object": "interaction", "model": "gemini-2.5-flash"}
    events = [
        make.created({**header, "status": "in_progress"}),
        make.status_update(IID, "in_progress"),
        make.step_start(0, {"type": "model_output"}),
        make.text_delta(0, "Hello"),
        make.text_delta(0, ", wor"),
    ]
    record = InteractionRecord(
        id=IID,
        tenant="tenant",
        model="gemini-2.5-flash",
        status="in_progress",
        created_at=NOON,
        updated_at=NOON,
        expires_at=NOON + timedelta(days=1),
        input=[{"type": "user_input", "content": [{"type": "text", "text": "hi"}]}],
    )
    await store.create_interaction(record, events)
    return events


def service_on(store: SqlStore, tmp_path: Path) -> Any:
    registry = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID)
    return build_service(store, tmp_path / "files", registry, {DEFAULT_MODEL_ID: ScriptedEngine()})


async def replay(service: Any, last_event_id: str | None) -> list[dict[str, Any]]:
    events = await service.events("tenant", IID, last_event_id)
    return [event async for event in events]


async def test_the_row_keeps_the_text_and_the_log_gets_the_verdict(
    store: SqlStore, tmp_path: Path
) -> None:
    await crashed(store)
    service = service_on(store, tmp_path)
    assert await service.recover_interrupted() == 1
    assert await service.recover_interrupted() == 0  # once
    view = await service.get("tenant", IID)
    assert view["status"] == "failed"
    assert view["steps"][-1] == {
        "type": "model_output",
        "content": [{"type": "text", "text": "Hello, wor"}],
    }
    assert "server stopped" in view["errors"][0]["message"]
    events = await replay(service, None)
    assert [e["event_type"] for e in events][-2:] == ["error", "interaction.completed"]
    assert events[-1]["event_id"] == f"evt_{IID[-8:]}_{RECOVERY_SEQ + 1:06d}"


async def test_resuming_past_the_stored_end_still_gets_the_verdict(
    store: SqlStore, tmp_path: Path
) -> None:
    """The client saw …_000018 before the crash; the store only had up to …_000005."""
    await crashed(store)
    service = service_on(store, tmp_path)
    await service.recover_interrupted()
    seen = f"evt_{IID[-8:]}_000018"
    events = await replay(service, seen)
    assert [e["event_type"] for e in events] == ["error", "interaction.completed"]
    # No id the client may have seen names another event.
    assert all(int(e["event_id"].rsplit("_", 1)[1]) > 18 for e in events)
    # After the verdict there is nothing more.
    assert await replay(service, events[-1]["event_id"]) == []


async def test_a_row_closed_without_a_stored_verdict_is_given_one(
    store: SqlStore, tmp_path: Path
) -> None:
    """Rows an older server marked failed at start have no verdict events in their log."""
    await crashed(store)
    error = {"code": "INTERNAL", "message": "stopped"}
    await store.finish_interaction(
        IID, first_seq=6, events=[], status="failed", steps=[], usage=None, error=error,
        updated_at=NOON,
    )  # fmt: skip
    service = service_on(store, tmp_path)
    for after in (None, f"evt_{IID[-8:]}_000005", f"evt_{IID[-8:]}_000018"):
        events = await replay(service, after)
        assert [e["event_type"] for e in events][-2:] == ["error", "interaction.completed"]
        assert events[-1]["event_id"] == f"evt_{IID[-8:]}_{RECOVERY_SEQ + 1:06d}"
