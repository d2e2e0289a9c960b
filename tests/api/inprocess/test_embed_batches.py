"""Embedding batches in-process: ``models/{model}:asyncBatchEmbedContent`` with inline
requests or a JSONL file, run in the background by the batch runner through the embedding
service, polled with GET until done; the same numbers as ``:embedContent``, cancel, delete,
list beside generate batches, tenant isolation, waiting out a full queue, resuming after a
restart, and every client error as a 400 in Google's envelope."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gemserve.engine import EmbeddingInput, Embeddings
from gemserve.errors import ResourceExhausted
from tests.support.batches import all_succeeded, jsonl, restartable_settings, wait_done
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi, serve_in_process
from tests.support.scripted import ScriptedEngine
from tests.support.wait import wait_for

MODEL = "gemini-embedding-001"  # an embedding alias of the default model
ENGINE = "smollm2-135m-instruct"
OTHER_TENANT = {"x-goog-api-key": "another-tenant-key"}
TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatchOutput"
REQUESTS = "batch.input_config.requests.requests"


class GatedEngine(ScriptedEngine):
    """Embeds only once ``gate`` opens; records the calls that started and were cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started: list[list[EmbeddingInput]] = []
        self.cancelled = 0

    async def embed(self, inputs: Any) -> Embeddings:
        self.started.append(list(inputs))
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await super().embed(inputs)


def request(text: str, **config: Any) -> dict[str, Any]:
    """An EmbedContentRequest as the SDKs put it in a batch (no model)."""
    return {"content": {"parts": [{"text": text}]}, **config}


def inline(*requests: dict[str, Any], display_name: str = "vectors") -> dict[str, Any]:
    """The body ``batches.create_embeddings`` sends, each request with metadata of its own."""
    items = [{"request": r, "metadata": {"key": f"r{i}"}} for i, r in enumerate(requests)]
    return {
        "batch": {"displayName": display_name, "inputConfig": {"requests": {"requests": items}}}
    }


async def create(
    api: InProcessApi,
    body: Any,
    model: str = MODEL,
    headers: dict[str, str] | None = None,
    version: str = "v1beta",
) -> httpx.Response:
    return await api.client.post(
        f"/{version}/models/{model}:asyncBatchEmbedContent",
        json=body,
        headers=api.headers if headers is None else headers,
    )


async def make_batch(api: InProcessApi, *texts: str) -> str:
    response = await create(api, inline(*[request(t) for t in texts]))
    assert response.status_code == 200, response.text
    name: str = response.json()["name"]
    return name


async def get(api: InProcessApi, name: str) -> dict[str, Any]:
    body: dict[str, Any] = (await api.client.get(f"/v1/{name}", headers=api.headers)).json()
    return body


def answers(operation: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = operation["metadata"]["output"]["inlinedResponses"][
        "inlinedResponses"
    ]
    return items


async def embed_content(api: InProcessApi, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(
        f"/v1beta/models/{MODEL}:embedContent", json=body, headers=api.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# ----- the round trip -------------------------------------------------------------------------


async def test_an_embedding_batch_answers_what_embed_content_answers(api: InProcessApi) -> None:
    requests = [
        request("The cat sat on the mat."),
        request("cats", taskType="RETRIEVAL_QUERY"),
        request("Cats purr.", task_type="RETRIEVAL_DOCUMENT", title="Pets"),
        request("short vector", outputDimensionality=4),
    ]
    response = await create(api, inline(*requests))
    assert response.status_code == 200, response.text
    operation = response.json()
    name = operation["name"]
    assert name.startswith("batches/")
    metadata = operation["metadata"]
    assert metadata["@type"] == TYPE
    assert metadata["model"] == f"models/{MODEL}"
    assert metadata["displayName"] == "vectors"
    assert metadata["state"] == "BATCH_STATE_PENDING"
    assert metadata["batchStats"]["requestCount"] == "4"
    assert operation["done"] is False

    done = await wait_done(api, name)
    metadata = done["metadata"]
    assert metadata["state"] == "BATCH_STATE_SUCCEEDED"
    assert metadata["batchStats"] == all_succeeded(4)
    assert "endTime" in metadata
    got = answers(done)
    assert [a["metadata"] for a in got] == [{"key": f"r{i}"} for i in range(4)]
    assert done["response"]["@type"] == OUTPUT_TYPE
    assert done["response"]["inlinedResponses"] == metadata["output"]["inlinedResponses"]
    # Each request framed by its task, as :embedContent frames it, one request per call.
    assert sorted(api.engine.embedded) == [
        ["The cat sat on the mat."],
        ["short vector"],
        ["task: search result | query: cats"],
        ["title: Pets | text: Cats purr."],
    ]
    # The very numbers (and usage) :embedContent answers for the same request.
    for answer, body in zip(got, requests, strict=True):
        assert answer["response"] == await embed_content(api, body)
    assert [len(a["response"]["embedding"]["values"]) for a in got] == [8, 8, 8, 4]


async def test_a_request_may_repeat_the_model_and_any_version_serves(api: InProcessApi) -> None:
    body = inline(request("hi", model=f"models/{MODEL}"))
    body["batch"]["model"] = "models/text-embedding-004"  # an alias of the same model
    response = await create(api, body, model=f"models/{MODEL}", version="v1")
    assert response.status_code == 200, response.text
    done = await wait_done(api, response.json()["name"])
    assert done["metadata"]["batchStats"]["successfulRequestCount"] == "1"


async def test_a_failure_at_run_time_is_that_requests_error(api: InProcessApi) -> None:
    api.engine.context_length = 3  # the engine refuses a text over 3 words when it runs
    name = await make_batch(api, "fits", "one two three four five")
    done = await wait_done(api, name)
    assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert done["metadata"]["batchStats"]["failedRequestCount"] == "1"
    ok, failed = answers(done)
    assert "embedding" in ok["response"]
    assert failed["error"]["code"] == 3  # google.rpc.Code INVALID_ARGUMENT
    assert "5 tokens" in failed["error"]["message"]
    assert failed["metadata"] == {"key": "r1"}


async def test_a_full_queue_is_waited_out(api: InProcessApi) -> None:
    api.engine.refuse = ResourceExhausted("The queue is full.")
    name = await make_batch(api, "patience")
    await wait_for(lambda: len(api.engine.embedded) >= 2, what="a retry")
    assert (await get(api, name))["metadata"]["state"] == "BATCH_STATE_RUNNING"
    api.engine.refuse = None
    done = await wait_done(api, name)
    assert done["metadata"]["batchStats"]["successfulRequestCount"] == "1"


# ----- get, list, cancel, delete --------------------------------------------------------------


async def test_list_shows_both_kinds_and_every_call_is_per_tenant(api: InProcessApi) -> None:
    embed = await make_batch(api, "vector")
    generate = await api.client.post(
        "/v1beta/models/gemini-2.5-flash:batchGenerateContent",
        json={
            "batch": {
                "inputConfig": {
                    "requests": {
                        "requests": [{"request": {"contents": [{"parts": [{"text": "Hi"}]}]}}]
                    }
                }
            }
        },
        headers=api.headers,
    )
    assert generate.status_code == 200, generate.text
    await wait_done(api, embed)
    listed = (await api.client.get("/v1beta/batches", headers=api.headers)).json()["operations"]
    kinds = {op["name"]: op["metadata"]["@type"].rsplit(".", 1)[1] for op in listed}
    assert kinds == {embed: "EmbedContentBatch", generate.json()["name"]: "GenerateContentBatch"}
    assert all("output" not in op["metadata"] for op in listed)
    for response in (
        await api.client.get(f"/v1beta/{embed}", headers=OTHER_TENANT),
        await api.client.post(f"/v1beta/{embed}:cancel", headers=OTHER_TENANT),
        await api.client.delete(f"/v1beta/{embed}", headers=OTHER_TENANT),
    ):
        assert_envelope(response, 404, "NOT_FOUND", embed)
    deleted = await api.client.delete(f"/v1beta/{embed}", headers=api.headers)
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert_envelope(await api.client.get(f"/v1beta/{embed}", headers=api.headers), 404, "NOT_FOUND")


async def test_cancel_stops_the_embedding_in_flight(make_api: MakeApi) -> None:
    engine = GatedEngine()
    api = await make_api(engines={ENGINE: engine}, batch_concurrency=1)
    name = await make_batch(api, "a", "b", "c")
    await wait_for(lambda: engine.started, what="the first embedding to start")
    cancelled = await api.client.post(f"/v1beta/{name}:cancel", headers=api.headers)
    assert (cancelled.status_code, cancelled.json()) == (200, {})
    done = await get(api, name)
    assert done["done"] is True
    assert done["metadata"]["state"] == "BATCH_STATE_CANCELLED"
    assert [a["error"]["code"] for a in answers(done)] == [1, 1, 1]  # CANCELLED
    assert engine.cancelled == 1
    assert len(engine.started) == 1  # the others never started


async def test_a_running_batch_is_deleted(make_api: MakeApi) -> None:
    engine = GatedEngine()
    api = await make_api(engines={ENGINE: engine}, batch_concurrency=1)
    name = await make_batch(api, "a", "b")
    await wait_for(lambda: engine.started, what="the first embedding to start")
    deleted = await api.client.delete(f"/v1beta/{name}", headers=api.headers)
    assert deleted.status_code == 200
    assert engine.cancelled == 1
    assert_envelope(await api.client.get(f"/v1beta/{name}", headers=api.headers), 404, "NOT_FOUND")


# ----- restarts -------------------------------------------------------------------------------


async def test_an_embedding_batch_interrupted_by_a_restart_is_resumed(
    tmp_path: Path, migrated_database: Path
) -> None:
    settings = restartable_settings(tmp_path, migrated_database)
    gated = GatedEngine()
    async with serve_in_process(settings, {ENGINE: gated}) as first:
        name = await make_batch(first, "A", "B")
        await wait_for(lambda: gated.started, what="the first embedding to start")
    # Shut down mid-request: nothing was answered, nothing is lost.
    assert gated.cancelled == 1
    async with serve_in_process(settings) as second:
        resumed = await wait_done(second, name)
        assert resumed["metadata"]["@type"] == TYPE
        assert resumed["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
        assert second.engine.embedded == [["A"], ["B"]]
        for answer, text in zip(answers(resumed), ("A", "B"), strict=True):
            assert answer["response"] == await embed_content(second, request(text))


# ----- input from a JSONL file ----------------------------------------------------------------


def file_batch(name: str) -> dict[str, Any]:
    # The SDKs write this one field in snake_case.
    return {"batch": {"displayName": "from a file", "inputConfig": {"file_name": name}}}


async def test_a_jsonl_file_batch_answers_in_a_responses_file(api: InProcessApi) -> None:
    uploaded = await api.upload(
        jsonl(
            {"key": "first", "request": request("One")},
            {"key": "second", "request": request("Two", output_dimensionality=2)},
        ),
        "application/jsonl",
    )
    response = await create(api, file_batch(uploaded["name"]))
    assert response.status_code == 200, response.text
    name = response.json()["name"]
    done = await wait_done(api, name)
    assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    output = done["metadata"]["output"]
    assert output == {"responsesFile": f"files/batch-{name.removeprefix('batches/')}"}
    assert done["response"] == {"@type": OUTPUT_TYPE, **output}
    download = await api.client.get(
        f"/v1beta/{output['responsesFile']}:download",
        params={"alt": "media"},
        headers=api.headers,
    )
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert [line["key"] for line in lines] == ["first", "second"]
    assert lines[0]["response"] == await embed_content(api, request("One"))
    assert len(lines[1]["response"]["embedding"]["values"]) == 2


# ----- client errors --------------------------------------------------------------------------


IMAGE = {"inlineData": {"mimeType": "image/png", "data": "AA=="}}
BOTH = {"fileName": "files/abc", "requests": {"requests": []}}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "'batch'"),
        ([], "JSON object"),
        ({"batch": {"displayName": "x"}}, "batch.input_config"),
        ({"batch": {"inputConfig": {"requests": {"requests": []}}}}, REQUESTS),
        ({"batch": {"inputConfig": BOTH}}, "not both"),
        ({"batch": {"inputConfig": {"requests": {"requests": [{"metadata": {}}]}}}}, "request"),
        ({"batch": {"inputConfig": {}, "state": "BATCH_STATE_SUCCEEDED"}}, "state"),
        ({"batch": {**inline(request("Q"))["batch"], "model": "models/nope"}}, "batch.model"),
        # A generate request is no embedding request.
        (inline({"contents": [{"parts": [{"text": "Hi"}]}]}), f"{REQUESTS}[0].request"),
        (inline(request("fine"), {}), f"{REQUESTS}[1].request': Missing required field 'content'"),
        (inline(request("")), "the text is empty"),
        (inline({"content": {"parts": [IMAGE]}}), "text parts"),
        (inline(request("x", taskType="DANCING")), "task_type"),
        (inline(request("x", title="T")), "RETRIEVAL_DOCUMENT"),
        (inline(request("x", outputDimensionality=9)), "9 dimensions"),
        (inline(request("x", outputDimensionality=0)), "output_dimensionality"),
        (
            inline(request("x", model="models/nope")),
            f"{REQUESTS}[0].request': Invalid value at 'model'",
        ),
    ],
)
async def test_a_bad_batch_is_a_400(api: InProcessApi, body: Any, fragment: str) -> None:
    assert_envelope(await create(api, body), 400, "INVALID_ARGUMENT", fragment)
    assert (await api.client.get("/v1beta/batches", headers=api.headers)).json() == {
        "operations": []
    }


async def test_a_requests_model_must_be_the_batches(make_api: MakeApi) -> None:
    api = await make_api(models=[{"id": "other", "source": "/nowhere/other.gguf"}])
    response = await create(api, inline(request("a", model="models/other")))
    assert_envelope(response, 400, "INVALID_ARGUMENT", f"{REQUESTS}[0].request", "'model'")
    body = inline(request("a"))
    body["batch"]["model"] = "models/other"
    assert_envelope(await create(api, body), 400, "INVALID_ARGUMENT", "'batch.model'")


async def test_an_unknown_model_is_a_404(api: InProcessApi) -> None:
    assert_envelope(
        await create(api, inline(request("Q")), model="no-such-model"), 404, "NOT_FOUND"
    )


async def test_a_model_that_makes_no_embeddings_is_a_400(api: InProcessApi) -> None:
    api.engine.embedding_dimensions = None  # type: ignore[assignment]
    response = await create(api, inline(request("Q")))
    assert_envelope(response, 400, "INVALID_ARGUMENT", "does not make embeddings")


async def test_limits_on_requests_and_active_batches(make_api: MakeApi) -> None:
    engine = GatedEngine()
    api = await make_api(
        engines={ENGINE: engine},
        limits={"max_batch_requests": 2, "max_tenant_batches": 1, "max_text_chars": 10},
    )
    three = inline(request("A"), request("B"), request("C"))
    assert_envelope(await create(api, three), 400, "INVALID_ARGUMENT", "max_batch_requests")
    too_long = inline(request("x" * 11))
    assert_envelope(await create(api, too_long), 400, "INVALID_ARGUMENT", f"{REQUESTS}[0]", "11")
    uploaded = await api.upload(jsonl(*[{"key": k, "request": request(k)} for k in "abc"]))
    assert_envelope(
        await create(api, file_batch(uploaded["name"])), 400, "INVALID_ARGUMENT", "file_name"
    )
    name = await make_batch(api, "A")
    assert_envelope(
        await create(api, inline(request("B"))), 429, "RESOURCE_EXHAUSTED", "max_tenant"
    )
    assert (await create(api, inline(request("B")), headers=OTHER_TENANT)).status_code == 200
    await api.client.post(f"/v1beta/{name}:cancel", headers=api.headers)
    assert (await create(api, inline(request("B")))).status_code == 200


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not json\n", "line 1: not JSON"),
        (jsonl({"key": "a", "request": request("A")}, {"key": "b"}), "line 2: no 'request'"),
        (jsonl({"key": "a", "request": {"contents": [{"parts": [{"text": "A"}]}]}}), "line 1"),
        (jsonl({"key": "a", "request": request("")}), "line 1"),
    ],
)
async def test_a_bad_input_file_is_a_400_naming_the_line(
    api: InProcessApi, content: bytes, fragment: str
) -> None:
    uploaded = await api.upload(content)
    response = await create(api, file_batch(uploaded["name"]))
    assert_envelope(response, 400, "INVALID_ARGUMENT", "file_name", fragment)


async def test_another_tenants_input_file_is_not_found(api: InProcessApi) -> None:
    uploaded = await api.upload(jsonl({"key": "a", "request": request("A")}))
    response = await create(api, file_batch(uploaded["name"]), headers=OTHER_TENANT)
    assert_envelope(response, 404, "NOT_FOUND", uploaded["name"])


async def test_the_model_resource_lists_the_method(api: InProcessApi) -> None:
    response = await api.client.get(f"/v1beta/models/{MODEL}", headers=api.headers)
    assert "asyncBatchEmbedContent" in response.json()["supportedGenerationMethods"]
