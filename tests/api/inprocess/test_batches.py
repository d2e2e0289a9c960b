"""Batches in-process: ``models/{model}:batchGenerateContent`` with inline requests, run in
the background through the classic pipeline (bounded concurrency), polled with GET until
done; cancel, delete, list, tenant isolation, the deadline, resuming after a restart, and
every client error in Google's envelope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gemserve.api.context import AppContext
from tests.support.batches import all_succeeded, jsonl, restartable_settings, wait_done
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi, serve_in_process
from tests.support.scripted import ScriptedEngine
from tests.support.wait import wait_for

OTHER_TENANT = {"x-goog-api-key": "another-tenant-key"}
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"


def inline(*texts: str, **extra: Any) -> dict[str, Any]:
    """A batch body as the SDKs send it: inline requests, each with its own metadata."""
    requests = [
        {
            "request": {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra},
            "metadata": {"key": f"request-{i}"},
        }
        for i, text in enumerate(texts)
    ]
    return {
        "batch": {"displayName": "nightly", "inputConfig": {"requests": {"requests": requests}}}
    }


async def create(
    api: InProcessApi,
    body: dict[str, Any],
    model: str = "gemini-2.5-flash",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await api.client.post(
        f"/v1beta/models/{model}:batchGenerateContent",
        json=body,
        headers=api.headers if headers is None else headers,
    )


async def make_batch(api: InProcessApi, *texts: str, **extra: Any) -> dict[str, Any]:
    response = await create(api, inline(*texts, **extra))
    assert response.status_code == 200, response.text
    operation: dict[str, Any] = response.json()
    return operation


async def get(
    api: InProcessApi, name: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await api.client.get(f"/v1/{name}", headers=api.headers if headers is None else headers)


def texts_of(operation: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for item in operation["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]:
        if "response" in item:
            out.append(item["response"]["candidates"][0]["content"]["parts"][0]["text"])
        else:
            out.append(item["error"])
    return out


# ----- the round trip -------------------------------------------------------------------------


async def test_a_batch_runs_in_the_background_and_answers_in_order(api: InProcessApi) -> None:
    operation = await make_batch(api, "One?", "Two?", "Three?")
    name = operation["name"]
    assert name.startswith("batches/")
    metadata = operation["metadata"]
    assert metadata["@type"] == BATCH_TYPE
    assert metadata["name"] == name
    assert metadata["model"] == "models/gemini-2.5-flash"
    assert metadata["displayName"] == "nightly"
    assert metadata["state"] == "BATCH_STATE_PENDING"
    assert metadata["batchStats"]["requestCount"] == "3"
    assert operation["done"] is False
    assert "output" not in metadata

    done = await wait_done(api, name)
    metadata = done["metadata"]
    assert metadata["state"] == "BATCH_STATE_SUCCEEDED"
    assert metadata["batchStats"] == all_succeeded(3)
    assert "endTime" in metadata
    answers = metadata["output"]["inlinedResponses"]["inlinedResponses"]
    assert [a["metadata"] for a in answers] == [{"key": f"request-{i}"} for i in range(3)]
    assert texts_of(done) == ["Hello, world"] * 3
    first = answers[0]["response"]
    assert first["usageMetadata"]["promptTokenCount"] == 5
    assert first["candidates"][0]["finishReason"] == "STOP"
    assert done["response"]["@type"].endswith("GenerateContentBatchOutput")
    assert done["response"]["inlinedResponses"] == metadata["output"]["inlinedResponses"]
    # Each request went through the classic pipeline, in input order.
    assert [r.messages[-1].text for r in api.engine.requests] == ["One?", "Two?", "Three?"]


async def test_each_request_keeps_its_own_config_and_a_failure_is_its_own(
    api: InProcessApi,
) -> None:
    body = inline("Short?", "Cached?")
    requests = body["batch"]["inputConfig"]["requests"]["requests"]
    requests[0]["request"]["generationConfig"] = {"maxOutputTokens": 3}
    requests[1]["request"]["cachedContent"] = "cachedContents/abcdef0123456789"
    response = await create(api, body)
    assert response.status_code == 200, response.text
    done = await wait_done(api, response.json()["name"])
    assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert done["metadata"]["batchStats"]["failedRequestCount"] == "1"
    ok, failed = texts_of(done)
    assert ok == "Hello, world"
    assert failed["code"] == 5  # google.rpc.Code NOT_FOUND
    assert "abcdef0123456789" in failed["message"]
    assert api.engine.requests[0].sampling.max_output_tokens == 3


async def test_list_get_and_delete_are_per_tenant(api: InProcessApi) -> None:
    names = [(await make_batch(api, f"Q{i}"))["name"] for i in range(3)]
    other = await create(api, inline("Theirs"), headers=OTHER_TENANT)
    assert other.status_code == 200
    for name in names:
        await wait_done(api, name)
    page = (
        await api.client.get("/v1beta/batches", params={"pageSize": 2}, headers=api.headers)
    ).json()
    assert [op["name"] for op in page["operations"]] == names[::-1][:2]
    rest = (
        await api.client.get(
            "/v1beta/batches",
            params={"pageSize": 2, "pageToken": page["nextPageToken"]},
            headers=api.headers,
        )
    ).json()
    assert [op["name"] for op in rest["operations"]] == [names[0]]
    assert "nextPageToken" not in rest
    for response in (
        await get(api, names[0], headers=OTHER_TENANT),
        await api.client.post(f"/v1beta/{names[0]}:cancel", headers=OTHER_TENANT),
        await api.client.delete(f"/v1beta/{names[0]}", headers=OTHER_TENANT),
    ):
        assert_envelope(response, 404, "NOT_FOUND", names[0])
    deleted = await api.client.delete(f"/v1beta/{names[0]}", headers=api.headers)
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert_envelope(await get(api, names[0]), 404, "NOT_FOUND")
    assert_envelope(
        await api.client.delete(f"/v1beta/{names[0]}", headers=api.headers), 404, "NOT_FOUND"
    )


# ----- cancel, the concurrency cap, the deadline ----------------------------------------------


async def test_cancel_stops_the_batch_and_answers_the_rest_cancelled(make_api: MakeApi) -> None:
    engine = ScriptedEngine(["slow"] * 50, delay=0.05)
    api = await make_api(engines={"smollm2-135m-instruct": engine}, batch_concurrency=1)
    name = (await make_batch(api, "A", "B", "C"))["name"]
    await wait_for(lambda: engine.streams, what="the first request to start")
    cancelled = await api.client.post(f"/v1beta/{name}:cancel", headers=api.headers)
    assert (cancelled.status_code, cancelled.json()) == (200, {})
    done = (await get(api, name)).json()
    assert done["done"] is True
    assert done["metadata"]["state"] == "BATCH_STATE_CANCELLED"
    assert "response" in done
    errors = texts_of(done)
    assert all(e["code"] == 1 for e in errors)  # CANCELLED
    await wait_for(lambda: all(s.finished for s in engine.streams), what="the slot to be freed")
    assert engine.streams[0].cancelled
    assert len(engine.streams) == 1  # the others never started
    # Cancelling again, or a finished batch, changes nothing.
    again = await api.client.post(f"/v1beta/{name}:cancel", headers=api.headers)
    assert again.status_code == 200
    assert (await get(api, name)).json()["metadata"]["state"] == "BATCH_STATE_CANCELLED"


async def test_at_most_batch_concurrency_requests_decode_at_once(make_api: MakeApi) -> None:
    engine = ScriptedEngine(["a", "b", "c"], delay=0.01)
    api = await make_api(engines={"smollm2-135m-instruct": engine}, batch_concurrency=2)
    name = (await make_batch(api, *[f"Q{i}" for i in range(6)]))["name"]
    peak = 0

    def observe() -> bool:
        nonlocal peak
        peak = max(peak, sum(not s.finished for s in engine.streams))
        return len(engine.streams) == 6 and all(s.finished for s in engine.streams)

    await wait_for(observe, interval=0.001, what="every request to run")
    assert peak == 2
    assert (await wait_done(api, name))["metadata"]["batchStats"]["successfulRequestCount"] == "6"


async def test_a_batch_past_its_deadline_expires(make_api: MakeApi) -> None:
    api = await make_api(batch_deadline_hours=1e-9)
    done = await wait_done(api, (await make_batch(api, "Late"))["name"])
    assert done["metadata"]["state"] == "BATCH_STATE_EXPIRED"
    assert [e["code"] for e in texts_of(done)] == [4]  # DEADLINE_EXCEEDED
    assert api.engine.requests == []


async def test_an_ended_batch_is_swept_after_batch_ttl_hours(make_api: MakeApi) -> None:
    api = await make_api(batch_ttl_hours=1e-9)
    name = (await make_batch(api, "Q"))["name"]
    await wait_done(api, name)
    assert (await get(api, name)).status_code == 200  # ended, not yet swept
    ctx: AppContext = api.app.state.ctx
    # The app's own start-up sweep round may reach batches after this one ended (a loaded
    # machine) and delete it first: either way it is gone after a sweep.
    assert await ctx.batches.sweep() in (0, 1)
    assert_envelope(await get(api, name), 404, "NOT_FOUND")


# ----- restarts -------------------------------------------------------------------------------


async def test_a_batch_interrupted_by_a_restart_is_resumed(
    tmp_path: Path, migrated_database: Path
) -> None:
    settings = restartable_settings(tmp_path, migrated_database)
    slow = ScriptedEngine(["slow"] * 100, delay=0.05)
    async with serve_in_process(settings, {"smollm2-135m-instruct": slow}) as first:
        name = (await make_batch(first, "A", "B"))["name"]
        await wait_for(lambda: slow.streams, what="the first request to start")
    # Shut down mid-request: nothing was answered, nothing is lost.
    assert slow.streams[0].cancelled
    fast = ScriptedEngine(["done"])
    async with serve_in_process(settings, {"smollm2-135m-instruct": fast}) as second:
        resumed = await wait_done(second, name)
    assert resumed["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert texts_of(resumed) == ["done", "done"]
    assert [r.messages[-1].text for r in fast.requests] == ["A", "B"]


# ----- client errors --------------------------------------------------------------------------

REQUESTS = "batch.input_config.requests.requests"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "'batch'"),
        ({"batch": {"displayName": "x"}}, "batch.input_config"),
        ({"batch": {"inputConfig": {"requests": {"requests": []}}}}, REQUESTS),
        ({"batch": {"inputConfig": {"fileName": "files/Bad_Name"}}}, "file_name"),
        (
            {"batch": {"inputConfig": {"fileName": "files/abc", "requests": {"requests": []}}}},
            "not both",
        ),
        ({"batch": {"inputConfig": {"requests": {"requests": [{"metadata": {}}]}}}}, "request"),
        ({"batch": {"inputConfig": {"requests": {"requests": [{"request": {}}]}}}}, "contents"),
        ({"batch": {"webhookConfig": {}, "inputConfig": {}}}, "webhook_config"),
        ({"batch": {"state": "BATCH_STATE_SUCCEEDED"}}, "state"),
        ({"batch": {"model": "models/no-such-model", **inline("Q")["batch"]}}, "batch.model"),
    ],
)
async def test_a_bad_batch_is_a_400(api: InProcessApi, body: dict[str, Any], fragment: str) -> None:
    assert_envelope(await create(api, body), 400, "INVALID_ARGUMENT", fragment)


async def test_a_bad_request_inside_is_named_by_its_index(api: InProcessApi) -> None:
    body = inline("Fine", "Broken")
    body["batch"]["inputConfig"]["requests"]["requests"][1]["request"]["contents"][0]["role"] = (
        "robot"
    )
    response = await create(api, body)
    assert_envelope(response, 400, "INVALID_ARGUMENT", f"{REQUESTS}[1].request", "role")
    assert (await api.client.get("/v1beta/batches", headers=api.headers)).json() == {
        "operations": []
    }


async def test_an_unknown_model_is_a_404(api: InProcessApi) -> None:
    assert_envelope(await create(api, inline("Q"), model="no-such-model"), 404, "NOT_FOUND")


async def test_limits_on_requests_and_active_batches(make_api: MakeApi) -> None:
    engine = ScriptedEngine(["slow"] * 100, delay=0.05)
    api = await make_api(
        engines={"smollm2-135m-instruct": engine},
        limits={"max_batch_requests": 2, "max_tenant_batches": 1},
    )
    assert_envelope(
        await create(api, inline("A", "B", "C")), 400, "INVALID_ARGUMENT", "max_batch_requests"
    )
    name = (await make_batch(api, "A"))["name"]
    assert_envelope(await create(api, inline("B")), 429, "RESOURCE_EXHAUSTED", "max_tenant")
    assert (await create(api, inline("B"), headers=OTHER_TENANT)).status_code == 200
    await api.client.post(f"/v1beta/{name}:cancel", headers=api.headers)
    assert (await create(api, inline("B"))).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1beta/batches/NOPE"),
        ("POST", "/v1beta/batches/abc:fly"),
        ("POST", "/v1beta/batches/abc"),
        ("GET", "/v1beta/batches/abcdef"),
    ],
)
async def test_unknown_batches_and_methods_are_404s(
    api: InProcessApi, method: str, path: str
) -> None:
    response = await api.client.request(method, path, headers=api.headers)
    assert_envelope(response, 404, "NOT_FOUND")


# ----- input from a JSONL file ----------------------------------------------------------------


def file_line(key: str, text: str) -> dict[str, Any]:
    return {"key": key, "request": {"contents": [{"parts": [{"text": text}]}]}}


def file_batch(name: str) -> dict[str, Any]:
    return {"batch": {"displayName": "from a file", "inputConfig": {"fileName": name}}}


async def test_a_batch_from_a_jsonl_file_answers_in_a_responses_file(api: InProcessApi) -> None:
    uploaded = await api.upload(
        jsonl(file_line("first", "One?"), b"", file_line("second", "Two?")), "application/jsonl"
    )
    response = await create(api, file_batch(uploaded["name"]))
    assert response.status_code == 200, response.text
    name = response.json()["name"]
    done = await wait_done(api, name)
    assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert done["metadata"]["batchStats"]["successfulRequestCount"] == "2"
    output = done["metadata"]["output"]
    assert output == {"responsesFile": f"files/batch-{name.removeprefix('batches/')}"}
    assert done["response"]["responsesFile"] == output["responsesFile"]
    # The responses file is the tenant's, like any other file, and downloads as JSONL.
    file = await api.client.get(f"/v1beta/{output['responsesFile']}", headers=api.headers)
    assert file.json()["mimeType"] == "application/jsonl"
    download = await api.client.get(
        f"/v1beta/{output['responsesFile']}:download",
        params={"alt": "media"},
        headers=api.headers,
    )
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert [line["key"] for line in lines] == ["first", "second"]
    assert [line["response"]["candidates"][0]["content"]["parts"][0]["text"] for line in lines] == [
        "Hello, world",
        "Hello, world",
    ]
    assert [r.messages[-1].text for r in api.engine.requests] == ["One?", "Two?"]
    other = await api.client.get(f"/v1beta/{output['responsesFile']}", headers=OTHER_TENANT)
    assert other.status_code == 404


async def test_a_cancelled_file_batch_writes_its_cancelled_lines(make_api: MakeApi) -> None:
    engine = ScriptedEngine(["slow"] * 100, delay=0.05)
    api = await make_api(engines={"smollm2-135m-instruct": engine}, batch_concurrency=1)
    uploaded = await api.upload(jsonl(file_line("a", "A"), file_line("b", "B")))
    name = (await create(api, file_batch(uploaded["name"]))).json()["name"]
    await wait_for(lambda: engine.streams, what="the first request to start")
    await api.client.post(f"/v1beta/{name}:cancel", headers=api.headers)
    done = (await get(api, name)).json()
    assert done["metadata"]["state"] == "BATCH_STATE_CANCELLED"
    download = await api.client.get(
        f"/v1beta/{done['metadata']['output']['responsesFile']}:download",
        params={"alt": "media"},
        headers=api.headers,
    )
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert [(line["key"], line["error"]["code"]) for line in lines] == [("a", 1), ("b", 1)]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not json\n", "line 1: not JSON"),
        (jsonl(file_line("a", "A"), {"key": "b"}), "line 2: no 'request'"),
        (jsonl(file_line("a", "A"), {"request": {}}), "line 2"),
        (jsonl({"key": "a", "request": {"contents": []}, "extra": 1}), "extra"),
        (b"\n\n", "no requests"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
async def test_a_bad_input_file_is_a_400_naming_the_line(
    api: InProcessApi, content: bytes, fragment: str
) -> None:
    uploaded = await api.upload(content)
    response = await create(api, file_batch(uploaded["name"]))
    assert_envelope(response, 400, "INVALID_ARGUMENT", "file_name", fragment)


async def test_another_tenants_input_file_is_not_found(api: InProcessApi) -> None:
    uploaded = await api.upload(jsonl(file_line("a", "A")))
    response = await create(api, file_batch(uploaded["name"]), headers=OTHER_TENANT)
    assert_envelope(response, 404, "NOT_FOUND", uploaded["name"])
