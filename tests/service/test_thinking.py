"""Thinking orchestration with a scripted engine: levels, the two passes, native thoughts,
thought steps and signatures, and thoughts restored from a stateless history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from gemserve.config import ModelRegistry
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.errors import InvalidArgument
from gemserve.protocol.interactions import (
    ModelOutputStep,
    TextContent,
    ThoughtStep,
    UserInputStep,
)
from gemserve.service.interactions import InteractionService
from gemserve.service.interactions.turns import conversation_items
from gemserve.service.live import LiveInteraction
from gemserve.service.signatures import SignedThought, ThoughtSigner
from gemserve.service.thinking import ANSWER_INSTRUCTION, THINK_INSTRUCTION, restore_thoughts
from gemserve.service.turn_input import TextPart
from gemserve.store import SqlStore
from tests.support.scripted import ScriptedEngine
from tests.support.service import build_service

NATIVE = {
    "id": "reasoner",
    "source": "/nowhere/reasoner.gguf",
    "thinking": {"mode": "native", "budgets": {"low": 64}},
}
SIGNER = ThoughtSigner(Fernet.generate_key())


@pytest.fixture
def service(store: SqlStore, tmp_path: Path) -> Any:
    def make(default: ScriptedEngine, native: ScriptedEngine | None = None) -> InteractionService:
        registry = ModelRegistry.from_config([NATIVE], {}, DEFAULT_MODEL_ID)
        engines = {DEFAULT_MODEL_ID: default, "reasoner": native or ScriptedEngine()}
        return build_service(store, tmp_path / "files", registry, engines, signer=SIGNER)

    return make


async def run_of(service: InteractionService, body: dict[str, Any]) -> LiveInteraction:
    _, run = await service.create(body, "tenant")
    await run.wait()
    return run


def body(level: str | None = None, **extra: Any) -> dict[str, Any]:
    config = {} if level is None else {"thinking_level": level}
    return {"model": "gemini-3-flash-preview", "input": "Two dogs?", "generation_config": config}


async def test_minimal_and_the_default_level_do_not_think_on_a_two_pass_model(
    service: Any,
) -> None:
    for level in (None, "minimal"):
        engine = ScriptedEngine()
        run = await run_of(service(engine), body(level))
        assert len(engine.requests) == 1
        assert THINK_INSTRUCTION not in engine.requests[0].messages[-1].text
        result = run.result()
        assert [s["type"] for s in result["steps"]] == ["model_output"]
        assert result["usage"]["total_thought_tokens"] == 0


async def test_two_passes_reason_under_the_budget_then_answer_with_the_reasoning(
    service: Any,
) -> None:
    engine = ScriptedEngine(pieces=["Four", " paws"])
    run = await run_of(service(engine), body("low"))
    first, second = engine.requests
    assert first.messages[-1].text == f"Two dogs?\n\n{THINK_INSTRUCTION}"
    # The builtin model's budget for "low".
    assert first.sampling.max_output_tokens == 96
    # The answering pass extends the first prompt (so its KV cache is reused).
    assert second.messages[: len(first.messages)] == first.messages
    assert [(m.role, m.text) for m in second.messages[len(first.messages) :]] == [
        ("assistant", "Four paws"),
        ("user", ANSWER_INSTRUCTION.format(question="Two dogs?")),
    ]
    assert second.sampling.max_output_tokens == 512
    result = run.result()
    thought, answer = result["steps"]
    assert thought["type"] == "thought"
    assert thought["summary"] == [{"type": "text", "text": "Four paws"}]
    assert SIGNER.verify(thought["signature"], "x").text == "Four paws"
    assert answer == {"type": "model_output", "content": [{"type": "text", "text": "Four paws"}]}
    usage = result["usage"]
    assert (usage["total_thought_tokens"], usage["total_output_tokens"]) == (2, 2)
    assert usage["total_tokens"] == usage["total_input_tokens"] + 4


async def test_thinking_event_order(service: Any) -> None:
    run = await run_of(service(ScriptedEngine(pieces=["a", "b"])), body("low"))
    shape = [(e["event_type"], e.get("index"), e.get("delta", {}).get("type")) for e in run.log]
    assert shape == [
        ("interaction.created", None, None),
        ("interaction.status_update", None, None),
        ("step.start", 0, None),
        ("step.delta", 0, "thought_summary"),
        ("step.delta", 0, "thought_summary"),
        ("step.delta", 0, "thought_signature"),
        ("step.stop", 0, None),
        ("step.start", 1, None),
        ("step.delta", 1, "text"),
        ("step.delta", 1, "text"),
        ("step.stop", 1, None),
        ("interaction.completed", None, None),
    ]
    assert run.log[2]["step"] == {"type": "thought"}
    assert run.log[7]["step"] == {"type": "model_output"}


async def test_summaries_none_keeps_the_signature_but_not_the_text(service: Any) -> None:
    payload = body("low")
    payload["generation_config"]["thinking_summaries"] = "none"
    run = await run_of(service(ScriptedEngine(pieces=["secret"])), payload)
    thought = run.result()["steps"][0]
    assert "summary" not in thought
    assert "secret" not in str(run.log[:6])
    assert SIGNER.verify(thought["signature"], "x").text == "secret"


async def test_native_thoughts_become_a_thought_step(service: Any) -> None:
    native = ScriptedEngine(pieces=["Four."], thoughts=["2 dogs", " × 2 pairs"])
    run = await run_of(service(ScriptedEngine(), native), {**body("low"), "model": "reasoner"})
    (request,) = native.requests
    assert request.reasoning is not None
    assert (request.reasoning.open_tag, request.reasoning.budget) == ("<think>", 64)
    result = run.result()
    assert result["steps"][0]["summary"] == [{"type": "text", "text": "2 dogs × 2 pairs"}]
    assert result["usage"]["total_thought_tokens"] == 2
    assert result["usage"]["total_output_tokens"] == 1
    # A native model thinks by default (medium).
    await run_of(service(ScriptedEngine(), native), {"model": "reasoner", "input": "x"})
    assert native.requests[-1].reasoning is not None
    assert native.requests[-1].reasoning.budget == 512


async def test_stateless_history_restores_a_native_thought_in_the_models_format(
    service: Any,
) -> None:
    signature = SIGNER.sign(SignedThought("count the paws", "reasoner", "v1_x"))
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": "Two dogs?"}]},
        {"type": "thought", "signature": signature, "summary": [{"type": "text", "text": "?"}]},
        {"type": "model_output", "content": [{"type": "text", "text": "Eight paws."}]},
        {"type": "user_input", "content": [{"type": "text", "text": "And three?"}]},
    ]
    native = ScriptedEngine()
    await run_of(service(ScriptedEngine(), native), {"model": "reasoner", "input": history})
    messages = native.requests[0].messages
    assert [m.role for m in messages] == ["user", "assistant", "user"]
    # The signature, not the client's summary, is what comes back.
    assert messages[1].text == "<think>\ncount the paws\n</think>\n\nEight paws."


async def test_a_tampered_signature_is_a_400(service: Any) -> None:
    signature = SIGNER.sign(SignedThought("x", "reasoner", "v1_x"))
    forged = signature[:-6] + ("A" if signature[-6] != "A" else "B") + signature[-5:]
    for thought, field in (
        ({"type": "thought", "signature": forged}, "input[0].signature"),
        ({"type": "thought", "signature": "bm90IGEgc2lnbmF0dXJl"}, "input[0].signature"),
    ):
        user = {"type": "user_input", "content": [{"type": "text", "text": "Hi"}]}
        with pytest.raises(InvalidArgument, match=field.replace("[", r"\[").replace("]", r"\]")):
            await service(ScriptedEngine()).create(
                {"model": "gemini-3-flash-preview", "input": [thought, user]}, "tenant"
            )


async def test_a_signature_from_another_key_is_refused() -> None:
    other = ThoughtSigner(Fernet.generate_key())
    with pytest.raises(InvalidArgument):
        SIGNER.verify(other.sign(SignedThought("x", "m", "i")), "input[1]")


async def test_cancelling_during_the_first_pass_does_not_start_the_second(service: Any) -> None:
    engine = ScriptedEngine(pieces=["t"] * 1000, delay=0.001)
    _, run = await service(engine).create(body("low"), "tenant")
    async for event in run.follow():
        if event["event_type"] == "step.delta":
            break
    run.cancel()
    await run.wait()
    assert len(engine.requests) == 1
    result = run.result()
    assert result["status"] == "cancelled"
    assert [s["type"] for s in result["steps"]] == ["thought", "model_output"]


async def test_stored_thoughts_are_trusted_when_the_key_changed(service: Any) -> None:
    """A lost data dir (a new key) must not break conversations already stored."""
    old = ThoughtSigner(Fernet.generate_key()).sign(SignedThought("old key", "reasoner", "v1_x"))
    steps: list[Any] = [
        UserInputStep(type="user_input", content=[TextContent(type="text", text="Q")]),
        ThoughtStep(type="thought", signature=old, summary=[TextContent(type="text", text="kept")]),
        ModelOutputStep(type="model_output", content=[TextContent(type="text", text="A")]),
    ]
    native = ModelRegistry.from_config([NATIVE], {}, DEFAULT_MODEL_ID).resolve("reasoner").spec
    stored = conversation_items(steps, stored=True)
    restored = restore_thoughts(stored, SIGNER, native.thinking)
    assert len(restored) == 2
    first = restored[1].parts[0]
    assert isinstance(first, TextPart)
    assert first.text == "<think>\nkept\n</think>\n"
    with pytest.raises(InvalidArgument, match=r"input\[1\]\.signature"):
        restore_thoughts(conversation_items(steps), SIGNER, native.thinking)
