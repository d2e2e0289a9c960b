"""Two replicas (two InteractionServices, each with its own connection pool and lease) on one
PostgreSQL database: streams followed from the other replica, cancel across replicas, and a
lost replica's interactions closed by a survivor. The engines are scripted (orchestration
only); tests/cluster runs real server processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gemserve.config import ModelRegistry
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.protocol.interactions.fold import InteractionFold
from gemserve.service.cluster import ClusterConfigError, Replica
from gemserve.service.interactions import InteractionService
from gemserve.store import InteractionRecord, SqlStore
from gemserve.store.replicas import ReplicaRecord
from gemserve.store.sql_replicas import SqlReplicaStore
from tests.support.postgres import async_url, fresh_database
from tests.support.scripted import ScriptedEngine
from tests.support.service import build_service

BODY = {"model": "gemini-2.5-flash", "input": "count", "background": True}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield async_url(url)


class Node:
    """One replica: its store connection, lease loop and service."""

    def __init__(self, store: SqlStore, replica: Replica, service: InteractionService) -> None:
        self.store, self.replica, self.service = store, replica, service
        self.task: asyncio.Task[None] | None = None

    def run_duties(self) -> None:
        self.task = asyncio.create_task(
            self.replica.run([self.service.close_orphans], [self.service.deliver_cancels])
        )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.service.shutdown()
        await self.replica.leave()
        await self.store.close()


@pytest.fixture
async def nodes(database: str, tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Node] = []

    async def make(engine: ScriptedEngine, *, lease: float = 5.0) -> Node:
        store = SqlStore(database)
        await store.start()
        replica = Replica(SqlReplicaStore(store), lease_seconds=lease, poll_seconds=0.05)
        registry = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID)
        service = build_service(
            store,
            tmp_path / f"files{len(made)}",
            registry,
            {DEFAULT_MODEL_ID: engine},
            replica=replica,
        )
        await replica.join({"thought_signing_key": "sha256:test"})
        node = Node(store, replica, service)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop()


def text_of(events: list[dict[str, Any]]) -> str:
    fold = InteractionFold()
    for event in events:
        fold.apply(event)
    return str(fold.result()["steps"][0]["content"][0]["text"])


async def test_a_stream_is_followed_from_another_replica(nodes: Any) -> None:
    a = await nodes(ScriptedEngine(pieces=[f"{i} " for i in range(40)], delay=0.02))
    b = await nodes(ScriptedEngine())
    _, run = await a.service.create(BODY, "tenant")
    followed = await b.service.events("tenant", run.id, None)
    events = [event async for event in followed if event is not None]
    await run.wait()
    assert events[-1]["event_type"] == "interaction.completed"
    assert text_of(events) == "".join(f"{i} " for i in range(40))
    # Resumed on B after an id seen on A: the rest, and only the rest.
    middle = run.log[10]["event_id"]
    rest = [e async for e in await b.service.events("tenant", run.id, middle) if e is not None]
    assert [e["event_id"] for e in rest][-1] == run.log[-1]["event_id"]
    assert all(e["event_id"] > middle for e in rest)
    view = await b.service.get("tenant", run.id)
    assert view["status"] == "completed"


async def test_b_sees_the_output_so_far_of_a_run_on_a(nodes: Any) -> None:
    a = await nodes(ScriptedEngine(pieces=["x"] * 200, delay=0.01))
    b = await nodes(ScriptedEngine())
    _, run = await a.service.create(BODY, "tenant")
    await asyncio.sleep(0.6)  # past a journal flush
    view = await b.service.get("tenant", run.id)
    assert view["status"] == "in_progress"
    assert view["steps"][-1]["content"][0]["text"].startswith("xx")
    run.cancel()
    await run.wait()


async def test_cancel_on_b_stops_the_run_on_a(nodes: Any) -> None:
    engine = ScriptedEngine(pieces=["y"] * 10_000, delay=0.01)
    a = await nodes(engine)
    b = await nodes(ScriptedEngine())
    a.run_duties()
    _, run = await a.service.create(BODY, "tenant")
    await asyncio.sleep(0.3)
    loop = asyncio.get_running_loop()
    began = loop.time()
    view = await b.service.cancel("tenant", run.id)
    assert loop.time() - began < 5
    assert view["status"] == "cancelled"
    assert engine.streams[0].cancelled
    assert run.done.is_set()


async def test_a_lost_replicas_interactions_are_failed_by_a_survivor(nodes: Any) -> None:
    b = await nodes(ScriptedEngine())
    replicas = SqlReplicaStore(b.store)
    past = datetime.now(UTC) - timedelta(minutes=1)
    await replicas.register(
        ReplicaRecord(id="r_dead", host="h", pid=1, started_at=past, lease_until=past)
    )
    record = InteractionRecord(
        id="v1_" + "ee" * 12,
        tenant="tenant",
        model="gemini-2.5-flash",
        status="in_progress",
        created_at=past,
        updated_at=past,
        expires_at=past + timedelta(days=1),
        owner="r_dead",
    )
    await b.store.create_interaction(record, [])
    assert await b.service.close_orphans() == 1
    events = [e async for e in await b.service.events("tenant", record.id, None) if e is not None]
    assert [e["event_type"] for e in events] == ["error", "interaction.completed"]
    assert "replica" in events[0]["error"]["message"]
    live = [r.id for r in await replicas.live_replicas(datetime.now(UTC))]
    assert b.replica.id in live
    assert "r_dead" not in live
    assert await b.service.close_orphans() == 0


async def test_a_running_interaction_of_a_live_replica_is_left_alone(nodes: Any) -> None:
    a = await nodes(ScriptedEngine(pieces=["z"] * 100, delay=0.01))
    b = await nodes(ScriptedEngine())
    _, run = await a.service.create(BODY, "tenant")
    assert await b.service.close_orphans() == 0
    await run.wait()
    assert run.status == "completed"


async def test_a_replica_with_another_signing_key_refuses_to_join(
    database: str, nodes: Any
) -> None:
    await nodes(ScriptedEngine())
    store = SqlStore(database)
    await store.start()
    try:
        replica = Replica(SqlReplicaStore(store), lease_seconds=5, poll_seconds=0.05)
        with pytest.raises(ClusterConfigError, match="thought-signing key"):
            await replica.join({"thought_signing_key": "sha256:other"})
    finally:
        await store.close()
