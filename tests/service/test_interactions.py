"""Orchestration with a scripted engine: event order, the fold, config merging, failures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gemserve.config import Limits, ModelRegistry
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.engine import FinishReason
from gemserve.errors import InvalidArgument
from gemserve.service.interactions import InteractionService
from tests.fakes import ScriptedEngine


def service(engine: ScriptedEngine) -> InteractionService:
    registry = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID)
    return InteractionService(
        registry,
        {DEFAULT_MODEL_ID: engine},
        Limits(),
        clock=lambda: datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC),
        new_id=lambda: "v1_test",
    )


async def events_of(engine: ScriptedEngine, body: dict[str, Any]) -> list[dict[str, Any]]:
    _, run = await service(engine).create(body)
    return [event async for event in run.events()]


async def test_stream_event_order_and_fields() -> None:
    events = await events_of(ScriptedEngine(), {"model": "gemini-3-flash-preview", "input": "Hi"})
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


async def test_collect_folds_the_same_events() -> None:
    _, run = await service(ScriptedEngine()).create({"model": "gemini-2.5-flash", "input": "Hi"})
    result = await run.collect()
    assert result["id"] == result["name"] == "v1_test"
    assert result["model"] == "gemini-2.5-flash"
    assert result["created"] == "2026-11-24T12:00:00Z"
    assert result["steps"] == [
        {"type": "model_output", "content": [{"type": "text", "text": "Hello, world"}]}
    ]
    assert result["usage"]["total_input_tokens"] == 5
    assert result["usage"]["total_output_tokens"] == 3


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (FinishReason.MAX_TOKENS, "incomplete"),
        (FinishReason.CONTEXT, "incomplete"),
        (FinishReason.STOP, "completed"),
    ],
)
async def test_finish_reason_maps_to_status(reason: FinishReason, status: str) -> None:
    _, run = await service(ScriptedEngine(reason=reason)).create(
        {"model": "gemini-2.5-pro", "input": "x"}
    )
    assert (await run.collect())["status"] == status


async def test_engine_failure_is_a_failed_interaction_not_an_exception() -> None:
    engine = ScriptedEngine(reason=FinishReason.ERROR, error="llama_decode failed with code -1")
    events = await events_of(engine, {"model": "gemini-2.5-pro", "input": "x"})
    error = next(e for e in events if e["event_type"] == "error")
    assert error["error"]["code"] == "INTERNAL"
    assert "llama_decode" not in error["error"]["message"]  # library text is never echoed
    assert events[-1]["interaction"]["status"] == "failed"


async def test_closing_the_event_stream_cancels_the_engine_stream() -> None:
    engine = ScriptedEngine(pieces=["a"] * 100, delay=0.001)
    _, run = await service(engine).create({"model": "gemini-2.5-pro", "input": "x"})
    events = run.events()
    async for event in events:
        if event["event_type"] == "step.delta":
            break
    await events.aclose()
    assert engine.streams[0].cancelled


async def test_request_becomes_engine_messages_and_sampling() -> None:
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
            "thinkingLevel": "low",
        },
    }
    await service(engine).create(body)
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


async def test_model_defaults_apply_when_config_is_absent() -> None:
    engine = ScriptedEngine()
    await service(engine).create({"model": "gemini-3-flash-preview", "input": "Hi"})
    sampling = engine.requests[0].sampling
    spec = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID).resolve(DEFAULT_MODEL_ID).spec
    assert sampling.temperature == spec.sampling.temperature
    assert sampling.max_output_tokens == spec.sampling.max_output_tokens


async def test_validation_happens_before_the_engine_is_called() -> None:
    engine = ScriptedEngine()
    with pytest.raises(InvalidArgument):
        await service(engine).create(
            {"model": "gemini-3-flash-preview", "input": [{"type": "image", "data": "eA=="}]}
        )
    assert engine.requests == []
