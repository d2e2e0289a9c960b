"""Thinking over HTTP, in-process: thought steps and their signatures as the server issues
them, sent back in a stateless history or followed through previous_interaction_id, and the
400s for a signature that was changed or left out (service/thinking.py, signatures.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi, sse_data
from tests.support.scripted import ScriptedEngine

NATIVE = {
    "id": "reasoner",
    "source": "/nowhere/reasoner.gguf",
    "thinking": {"mode": "native", "budgets": {"low": 64}},
}


@pytest.fixture
async def reasoner(make_api: MakeApi) -> InProcessApi:
    """The default model, and a native reasoning model that thinks "2 dogs × 2 pairs"."""
    engine = ScriptedEngine(["Four", " paws."], thoughts=["2 dogs", " × 2 pairs"])
    return await make_api(models=[NATIVE], engines={"reasoner": engine})


def user(text: str) -> dict[str, Any]:
    return {"type": "user_input", "content": [{"type": "text", "text": text}]}


def forged(signature: str) -> str:
    """One character changed: Fernet's tag no longer matches."""
    at = len(signature) // 2
    return signature[:at] + ("A" if signature[at] != "A" else "B") + signature[at + 1 :]


async def test_a_native_thought_is_a_signed_thought_step(reasoner: InProcessApi) -> None:
    response = await reasoner.create(model="reasoner", generation_config={"thinking_level": "low"})
    assert response.status_code == 200, response.text
    body = response.json()
    thought, answer = body["steps"]
    assert thought["type"] == "thought"
    assert thought["summary"] == [{"type": "text", "text": "2 dogs × 2 pairs"}]
    assert thought["signature"]
    assert answer == {"type": "model_output", "content": [{"type": "text", "text": "Four paws."}]}
    assert body["usage"]["total_thought_tokens"] == 2
    (request,) = reasoner.engines["reasoner"].requests
    assert request.reasoning is not None
    assert request.reasoning.budget == 64


async def test_the_thought_streams_before_the_answer(reasoner: InProcessApi) -> None:
    events = sse_data(await reasoner.create(model="reasoner", stream=True))
    shape = [(e["event_type"], e.get("index"), e.get("delta", {}).get("type")) for e in events]
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


async def test_summaries_none_sends_the_signature_without_the_text(
    reasoner: InProcessApi,
) -> None:
    body = (
        await reasoner.create(model="reasoner", generation_config={"thinking_summaries": "none"})
    ).json()
    thought = body["steps"][0]
    assert "summary" not in thought
    assert thought["signature"]
    assert "2 dogs" not in str(body)


async def test_a_stateless_history_brings_the_thought_back_by_its_signature(
    reasoner: InProcessApi,
) -> None:
    first = (await reasoner.create(model="reasoner", input="Two dogs?")).json()
    thought, answer = first["steps"]
    # The client's summary is ignored: the signature carries the thought.
    thought["summary"] = [{"type": "text", "text": "not what was thought"}]
    history = [user("Two dogs?"), thought, answer, user("And three?")]
    response = await reasoner.create(model="reasoner", input=history, store=False)
    assert response.status_code == 200, response.text
    messages = reasoner.engines["reasoner"].requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "user"]
    assert messages[1].text == "<think>\n2 dogs × 2 pairs\n</think>\n\nFour paws."


async def test_previous_interaction_id_brings_the_stored_thought_back(
    reasoner: InProcessApi,
) -> None:
    first = (await reasoner.create(model="reasoner", input="Two dogs?")).json()
    response = await reasoner.create(
        model="reasoner", input="And three?", previous_interaction_id=first["id"]
    )
    assert response.status_code == 200, response.text
    messages = reasoner.engines["reasoner"].requests[-1].messages
    assert messages[1].text == "<think>\n2 dogs × 2 pairs\n</think>\n\nFour paws."


async def test_a_changed_signature_is_400_naming_the_step(reasoner: InProcessApi) -> None:
    thought = (await reasoner.create(model="reasoner")).json()["steps"][0]
    for signature in (forged(thought["signature"]), "bm90IGEgc2lnbmF0dXJl"):
        history = [user("Hi"), {"type": "thought", "signature": signature}, user("Again")]
        response = await reasoner.create(model="reasoner", input=history)
        assert_envelope(
            response,
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'input[1].signature'",
            "not issued by this server",
        )


async def test_a_signature_from_another_server_is_400(
    reasoner: InProcessApi, make_api: MakeApi
) -> None:
    """Another data directory, another key: its signatures do not open here."""
    other = await make_api(models=[NATIVE], engines={"reasoner": ScriptedEngine(thoughts=["x"])})
    thought = (await other.create(model="reasoner")).json()["steps"][0]
    history = [user("Hi"), thought, user("Again")]
    response = await reasoner.create(model="reasoner", input=history)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "input[1].signature")


async def test_a_thought_without_its_signature_is_dropped(api: InProcessApi) -> None:
    """Clients drop signatures; Gemini accepts that, and so does gemserve (the thought's
    text cannot be trusted without it, so the model does not see it)."""
    history = [
        user("Hi"),
        {"type": "thought", "summary": [{"type": "text", "text": "hmm"}]},
        {"type": "model_output", "content": [{"type": "text", "text": "Hello"}]},
        user("Again"),
    ]
    response = await api.create(input=history)
    assert response.status_code == 200, response.text
    (request,) = api.engine.requests
    assert "hmm" not in str(request.messages)


async def test_two_passes_on_a_model_that_does_not_think_by_itself(api: InProcessApi) -> None:
    api.engine.pieces = ["Four", " paws"]
    response = await api.create(input="Two dogs?", generation_config={"thinking_level": "low"})
    body = response.json()
    assert [s["type"] for s in body["steps"]] == ["thought", "model_output"]
    first, second = api.engine.requests
    assert first.sampling.max_output_tokens == 96  # the bundled model's "low" budget
    assert second.messages[: len(first.messages)] == first.messages
    assert body["usage"]["total_thought_tokens"] == 2


async def test_a_level_s_floor_reaches_the_reasoning_pass(api: InProcessApi) -> None:
    """Budget forcing: each level has a floor as well as a budget (config: thinking.floors)."""
    await api.create(input="Two dogs?", generation_config={"thinking_level": "high"})
    first, second = api.engine.requests
    budget = first.sampling.max_output_tokens
    assert first.sampling.min_output_tokens == budget // 2  # floor_fraction 0.5
    assert second.sampling.min_output_tokens == 0
