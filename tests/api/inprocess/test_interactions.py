"""Interactions over HTTP, in-process with a scripted engine: create, get, stream and resume,
background, cancel, delete, conversations, store=false, tenants, and what the engine says."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from gemserve.engine import FinishReason
from gemserve.errors import InvalidArgument, ResourceExhausted
from gemserve.store import SqlStore
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi, sse_data
from tests.support.sse import check_stream_events
from tests.support.wait import wait_for, wait_for_async

OTHER_TENANT = {"x-goog-api-key": "another-tenant-key"}
MISSING = "v1_" + "0" * 24


async def created(api: InProcessApi, **body: Any) -> dict[str, Any]:
    response = await api.create(**body)
    assert response.status_code == 200, response.text
    interaction: dict[str, Any] = response.json()
    return interaction


async def status_of(api: InProcessApi, iid: str) -> str:
    response = await api.get(iid)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def settled(api: InProcessApi, iid: str) -> dict[str, Any]:
    """The interaction once it has left in_progress (a background run finishing)."""
    await wait_for_async(lambda: _terminal(api, iid), seconds=10, what=f"{iid} to finish")
    body: dict[str, Any] = (await api.get(iid)).json()
    return body


async def _terminal(api: InProcessApi, iid: str) -> bool:
    return await status_of(api, iid) not in ("in_progress", "queued")


def text_of(interaction: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for step in interaction["steps"]
        if step["type"] == "model_output"
        for part in step["content"]
    )


# ----- create and get -------------------------------------------------------------------------


async def test_create_answers_with_the_folded_interaction(api: InProcessApi) -> None:
    body = await created(
        api,
        input="Say hello.",
        system_instruction="Be brief.",
        generation_config={"temperature": 0.5, "max_output_tokens": 9, "stop_sequences": ["X"]},
    )
    assert re.fullmatch(r"v1_[0-9a-f]{24}", body["id"])
    assert body["id"] == body["name"]
    assert body["model"] == "gemini-3-flash-preview"
    assert body["status"] == "completed"
    assert body["steps"] == [
        {"type": "model_output", "content": [{"type": "text", "text": "Hello, world"}]}
    ]
    assert body["usage"]["total_input_tokens"] == 5
    assert body["usage"]["total_output_tokens"] == 3
    (request,) = api.engine.requests
    assert [(m.role, m.text) for m in request.messages] == [
        ("system", "Be brief."),
        ("user", "Say hello."),
    ]
    assert (request.sampling.temperature, request.sampling.max_output_tokens) == (0.5, 9)
    assert request.sampling.stop_sequences == ("X",)
    assert request.request_id == body["id"]


async def test_get_returns_the_stored_timeline(api: InProcessApi) -> None:
    body = await created(api, input="Say hello.", system_instruction="Be brief.")
    got = (await api.get(body["id"])).json()
    assert got["status"] == "completed"
    assert [s["type"] for s in got["steps"]] == ["user_input", "model_output"]
    assert got["steps"][0]["content"] == [{"type": "text", "text": "Say hello."}]
    assert got["steps"][-1] == body["steps"][-1]
    assert got["usage"] == body["usage"]
    assert got["system_instruction"] == "Be brief."
    assert "input" not in got
    with_input = (await api.get(body["id"], include_input="true")).json()
    assert with_input["input"] == [
        {"type": "user_input", "content": [{"type": "text", "text": "Say hello."}]}
    ]
    assert_envelope(await api.get(body["id"], include_input="maybe"), 400, "INVALID_ARGUMENT")


async def test_every_api_version_segment_is_served(api: InProcessApi) -> None:
    for version in ("v1", "v1beta", "v1alpha"):
        response = await api.create(path=f"/{version}/interactions")
        assert response.status_code == 200, response.text
    assert_envelope(await api.create(path="/latest/interactions"), 404, "NOT_FOUND")


async def test_a_malformed_id_is_400_naming_the_field(api: InProcessApi) -> None:
    for call in (api.get, api.cancel, api.delete):
        response = await call("v1_xyz")
        assert_envelope(response, 400, "INVALID_ARGUMENT", "Invalid value at 'id'", "v1_xyz")


async def test_an_unknown_id_is_404(api: InProcessApi) -> None:
    for call in (api.get, api.cancel, api.delete):
        assert_envelope(await call(MISSING), 404, "NOT_FOUND", MISSING, "not found")
    response = await api.get(MISSING, stream="true")
    assert_envelope(response, 404, "NOT_FOUND", MISSING)


# ----- streams --------------------------------------------------------------------------------


async def test_a_stream_has_the_documented_order_and_ids(api: InProcessApi) -> None:
    api.engine.pieces = ["One", " two", " three"]
    events = sse_data(await api.create(stream=True))
    assert check_stream_events(events) == "One two three"
    iid = events[0]["interaction"]["id"]
    # evt_<the id's last 8 hex digits>_<sequence from 1>: another interaction's are refused.
    assert [e["event_id"] for e in events] == [
        f"evt_{iid[-8:]}_{n:06d}" for n in range(1, len(events) + 1)
    ]
    assert len([e for e in events if e["event_type"] == "step.delta"]) == 3
    assert events[-1]["interaction"]["status"] == "completed"


async def test_alt_sse_streams_too(api: InProcessApi) -> None:
    events = sse_data(await api.create(path="/v1beta/interactions?alt=sse"))
    assert check_stream_events(events) == "Hello, world"


async def test_a_stored_stream_replays_and_resumes_after_an_event_id(api: InProcessApi) -> None:
    events = sse_data(await api.create(stream=True))
    iid = events[0]["interaction"]["id"]
    # A replay merges waiting text deltas into one event that keeps the last one's id.
    replay = sse_data(await api.get(iid, stream="true"))
    assert [e["event_type"] for e in replay] == [
        "interaction.created",
        "interaction.status_update",
        "step.start",
        "step.delta",
        "step.stop",
        "interaction.completed",
    ]
    assert replay[3]["delta"]["text"] == "Hello, world"
    assert replay[3]["event_id"] == events[5]["event_id"]
    assert replay[-1]["event_id"] == events[-1]["event_id"]
    tail = sse_data(await api.get(iid, stream="true", last_event_id=events[5]["event_id"]))
    assert tail == events[6:]
    everything = sse_data(await api.get(iid, stream="true", last_event_id=""))
    assert everything == replay


async def test_an_event_id_of_another_interaction_or_garbage_is_400(api: InProcessApi) -> None:
    first = sse_data(await api.create(stream=True))
    second = (await created(api))["id"]
    foreign = first[2]["event_id"]
    response = await api.get(second, stream="true", last_event_id=foreign)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "another interaction")
    garbage = await api.get(second, stream="true", last_event_id="evt_nope")
    assert_envelope(garbage, 400, "INVALID_ARGUMENT", "last_event_id")
    assert_envelope(await api.get(second, stream="maybe"), 400, "INVALID_ARGUMENT", "stream")


# ----- background, cancel, delete -------------------------------------------------------------


async def test_background_returns_at_once_and_finishes_in_the_server(api: InProcessApi) -> None:
    api.engine.pieces = ["a"] * 20
    api.engine.delay = 0.005
    started = await created(api, background=True)
    assert started["status"] == "in_progress"
    assert started["steps"] == [{"type": "user_input", "content": [{"type": "text", "text": "Hi"}]}]
    final = await settled(api, started["id"])
    assert final["status"] == "completed"
    assert text_of(final) == "a" * 20


async def test_following_a_running_interaction_streams_it_to_the_end(api: InProcessApi) -> None:
    api.engine.pieces = ["a"] * 20
    api.engine.delay = 0.005
    iid = (await created(api, background=True))["id"]
    events = sse_data(await api.get(iid, stream="true"))
    assert events[0]["event_type"] == "interaction.created"
    assert events[-1]["event_type"] == "interaction.completed"
    assert events[-1]["interaction"]["status"] == "completed"
    deltas = [e["delta"]["text"] for e in events if e["event_type"] == "step.delta"]
    assert "".join(deltas) == "a" * 20


async def test_cancel_stops_a_running_interaction_and_keeps_its_output(api: InProcessApi) -> None:
    api.engine.pieces = ["a"] * 10_000
    api.engine.delay = 0.001
    iid = (await created(api, background=True))["id"]
    await wait_for(lambda: len(api.engine.streams) == 1, what="the run to be admitted")
    stream = api.engine.streams[0]
    await wait_for_async(lambda: _has_output(api, iid), seconds=10, what="some output")
    response = await api.cancel(iid)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled"
    assert text_of(body).startswith("a")
    assert len(text_of(body)) < 10_000
    assert stream.cancelled
    assert await status_of(api, iid) == "cancelled"
    again = await api.cancel(iid)
    assert_envelope(again, 400, "FAILED_PRECONDITION", "already cancelled", "in progress")


async def _has_output(api: InProcessApi, iid: str) -> bool:
    return bool(text_of((await api.get(iid)).json()))


async def test_cancelling_a_finished_interaction_is_a_failed_precondition(
    api: InProcessApi,
) -> None:
    iid = (await created(api))["id"]
    response = await api.cancel(iid)
    assert_envelope(response, 400, "FAILED_PRECONDITION", iid, "already completed")


async def test_delete_really_deletes_and_stops_a_running_one(api: InProcessApi) -> None:
    iid = (await created(api))["id"]
    deleted = await api.delete(iid)
    assert deleted.status_code == 200
    assert deleted.json() == {}
    assert_envelope(await api.get(iid), 404, "NOT_FOUND")
    assert_envelope(await api.delete(iid), 404, "NOT_FOUND", iid)
    follow_up = await api.create(previous_interaction_id=iid)
    assert_envelope(follow_up, 404, "NOT_FOUND", iid)

    api.engine.pieces = ["a"] * 10_000
    api.engine.delay = 0.001
    running = (await created(api, background=True))["id"]
    assert (await api.delete(running)).status_code == 200
    assert api.engine.streams[-1].cancelled
    assert_envelope(await api.get(running), 404, "NOT_FOUND")


# ----- conversations --------------------------------------------------------------------------


async def test_previous_interaction_id_continues_the_conversation(api: InProcessApi) -> None:
    first = await created(api, input="My name is Ada.", system_instruction="Be brief.")
    api.engine.pieces = ["Nice", " to meet you"]
    second = await created(api, input="What is my name?", previous_interaction_id=first["id"])
    third = await created(api, input="And again?", previous_interaction_id=second["id"])
    assert third["status"] == "completed"
    history = [(m.role, m.text) for m in api.engine.requests[-1].messages]
    # The chain, oldest first; a system instruction is not inherited.
    assert history == [
        ("user", "My name is Ada."),
        ("assistant", "Hello, world"),
        ("user", "What is my name?"),
        ("assistant", "Nice to meet you"),
        ("user", "And again?"),
    ]
    got = (await api.get(third["id"])).json()
    assert got["previous_interaction_id"] == second["id"]


async def test_a_chain_longer_than_the_limit_is_400(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_conversation_turns": 2})
    first = await created(api)
    second = await created(api, previous_interaction_id=first["id"])
    third = await created(api, previous_interaction_id=second["id"])
    response = await api.create(previous_interaction_id=third["id"])
    assert_envelope(response, 400, "INVALID_ARGUMENT", "longer than 2 turns")


async def test_continuing_an_interaction_still_running_is_a_failed_precondition(
    api: InProcessApi,
) -> None:
    api.engine.pieces = ["a"] * 10_000
    api.engine.delay = 0.001
    running = (await created(api, background=True))["id"]
    response = await api.create(previous_interaction_id=running)
    assert_envelope(response, 400, "FAILED_PRECONDITION", running, "still in_progress")
    assert (await api.cancel(running)).status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"previous_interaction_id": "not-an-id"}, "Invalid value at 'previous_interaction_id'"),
        ({"previous_interaction_id": MISSING, "store": False}, "'store'"),
        ({"background": True, "store": False}, "'store'"),
    ],
)
async def test_bad_previous_ids_and_combinations(
    api: InProcessApi, body: dict[str, Any], fragment: str
) -> None:
    assert_envelope(await api.create(**body), 400, "INVALID_ARGUMENT", fragment)


async def test_an_unknown_previous_interaction_is_404(api: InProcessApi) -> None:
    response = await api.create(previous_interaction_id=MISSING)
    assert_envelope(response, 404, "NOT_FOUND", f"Interaction {MISSING!r} was not found")


async def test_stateless_history_as_input_steps(api: InProcessApi) -> None:
    steps = [
        {"type": "user_input", "content": [{"type": "text", "text": "My name is Ada."}]},
        {"type": "model_output", "content": [{"type": "text", "text": "Nice to meet you!"}]},
        {"type": "user_input", "content": [{"type": "text", "text": "What is my name?"}]},
    ]
    body = await created(api, input=steps, store=False)
    assert body["status"] == "completed"
    assert [(m.role, m.text) for m in api.engine.requests[0].messages] == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you!"),
        ("user", "What is my name?"),
    ]


# ----- store=false, tenants -------------------------------------------------------------------


async def test_store_false_keeps_nothing(api: InProcessApi) -> None:
    body = await created(api, store=False)
    assert body["status"] == "completed"
    assert_envelope(await api.get(body["id"]), 404, "NOT_FOUND")
    events = sse_data(await api.create(store=False, stream=True))
    assert events[-1]["interaction"]["status"] == "completed"
    iid = events[0]["interaction"]["id"]
    assert_envelope(await api.get(iid), 404, "NOT_FOUND")
    assert_envelope(await api.create(previous_interaction_id=iid), 404, "NOT_FOUND")


async def test_tenants_cannot_see_each_other(api: InProcessApi) -> None:
    iid = (await created(api))["id"]
    for response in (
        await api.get(iid, OTHER_TENANT),
        await api.get(iid, OTHER_TENANT, stream="true"),
        await api.cancel(iid, OTHER_TENANT),
        await api.delete(iid, OTHER_TENANT),
        await api.create(OTHER_TENANT, previous_interaction_id=iid),
    ):
        assert_envelope(response, 404, "NOT_FOUND")
    assert (await api.get(iid)).status_code == 200


# ----- what the engine says -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (FinishReason.STOP, "completed"),
        (FinishReason.MAX_TOKENS, "incomplete"),
        (FinishReason.CONTEXT, "incomplete"),
    ],
)
async def test_the_finish_reason_sets_the_status(
    api: InProcessApi, reason: FinishReason, status: str
) -> None:
    api.engine.reason = reason
    body = await created(api)
    assert body["status"] == status
    assert (await api.get(body["id"])).json()["status"] == status


async def test_an_engine_failure_is_a_failed_interaction_without_its_text(
    api: InProcessApi,
) -> None:
    api.engine.reason = FinishReason.ERROR
    api.engine.error = "llama_decode failed with code -1"
    body = await created(api)
    assert body["status"] == "failed"
    assert body["errors"][0]["code"] == "INTERNAL"
    assert "llama_decode" not in str(body)
    events = sse_data(await api.create(stream=True))
    error = next(e for e in events if e["event_type"] == "error")
    assert error["error"]["code"] == "INTERNAL"
    assert events[-1]["interaction"]["status"] == "failed"


async def test_a_full_engine_is_429_with_retry_after(api: InProcessApi) -> None:
    api.engine.refuse = ResourceExhausted("All 4 slots are busy and the queue is full.")
    response = await api.create()
    assert_envelope(response, 429, "RESOURCE_EXHAUSTED", "slots")
    assert response.headers["retry-after"] == "1"


async def test_a_prompt_over_the_context_names_the_history_when_there_is_one(
    api: InProcessApi,
) -> None:
    too_long = InvalidArgument("The prompt has 5000 tokens; the context is 4096.")
    api.engine.refuse = too_long
    alone = await api.create()
    message = assert_envelope(alone, 400, "INVALID_ARGUMENT", "5000 tokens")
    assert "history" not in message
    api.engine.refuse = None
    first = await created(api)
    api.engine.refuse = too_long
    follow = await api.create(previous_interaction_id=first["id"])
    assert_envelope(follow, 400, "INVALID_ARGUMENT", "5000 tokens", "history of 2 earlier steps")


async def test_a_model_still_loading_is_503(api: InProcessApi) -> None:
    api.engine.loaded = False
    response = await api.create()
    assert_envelope(response, 503, "UNAVAILABLE", "smollm2-135m-instruct", "still loading")
    assert response.headers["retry-after"] == "1"
    readyz = await api.client.get("/readyz")
    assert readyz.status_code == 503
    api.engine.loaded = True
    assert (await api.client.get("/readyz")).status_code == 200


async def test_a_store_that_fails_at_create_is_503_and_frees_the_engine(
    api: InProcessApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(SqlStore, "create_interaction", broken)
    response = await api.create()
    assert_envelope(response, 503, "UNAVAILABLE", "store is unavailable")
    assert api.engine.streams[0].cancelled


async def test_health_and_stats_need_no_key(api: InProcessApi) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://gemserve.test"
    ) as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        ready = (await anonymous.get("/readyz")).json()
        assert ready["status"] == "ready"
        assert (await anonymous.get("/statsz")).json()["smollm2-135m-instruct"]["slots"] == 1
