"""Orchestration with a scripted engine: event order, the fold, config merging, failures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gemserve.config import ModelRegistry
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.engine import FinishReason
from gemserve.errors import InvalidArgument
from gemserve.protocol.interactions.events import next_event
from gemserve.service.interactions import InteractionService
from gemserve.service.interactions import service as service_module
from gemserve.service.live import LiveInteraction
from gemserve.store import SqlStore
from tests.support.scripted import ScriptedEngine
from tests.support.service import build_service

IID = "v1_" + "ab" * 12


@pytest.fixture
def service(store: SqlStore, tmp_path: Path) -> Any:
    def make(engine: ScriptedEngine) -> InteractionService:
        registry = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID)
        return build_service(
            store, tmp_path / "files", registry, {DEFAULT_MODEL_ID: engine}, new_id=lambda: IID
        )

    return make


async def start(service: Any, engine: ScriptedEngine, body: dict[str, Any]) -> LiveInteraction:
    _, run = await service(engine).create(body, "tenant")
    await run.wait()
    assert isinstance(run, LiveInteraction)
    return run


async def events_of(
    service: Any, engine: ScriptedEngine, body: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every event, one per decoded piece, as stored (followers may get merged deltas)."""
    run = await start(service, engine, body)
    followed = [event async for event in run.follow() if event is not None]
    assert "".join(
        e["delta"]["text"] for e in followed if e["event_type"] == "step.delta"
    ) == "".join(e["delta"]["text"] for e in run.log if e["event_type"] == "step.delta")
    return run.log


async def test_stream_event_order_and_fields(service: Any) -> None:
    events = await events_of(
        service, ScriptedEngine(), {"model": "gemini-3-flash-preview", "input": "Hi"}
    )
    kinds = [e["event_type"] for e in events]
    assert kinds == [
        "interaction.created",
        "interaction.status_update",
        "step.start",
        "step.delta",
        "step.delta",
        "step.delta",
        "step.stop",
        "interaction.completed",
    ]
    assert all(e["type"] == e["event_type"] for e in events)
    ids = [e["event_id"] for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    completed = events[-1]["interaction"]
    assert completed["status"] == "completed"
    assert completed["usage"]["total_tokens"] == 5 + 3


async def test_the_fold_of_the_same_events_is_the_response(service: Any, store: SqlStore) -> None:
    run = await start(service, ScriptedEngine(), {"model": "gemini-2.5-flash", "input": "Hi"})
    result = run.result()
    assert result["id"] == result["name"] == IID
    assert result["model"] == "gemini-2.5-flash"
    assert result["created"] == "2026-11-24T12:00:00Z"
    assert result["steps"] == [
        {"type": "model_output", "content": [{"type": "text", "text": "Hello, world"}]}
    ]
    assert result["usage"]["total_input_tokens"] == 5
    assert result["usage"]["total_output_tokens"] == 3
    stored = await store.get_interaction("tenant", IID, datetime(2026, 11, 24, tzinfo=UTC))
    assert stored is not None
    assert (stored.status, stored.steps, stored.usage) == (
        "completed",
        result["steps"],
        result["usage"],
    )
    assert await store.get_events(IID, 0) == run.log


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (FinishReason.MAX_TOKENS, "incomplete"),
        (FinishReason.CONTEXT, "incomplete"),
        (FinishReason.STOP, "completed"),
    ],
)
async def test_finish_reason_maps_to_status(
    service: Any, reason: FinishReason, status: str
) -> None:
    engine = ScriptedEngine(reason=reason)
    run = await start(service, engine, {"model": "gemini-2.5-pro", "input": "x"})
    assert run.result()["status"] == status


async def test_engine_failure_is_a_failed_interaction_not_an_exception(service: Any) -> None:
    engine = ScriptedEngine(reason=FinishReason.ERROR, error="llama_decode failed with code -1")
    events = await events_of(service, engine, {"model": "gemini-2.5-pro", "input": "x"})
    error = next(e for e in events if e["event_type"] == "error")
    assert error["error"]["code"] == "INTERNAL"
    assert "llama_decode" not in error["error"]["message"]  # library text is never echoed
    assert events[-1]["interaction"]["status"] == "failed"


async def test_cancel_ends_the_run_as_cancelled_with_partial_output(service: Any) -> None:
    engine = ScriptedEngine(pieces=["a"] * 1000, delay=0.001)
    _, run = await service(engine).create({"model": "gemini-2.5-pro", "input": "x"}, "tenant")
    async for event in run.follow():
        if event["event_type"] == "step.delta":
            break
    run.cancel()
    await run.wait()
    assert engine.streams[0].cancelled
    assert run.status == "cancelled"
    assert run.result()["steps"][0]["content"][0]["text"].startswith("a")


async def test_request_becomes_engine_messages_and_sampling(service: Any) -> None:
    engine = ScriptedEngine()
    body = {
        "model": "gemini-3-flash-preview",
        "systemInstruction": "You are a cat.",
        "input": [
            {"type": "user_input", "content": [{"type": "text", "text": "Hi"}]},
            {"type": "model_output", "content": [{"type": "text", "text": "Meow"}]},
            {"type": "user_input", "content": [{"type": "text", "text": "Name?"}]},
        ],
        "generationConfig": {
            "temperature": 0.5,
            "maxOutputTokens": 9,
            "stopSequences": ["X"],
            "seed": 3,
            "topK": 7,
            "thinkingLevel": "minimal",
        },
    }
    await start(service, engine, body)
    request = engine.requests[0]
    assert [(m.role, m.text) for m in request.messages] == [
        ("system", "You are a cat."),
        ("user", "Hi"),
        ("assistant", "Meow"),
        ("user", "Name?"),
    ]
    sampling = request.sampling
    assert (sampling.temperature, sampling.max_output_tokens, sampling.seed, sampling.top_k) == (
        0.5,
        9,
        3,
        7,
    )
    assert sampling.stop_sequences == ("X",)


async def test_model_defaults_apply_when_config_is_absent(service: Any) -> None:
    engine = ScriptedEngine()
    await start(service, engine, {"model": "gemini-3-flash-preview", "input": "Hi"})
    sampling = engine.requests[0].sampling
    spec = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID).resolve(DEFAULT_MODEL_ID).spec
    assert sampling.temperature == spec.sampling.temperature
    assert sampling.max_output_tokens == spec.sampling.max_output_tokens


async def test_validation_happens_before_the_engine_is_called(service: Any) -> None:
    engine = ScriptedEngine()
    body = {"model": "gemini-3-flash-preview", "input": [{"type": "image", "data": "eA=="}]}
    with pytest.raises(InvalidArgument):
        await service(engine).create(body, "tenant")
    assert engine.requests == []


def test_waiting_text_deltas_are_merged_keeping_the_last_id() -> None:
    def delta(n: int, text: str, index: int = 0) -> dict[str, Any]:
        return {"event_type": "step.delta", "event_id": f"e{n}", "index": index,
                "delta": {"type": "text", "text": text}}  # fmt: skip

    stop = {"event_type": "step.stop", "event_id": "e9", "index": 0}
    log = [delta(1, "a"), delta(2, "b"), delta(3, "c"), stop, delta(10, "x", index=1)]
    first, at = next_event(log, 0)
    assert first == delta(3, "abc")
    assert next_event(log, at) == (stop, 4)
    assert next_event(log, 4) == (delta(10, "x", index=1), 5)
    assert next_event(log, 1) == (delta(3, "bc"), 3)


async def test_follow_yields_idle_markers_while_nothing_happens(service: Any) -> None:
    engine = ScriptedEngine(pieces=["slow"], delay=0.3)
    _, run = await service(engine).create({"model": "gemini-2.5-pro", "input": "x"}, "tenant")
    events = [event async for event in run.follow(idle_seconds=0.05)]
    assert None in events
    assert events[-1] is not None
    assert events[-1]["event_type"] == "interaction.completed"


async def test_a_failure_after_admission_cancels_the_generation(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever fails once the engine has admitted the request frees its slot at once."""
    engine = ScriptedEngine(delay=0.05)
    svc = service(engine)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug after admission")

    monkeypatch.setattr(service_module, "LiveInteraction", broken)
    with pytest.raises(RuntimeError, match="a bug after admission"):
        await svc.create({"model": "gemini-2.5-flash", "input": "hi"}, "tenant")
    assert len(engine.streams) == 1
    assert engine.streams[0].cancelled


async def test_an_error_in_a_continued_turn_names_the_requests_own_part(
    store: SqlStore, tmp_path: Path
) -> None:
    """With previous_interaction_id, paths count the request's own steps, not the history's."""
    ids = iter(["v1_" + f"{n:024x}" for n in range(1, 10)])
    registry = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID)
    engine = ScriptedEngine()
    svc = build_service(
        store, tmp_path / "files", registry, {DEFAULT_MODEL_ID: engine}, new_id=lambda: next(ids)
    )
    _, first = await svc.create({"model": "gemini-2.5-flash", "input": "Hello"}, "tenant")
    await first.wait()
    image = {"type": "image", "data": "aGk=", "mime_type": "image/png"}
    with pytest.raises(InvalidArgument) as info:
        await svc.create(
            {
                "model": "gemini-2.5-flash",
                "previous_interaction_id": first.id,
                "input": [{"type": "text", "text": "And this?"}, image],
            },
            "tenant",
        )
    assert info.value.message.startswith("Invalid value at 'input[0].content[1]': model ")
    assert "cannot take image input" in info.value.message
