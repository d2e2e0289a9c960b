"""Embeddings in-process over the scripted engine: ``:embedContent``, ``:batchEmbedContents``
and ``/openai/embeddings`` (task prompts, titles, Matryoshka truncation, base64), and every
client error as a 400 in the surface's envelope, never a 500."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import pytest

from gemserve.errors import ResourceExhausted
from tests.support.envelope import assert_envelope, assert_openai_error
from tests.support.inprocess import InProcessApi, MakeApi

BEARER = {"authorization": "Bearer inprocess-test-key"}
MODEL = "text-embedding-004"  # an embedding alias of the default model


def content(text: str) -> dict[str, Any]:
    return {"parts": [{"text": text}]}


async def classic(
    api: InProcessApi, body: Any, method: str = "batchEmbedContents", model: str = MODEL
) -> httpx.Response:
    return await api.client.post(f"/v1beta/models/{model}:{method}", json=body, headers=api.headers)


async def openai(api: InProcessApi, **body: Any) -> httpx.Response:
    payload = {"model": "gemini-embedding-001", "input": "Hi", **body}
    return await api.client.post("/v1beta/openai/embeddings", json=payload, headers=BEARER)


async def test_batch_embed_contents_answers_one_unit_vector_per_request(api: InProcessApi) -> None:
    body = {
        "requests": [
            {"model": f"models/{MODEL}", "content": content("one two")},
            {"model": f"models/{MODEL}", "content": content("three")},
        ]
    }
    response = await classic(api, body)
    assert response.status_code == 200, response.text
    data = response.json()
    values = [np.array(e["values"]) for e in data["embeddings"]]
    assert [v.shape for v in values] == [(8,), (8,)]
    assert [round(float(np.linalg.norm(v)), 5) for v in values] == [1.0, 1.0]
    assert data["usageMetadata"]["promptTokenCount"] == 3
    assert api.engine.embedded == [["one two", "three"]]


async def test_embed_content_answers_one_embedding(api: InProcessApi) -> None:
    response = await classic(
        api, {"content": content("Hi")}, "embedContent", "gemini-embedding-001"
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["embedding"]["values"]) == 8


async def test_task_types_frame_the_text_and_a_title_goes_with_documents(
    api: InProcessApi,
) -> None:
    body = {
        "requests": [
            {"content": content("cats"), "taskType": "RETRIEVAL_QUERY"},
            {"content": content("Cats purr."), "task_type": "RETRIEVAL_DOCUMENT", "title": "Pets"},
            {"content": content("dogs"), "taskType": "RETRIEVAL_DOCUMENT"},
            {"content": content("plain"), "taskType": "TASK_TYPE_UNSPECIFIED"},
            {"content": {"parts": [{"text": "a"}, {"text": "b"}]}},
        ]
    }
    assert (await classic(api, body)).status_code == 200
    assert api.engine.embedded == [
        [
            "task: search result | query: cats",
            "title: Pets | text: Cats purr.",
            "title: none | text: dogs",
            "plain",
            "a\nb",
        ]
    ]


async def test_a_model_entry_can_replace_a_task_prompt(make_api: MakeApi) -> None:
    spec = {
        "id": "smollm2-135m-instruct",
        "source": "/nowhere/model.gguf",
        "embedding_prompts": {"retrieval_query": "query: {text}"},
    }
    api = await make_api(models=[spec])
    body = {
        "requests": [
            {"content": content("cats"), "taskType": "RETRIEVAL_QUERY"},
            {"content": content("cats"), "taskType": "CLUSTERING"},
        ]
    }
    assert (await classic(api, body)).status_code == 200
    assert api.engine.embedded == [["query: cats", "task: clustering | query: cats"]]


async def test_output_dimensionality_truncates_and_renormalises(api: InProcessApi) -> None:
    whole = (await classic(api, {"requests": [{"content": content("x y")}]})).json()
    short = await classic(
        api, {"requests": [{"content": content("x y"), "outputDimensionality": 3}]}
    )
    assert short.status_code == 200, short.text
    full = np.array(whole["embeddings"][0]["values"])
    cut = np.array(short.json()["embeddings"][0]["values"])
    assert cut.shape == (3,)
    assert np.linalg.norm(cut) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(cut, full[:3] / np.linalg.norm(full[:3]), atol=1e-6)


async def test_openai_embeddings_in_floats_and_base64(api: InProcessApi) -> None:
    floats = await openai(api, input=["a b", "c"], encoding_format="float")
    assert floats.status_code == 200, floats.text
    data = floats.json()
    assert data["object"] == "list"
    assert data["model"] == "gemini-embedding-001"
    assert [d["index"] for d in data["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in data["data"])
    assert data["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    encoded = (await openai(api, input=["a b", "c"], encoding_format="base64")).json()
    for as_float, as_text in zip(data["data"], encoded["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(as_text["embedding"]), dtype="<f4")
        assert np.allclose(decoded, as_float["embedding"], atol=1e-7)


async def test_openai_takes_token_ids_and_dimensions(api: InProcessApi) -> None:
    response = await openai(api, input=[[1, 2, 3], [4]], dimensions=4)
    assert response.status_code == 200, response.text
    assert [len(d["embedding"]) for d in response.json()["data"]] == [4, 4]
    single = await openai(api, input=[5, 6])
    assert len(single.json()["data"]) == 1
    assert api.engine.embedded[1] == [[5, 6]]


@pytest.mark.parametrize(
    ("method", "body", "fragments"),
    [
        ("batchEmbedContents", {}, ("Missing required field 'requests'",)),
        ("batchEmbedContents", {"requests": []}, ("Missing required field 'requests'",)),
        ("batchEmbedContents", [], ("must be a JSON object",)),
        ("batchEmbedContents", {"requests": [{}]}, ("'requests[0].content'",)),
        ("batchEmbedContents", {"requests": [{"content": {}}]}, ("'requests[0].content.parts'",)),
        (
            "batchEmbedContents",
            {"requests": [{"content": content("")}]},
            ("'requests[0].content'", "empty"),
        ),
        (
            "batchEmbedContents",
            {"requests": [{"content": content("a")}, {"content": content("a"), "taskType": "X"}]},
            ("'requests[1].task_type'", "RETRIEVAL_QUERY"),
        ),
        (
            "batchEmbedContents",
            {"requests": [{"content": content("a"), "title": "T"}]},
            ("'requests[0].title'", "RETRIEVAL_DOCUMENT"),
        ),
        (
            "batchEmbedContents",
            {"requests": [{"content": content("a"), "outputDimensionality": 9}]},
            ("'requests[0].output_dimensionality'", "9", "8"),
        ),
        (
            "batchEmbedContents",
            {"requests": [{"content": content("a"), "outputDimensionality": 0}]},
            ("'requests[0].output_dimensionality'",),
        ),
        (
            "batchEmbedContents",
            {"requests": [{"content": content("a"), "outputDimensionality": True}]},
            ("'requests[0].output_dimensionality'",),
        ),
        (
            "batchEmbedContents",
            {"requests": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png"}}]}}]},
            ("'requests[0].content.parts[0]'", "text parts"),
        ),
        (
            "batchEmbedContents",
            {"requests": [{"content": {"parts": [{"text": "a", "thought": True}]}}]},
            ("'requests[0].content.parts[0]'",),
        ),
        (
            "batchEmbedContents",
            {"requests": [{"model": "models/gemini-2.5-pro-x", "content": content("a")}]},
            ("gemini-2.5-pro-x",),
        ),
        ("batchEmbedContents", {"requests": [{"contents": content("a")}]}, ("'contents'",)),
        (
            "batchEmbedContents",
            {"requests": [{"content": content(" ".join(["w"] * 5000))}]},
            ("'requests[0].content'", "5000 tokens"),
        ),
        ("embedContent", {}, ("Missing required field 'content'",)),
        ("embedContent", {"content": content("a"), "outputDimensionality": 100}, ("'output_dim",)),
    ],
)
async def test_classic_client_errors_are_400s_naming_the_field(
    api: InProcessApi, method: str, body: Any, fragments: tuple[str, ...]
) -> None:
    response = await classic(api, body, method)
    status = 404 if "gemini-2.5-pro-x" in fragments else 400
    assert_envelope(
        response, status, "NOT_FOUND" if status == 404 else "INVALID_ARGUMENT", *fragments
    )


async def test_an_items_model_must_be_the_paths(make_api: MakeApi) -> None:
    api = await make_api(models=[{"id": "other", "source": "/nowhere/other.gguf"}])
    body = {"requests": [{"model": "models/other", "content": content("a")}]}
    response = await classic(api, body)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "'requests[0].model'")
    same = {"requests": [{"model": "models/smollm2-135m-instruct", "content": content("a")}]}
    assert (await classic(api, same)).status_code == 200


async def test_more_inputs_than_the_limit_are_a_400(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_embedding_inputs": 2})
    body = {"requests": [{"content": content("a")}] * 3}
    assert_envelope(await classic(api, body), 400, "INVALID_ARGUMENT", "'requests'", "at most 2")
    oai = await openai(api, input=["a", "b", "c"])
    assert_openai_error(oai, 400, "invalid_request_error", "'input'", "at most 2")
    assert api.engine.embedded == []


async def test_text_over_max_text_chars_is_a_400(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_text_chars": 10})
    response = await classic(api, {"requests": [{"content": content("x" * 11)}]})
    assert_envelope(response, 400, "INVALID_ARGUMENT", "'requests'", "11 characters")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({"input": []}, ("'input'",)),
        ({"input": ""}, ("'input'", "empty")),
        ({"input": ["a", ""]}, ("'input[1]'", "empty")),
        ({"input": [[1], []]}, ("'input[1]'", "nothing to embed")),
        ({"input": 3}, ("'input'",)),
        ({"input": [1.5]}, ("'input",)),
        ({"encoding_format": "int8"}, ("'encoding_format'",)),
        ({"dimensions": 0}, ("'dimensions'",)),
        ({"dimensions": 9}, ("'dimensions'", "9")),
        ({"task_type": "x"}, ("'task_type'",)),
        ({"model": None}, ("'model'",)),
    ],
)
async def test_openai_client_errors_are_400s_in_openais_envelope(
    api: InProcessApi, body: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    response = await openai(api, **body)
    assert_openai_error(response, 400, "invalid_request_error", *fragments)


async def test_openai_unknown_model_and_missing_key(api: InProcessApi) -> None:
    assert_openai_error(await openai(api, model="gpt-17"), 404, "not_found_error", "gpt-17")
    response = await api.client.post("/v1beta/openai/embeddings", json={"model": "x", "input": "a"})
    assert_openai_error(response, 403, "permission_error")


async def test_a_busy_or_loading_engine_is_a_retryable_error(api: InProcessApi) -> None:
    api.engine.refuse = ResourceExhausted("busy")
    response = await classic(api, {"requests": [{"content": content("a")}]})
    assert_envelope(response, 429, "RESOURCE_EXHAUSTED")
    assert response.headers["retry-after"] == "1"
    api.engine.refuse = None
    api.engine.loaded = False
    assert_envelope(
        await classic(api, {"requests": [{"content": content("a")}]}), 503, "UNAVAILABLE"
    )


async def test_models_list_embedding_methods(api: InProcessApi) -> None:
    response = await api.client.get("/v1beta/models/text-embedding-004", headers=api.headers)
    assert response.status_code == 200
    methods = response.json()["supportedGenerationMethods"]
    assert {"countTokens", "embedContent", "batchEmbedContents"} <= set(methods)
