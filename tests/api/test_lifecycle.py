"""Stored interactions over HTTP: get, delete, cancel, background, resume, tenants, store=false."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.support.server import LiveServer, wait_status

pytestmark = [pytest.mark.contract, pytest.mark.live]

KEY_A = {"x-goog-api-key": "tenant-a-key"}
KEY_B = {"x-goog-api-key": "tenant-b-key"}
MODEL = "gemini-3-flash-preview"


def create(server: LiveServer, headers: dict[str, str] = KEY_A, **body: Any) -> httpx.Response:
    payload = {"model": MODEL, "input": "Say hello.", "generation_config": {"max_output_tokens": 8}}
    payload.update(body)
    return httpx.post(
        server.base_url + "/v1beta/interactions", json=payload, headers=headers, timeout=60
    )


def get(
    server: LiveServer, iid: str, headers: dict[str, str] = KEY_A, **params: str
) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/v1/interactions/{iid}", params=params, headers=headers, timeout=60
    )


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    return [
        orjson.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def same_stream(replayed: list[dict[str, Any]], original: list[dict[str, Any]]) -> bool:
    """Equal up to merged text deltas: a replay sends waiting deltas as one event."""

    def shape(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str, str]:
        others = [e for e in events if e["event_type"] != "step.delta"]
        text = "".join(e["delta"]["text"] for e in events if e["event_type"] == "step.delta")
        return others, text, events[-1]["event_id"]

    return shape(replayed) == shape(original)


def test_get_returns_the_full_timeline(live_server: LiveServer) -> None:
    created = create(live_server, system_instruction="Be brief.").json()
    got = get(live_server, created["id"]).json()
    assert got["id"] == got["name"] == created["id"]
    assert got["status"] == created["status"]
    assert [s["type"] for s in got["steps"]] == ["user_input", "model_output"]
    assert got["steps"][0]["content"][0]["text"] == "Say hello."
    assert got["steps"][-1] == created["steps"][-1]
    assert got["usage"] == created["usage"]
    assert got["system_instruction"] == "Be brief."
    assert "input" not in got
    with_input = get(live_server, created["id"], include_input="true").json()
    assert with_input["input"] == [
        {"type": "user_input", "content": [{"type": "text", "text": "Say hello."}]}
    ]


def test_delete_really_deletes(live_server: LiveServer) -> None:
    iid = create(live_server).json()["id"]
    deleted = httpx.delete(f"{live_server.base_url}/v1/interactions/{iid}", headers=KEY_A)
    assert deleted.status_code == 200
    assert deleted.json() == {}
    assert get(live_server, iid).status_code == 404
    again = httpx.delete(f"{live_server.base_url}/v1/interactions/{iid}", headers=KEY_A)
    assert again.status_code == 404
    follow_up = create(live_server, previous_interaction_id=iid)
    assert follow_up.status_code == 404


def test_background_returns_at_once_and_polling_shows_the_result(live_server: LiveServer) -> None:
    started = create(
        live_server, background=True, generation_config={"max_output_tokens": 40, "temperature": 0}
    )
    assert started.status_code == 200
    body = started.json()
    assert body["status"] in ("in_progress", "queued")
    final = wait_status(live_server, body["id"], {"completed", "incomplete"}, KEY_A)
    assert final["steps"][-1]["type"] == "model_output"
    assert final["steps"][-1]["content"][0]["text"]
    assert final["usage"]["total_output_tokens"] > 0


def test_cancel_stops_a_background_interaction_and_keeps_the_partial_output(
    live_server: LiveServer,
) -> None:
    iid = create(
        live_server,
        input="Write a very long essay about the sea.",
        background=True,
        generation_config={"max_output_tokens": 400},
    ).json()["id"]
    # Wait for some output, then cancel.
    with httpx.stream(
        "GET",
        f"{live_server.base_url}/v1/interactions/{iid}",
        params={"stream": "true"},
        headers=KEY_A,
        timeout=60,
    ) as stream:
        for line in stream.iter_lines():
            if '"step.delta"' in line:
                break
    cancelled = httpx.post(
        f"{live_server.base_url}/v1/interactions/{iid}/cancel", headers=KEY_A, timeout=60
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert body["steps"][-1]["content"][0]["text"]
    assert body["usage"]["total_output_tokens"] < 400
    assert get(live_server, iid).json()["status"] == "cancelled"
    again = httpx.post(f"{live_server.base_url}/v1/interactions/{iid}/cancel", headers=KEY_A)
    assert again.status_code == 400
    assert again.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_resume_replays_after_last_event_id(live_server: LiveServer) -> None:
    streamed = httpx.post(
        live_server.base_url + "/v1/interactions",
        json={
            "model": MODEL,
            "input": "Count to five.",
            "stream": True,
            "generation_config": {"max_output_tokens": 12},
        },
        headers=KEY_A,
        timeout=60,
    )
    events = sse_events(streamed)
    iid = events[0]["interaction"]["id"]
    cut = events[3]["event_id"]
    resumed = get(live_server, iid, stream="true", last_event_id=cut)
    assert resumed.headers["content-type"].startswith("text/event-stream")
    assert same_stream(sse_events(resumed), events[4:])
    everything = get(live_server, iid, stream="true")
    assert same_stream(sse_events(everything), events)


def test_resume_of_a_live_background_interaction_follows_to_the_end(
    live_server: LiveServer,
) -> None:
    iid = create(live_server, background=True, generation_config={"max_output_tokens": 60}).json()[
        "id"
    ]
    first = get(live_server, iid, stream="true", last_event_id="")
    events = sse_events(first)
    assert events[0]["event_type"] == "interaction.created"
    assert events[-1]["event_type"] == "interaction.completed"
    ids = [e["event_id"] for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_stream_disconnect_is_stored_as_cancelled_with_partial_output(
    live_server: LiveServer,
) -> None:
    body = {
        "model": MODEL,
        "input": "Write a very long essay about mountains.",
        "stream": True,
        "generation_config": {"max_output_tokens": 400},
    }
    with httpx.stream(
        "POST", live_server.base_url + "/v1/interactions", json=body, headers=KEY_A, timeout=60
    ) as r:
        iid = ""
        for line in r.iter_lines():
            if line.startswith("data: ") and not iid:
                iid = orjson.loads(line[6:])["interaction"]["id"]
            if '"step.delta"' in line:
                break
    final = wait_status(live_server, iid, {"cancelled", "completed", "incomplete"}, KEY_A)
    assert final["status"] == "cancelled"
    assert final["usage"]["total_output_tokens"] < 400
    assert final["steps"][-1]["content"][0]["text"]


def test_tenants_cannot_see_each_other(live_server: LiveServer) -> None:
    iid = create(live_server, headers=KEY_A).json()["id"]
    for response in (
        get(live_server, iid, headers=KEY_B),
        get(live_server, iid, headers=KEY_B, stream="true"),
        httpx.delete(f"{live_server.base_url}/v1/interactions/{iid}", headers=KEY_B),
        httpx.post(f"{live_server.base_url}/v1/interactions/{iid}/cancel", headers=KEY_B),
        create(live_server, headers=KEY_B, previous_interaction_id=iid),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["status"] == "NOT_FOUND"
    assert get(live_server, iid, headers=KEY_A).status_code == 200


def test_store_false_keeps_nothing(live_server: LiveServer) -> None:
    body = create(live_server, store=False).json()
    assert body["status"] in ("completed", "incomplete")
    assert get(live_server, body["id"]).status_code == 404
    streamed = httpx.post(
        live_server.base_url + "/v1/interactions",
        json={
            "model": MODEL,
            "input": "Hi",
            "store": False,
            "stream": True,
            "generation_config": {"max_output_tokens": 3},
        },
        headers=KEY_A,
        timeout=60,
    )
    iid = sse_events(streamed)[0]["interaction"]["id"]
    assert get(live_server, iid).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"previous_interaction_id": "v1_" + "0" * 24}, 404, "not found"),
        ({"previous_interaction_id": "not-an-id"}, 400, "previous_interaction_id"),
        ({"previous_interaction_id": "v1_" + "0" * 24, "store": False}, 400, "store"),
        ({"background": True, "store": False}, 400, "store"),
    ],
)
def test_bad_previous_ids_and_combinations(
    live_server: LiveServer, body: dict[str, Any], status: int, fragment: str
) -> None:
    response = create(live_server, **body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


def test_malformed_ids_and_foreign_event_ids(live_server: LiveServer) -> None:
    assert get(live_server, "../../etc/passwd").status_code in (400, 404)
    malformed = get(live_server, "v1_xyz")
    assert malformed.status_code == 400
    assert malformed.json()["error"]["status"] == "INVALID_ARGUMENT"
    first = create(live_server).json()["id"]
    second = create(live_server).json()["id"]
    foreign = sse_events(get(live_server, first, stream="true"))[2]["event_id"]
    response = get(live_server, second, stream="true", last_event_id=foreign)
    assert response.status_code == 400
    assert "another interaction" in response.json()["error"]["message"]
    garbage = get(live_server, second, stream="true", last_event_id="evt_nope")
    assert garbage.status_code == 400
    flag = get(live_server, second, stream="maybe")
    assert flag.status_code == 400


def test_stateless_history_as_input_steps(live_server: LiveServer) -> None:
    steps = [
        {"type": "user_input", "content": [{"type": "text", "text": "My name is Ada."}]},
        {"type": "model_output", "content": [{"type": "text", "text": "Nice to meet you, Ada!"}]},
        {"type": "user_input", "content": [{"type": "text", "text": "What is my name?"}]},
    ]
    short = create(live_server, input=steps[-1:], store=False).json()
    full = create(live_server, input=steps, store=False).json()
    assert full["usage"]["total_input_tokens"] > short["usage"]["total_input_tokens"] + 10
