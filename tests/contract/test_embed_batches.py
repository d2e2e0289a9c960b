"""Embedding batches (``models/{model}:asyncBatchEmbedContent``) against a live gemserve,
driven by the official Python SDK (``client.batches.create_embeddings``, then ``get``,
``list``, ``cancel``, ``delete``) and the JS SDK (``js/embed_batches.mjs``): the vectors a
batch answers are the ones ``models.embed_content`` answers for the same texts."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.support.contract import (
    API_KEY,
    responses_file_lines,
    run_js_example,
    upload_jsonl,
    wait_batch_done,
)
from tests.support.server import LiveServer

pytestmark = pytest.mark.contract

EMBEDDING_MODEL = "gemini-embedding-001"  # an alias of the default model
SIZE = 576  # SmolLM2-135M's hidden size
TEXTS = [
    "The cat sat on the mat.",
    "A cat was sitting on the rug.",
    "Stock markets fell sharply after the interest rate decision.",
]


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> genai.Client:
    return genai.Client(
        api_key=API_KEY, http_options=types.HttpOptions(base_url=live_server.base_url)
    )


def unit(values: Any) -> npt.NDArray[np.float64]:
    vector = np.array(values, dtype=np.float64)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    return vector


def create(client: genai.Client, src: Any, **config: Any) -> types.BatchJob:
    """``batches.create_embeddings``, which the SDK marks experimental (with a warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return client.batches.create_embeddings(model=EMBEDDING_MODEL, src=src, config=config)


def test_an_embedding_batch_answers_what_embed_content_answers(client: genai.Client) -> None:
    config = {"task_type": "SEMANTIC_SIMILARITY", "output_dimensionality": 64}
    job = create(
        client,
        {"inlined_requests": {"contents": TEXTS, "config": config}},
        display_name="contract embeddings",
    )
    assert job.name is not None
    assert job.name.startswith("batches/")
    assert job.display_name == "contract embeddings"
    assert job.model == f"models/{EMBEDDING_MODEL}"
    assert job.state in (types.JobState.JOB_STATE_PENDING, types.JobState.JOB_STATE_RUNNING)

    done = wait_batch_done(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.end_time is not None
    assert done.dest is not None
    # The SDK files the responses under inlined_embed_content_responses: they hold embeddings.
    assert done.dest.inlined_responses is None
    responses = done.dest.inlined_embed_content_responses
    assert responses is not None
    assert len(responses) == 3
    batched = []
    for answer in responses:
        assert answer.error is None
        assert answer.response is not None
        assert answer.response.embedding is not None
        batched.append(unit(answer.response.embedding.values))
    direct = client.models.embed_content(
        model=EMBEDDING_MODEL, contents=TEXTS, config=types.EmbedContentConfig(**config)
    )
    assert direct.embeddings is not None
    for vector, embedding in zip(batched, direct.embeddings, strict=True):
        assert vector.shape == (64,)
        assert np.allclose(vector, unit(embedding.values), atol=1e-4)
    a, b, c = batched
    assert float(a @ b) > float(a @ c)

    listed = [b.name for b in client.batches.list(config={"page_size": 50})]
    assert job.name in listed
    client.batches.delete(name=job.name)
    with pytest.raises(genai_errors.ClientError) as info:
        client.batches.get(name=job.name)
    assert info.value.code == 404


def test_an_embedding_batch_from_a_jsonl_file_answers_in_a_file(
    client: genai.Client, tmp_path: Path
) -> None:
    path = tmp_path / "embed.jsonl"
    lines = [
        {"key": key, "request": {"content": {"parts": [{"text": text}]}}}
        for key, text in zip(("cat", "rug", "stocks"), TEXTS, strict=True)
    ]
    job = create(client, {"file_name": upload_jsonl(client, path, lines)})
    assert job.name is not None
    done = wait_batch_done(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    results = responses_file_lines(client, done)
    assert [r["key"] for r in results] == ["cat", "rug", "stocks"]
    direct = client.models.embed_content(model=EMBEDDING_MODEL, contents=TEXTS)
    assert direct.embeddings is not None
    for result, embedding in zip(results, direct.embeddings, strict=True):
        vector = unit(result["response"]["embedding"]["values"])
        assert vector.shape == (SIZE,)
        assert np.allclose(vector, unit(embedding.values), atol=1e-4)
    client.batches.delete(name=job.name)


def test_a_cancelled_embedding_batch_ends_cancelled(client: genai.Client) -> None:
    texts = [f"Sentence number {i} about ships and the sea. " * 40 for i in range(40)]
    job = create(client, {"inlined_requests": {"contents": texts}})
    assert job.name is not None
    client.batches.cancel(name=job.name)
    done = wait_batch_done(client, job.name)
    # A fast machine may have embedded every text before the cancel arrived.
    assert done.state in (
        types.JobState.JOB_STATE_CANCELLED,
        types.JobState.JOB_STATE_SUCCEEDED,
    )
    assert done.dest is not None
    answers = done.dest.inlined_embed_content_responses or done.dest.inlined_responses or []
    assert len(answers) == 40
    if done.state == types.JobState.JOB_STATE_CANCELLED:
        assert any(a.error is not None for a in answers)
    client.batches.delete(name=job.name)


def test_a_bad_embedding_batch_is_a_400(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        create(
            client,
            {"inlined_requests": {"contents": ["hi"], "config": {"output_dimensionality": 100000}}},
        )
    assert info.value.code == 400
    assert "requests[0].request" in str(info.value.message)
    assert "output_dimensionality" in str(info.value.message)


# ----- the JS SDK -----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_embedding_batches(live_server: LiveServer) -> None:
    seen = run_js_example(live_server.base_url, "embed_batches.mjs")
    assert seen["name"].startswith("batches/")
    assert seen["createdState"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    assert seen["state"] == "JOB_STATE_SUCCEEDED"
    assert seen["listed"]
    assert seen["deletedStatus"] == 404
    assert len(seen["batched"]) == len(seen["direct"]) == 3
    for batched, direct in zip(seen["batched"], seen["direct"], strict=True):
        assert len(batched) == 32
        assert np.allclose(unit(batched), unit(direct), atol=1e-4)
    assert seen["fileState"] == "JOB_STATE_SUCCEEDED"
    assert seen["fileName"] == f"files/batch-{seen['fileBatchName'].removeprefix('batches/')}"
    assert seen["badStatus"] == 400
    assert "output_dimensionality" in seen["badMessage"]
