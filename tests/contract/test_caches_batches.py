"""cachedContents and batches against a live gemserve, driven by the official Python SDK
(``client.caches``, ``client.batches``), the JS SDK (``js/caches_batches.mjs``) and curl."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any

import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.support.contract import (
    API_KEY,
    BATCH_POLL_S,
    MODEL,
    responses_file_lines,
    run_js_example,
    upload_jsonl,
    wait_batch_done,
)
from tests.support.server import LiveServer
from tests.support.tokenizer import Tokenizer

pytestmark = pytest.mark.contract

SYSTEM = "Answer from the notes only, in a few words."
# Long enough that its slot is the clear best match for a request that starts with it (the
# engine counts prefixes within 64 tokens of the best as equal).
NOTES = "Field notes. " + " ".join(
    f"Day {day}: the heron stood by the pond and the wind came from the west."
    for day in range(1, 21)
)


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> genai.Client:
    return genai.Client(
        api_key=API_KEY, http_options=types.HttpOptions(base_url=live_server.base_url)
    )


def short(**config: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(temperature=0.0, max_output_tokens=8, **config)


def make_cache(client: genai.Client, **config: Any) -> types.CachedContent:
    return client.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            contents=[types.Content(role="user", parts=[types.Part(text=NOTES)])],
            system_instruction=SYSTEM,
            **{"display_name": "notes", "ttl": "300s", **config},
        ),
    )


# ----- caches ---------------------------------------------------------------------------------


def test_caches_create_get_update_list_delete(client: genai.Client, tokenizer: Tokenizer) -> None:
    cache = make_cache(client)
    assert cache.name is not None
    assert cache.name.startswith("cachedContents/")
    assert cache.model == f"models/{MODEL}"
    assert cache.display_name == "notes"
    # The cache's prompt, as the model's chat template renders it.
    assert cache.usage_metadata is not None
    assert cache.usage_metadata.total_token_count == tokenizer.prompt_tokens(NOTES, SYSTEM)
    assert cache.create_time is not None
    assert cache.expire_time is not None
    assert 299 <= (cache.expire_time - cache.create_time).total_seconds() <= 301

    got = client.caches.get(name=cache.name)
    assert (got.name, got.expire_time, got.usage_metadata) == (
        cache.name,
        cache.expire_time,
        cache.usage_metadata,
    )
    updated = client.caches.update(
        name=cache.name, config=types.UpdateCachedContentConfig(ttl="900s")
    )
    assert updated.expire_time is not None
    assert updated.update_time is not None
    assert 899 <= (updated.expire_time - updated.update_time).total_seconds() <= 901
    second = make_cache(client, display_name="second")
    # The pager follows nextPageToken one cache at a time.
    listed = [c.name for c in client.caches.list(config={"page_size": 1})]
    assert {cache.name, second.name} <= set(listed)

    for name in (cache.name, str(second.name)):
        client.caches.delete(name=name)
    with pytest.raises(genai_errors.ClientError) as info:
        client.caches.get(name=cache.name)
    assert info.value.code == 404


def test_generate_with_a_cache_reuses_its_prefill(client: genai.Client) -> None:
    cache = make_cache(client)
    assert cache.name is not None
    assert cache.usage_metadata is not None
    cached_tokens = cache.usage_metadata.total_token_count or 0
    response = client.models.generate_content(
        model=MODEL,
        contents="Where did the heron stand?",
        config=short(cached_content=cache.name),
    )
    assert response.text
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count is not None
    assert usage.prompt_token_count > cached_tokens
    # The engine reused the cache's prefill: all of it but the turn's closing tokens.
    reused = usage.cached_content_token_count or 0
    assert cached_tokens - 8 <= reused <= usage.prompt_token_count
    stream = list(
        client.models.generate_content_stream(
            model=MODEL, contents="And the wind?", config=short(cached_content=cache.name)
        )
    )
    last = stream[-1].usage_metadata
    assert last is not None
    assert (last.cached_content_token_count or 0) >= cached_tokens - 8
    client.caches.delete(name=cache.name)


def test_a_cache_cannot_be_combined_with_a_system_instruction(client: genai.Client) -> None:
    cache = make_cache(client)
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.generate_content(
            model=MODEL,
            contents="Hi",
            config=short(cached_content=cache.name, system_instruction="Be rude."),
        )
    assert info.value.code == 400
    assert "system_instruction" in str(info.value.message)
    client.caches.delete(name=str(cache.name))
    with pytest.raises(genai_errors.ClientError) as gone:
        client.models.generate_content(
            model=MODEL, contents="Hi", config=short(cached_content=cache.name)
        )
    assert gone.value.code == 404


def test_the_openai_sdk_uses_a_cache_through_extra_body(
    client: genai.Client, live_server: LiveServer
) -> None:
    cache = make_cache(client)
    assert cache.usage_metadata is not None
    oai = openai.OpenAI(api_key=API_KEY, base_url=f"{live_server.base_url}/v1beta/openai/")
    completion = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Where did the heron stand?"}],
        max_tokens=8,
        temperature=0,
        extra_body={"extra_body": {"google": {"cached_content": cache.name}}},
    )
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > (cache.usage_metadata.total_token_count or 0)
    client.caches.delete(name=str(cache.name))


# ----- batches --------------------------------------------------------------------------------


def inline_requests(*questions: str, max_tokens: int = 8) -> list[dict[str, Any]]:
    return [
        {
            "contents": [{"role": "user", "parts": [{"text": question}]}],
            "config": {"temperature": 0.0, "max_output_tokens": max_tokens},
            "metadata": {"key": f"q{i}"},
        }
        for i, question in enumerate(questions)
    ]


def test_a_batch_runs_and_answers_inline(client: genai.Client) -> None:
    questions = ("Name a colour.", "Name a fruit.", "Name an animal.")
    job = client.batches.create(
        model=MODEL,
        src=inline_requests(*questions),  # type: ignore[arg-type]
        config={"display_name": "contract"},
    )
    assert job.name is not None
    assert job.name.startswith("batches/")
    assert job.display_name == "contract"
    assert job.state in (types.JobState.JOB_STATE_PENDING, types.JobState.JOB_STATE_RUNNING)
    assert job.model == f"models/{MODEL}"
    done = wait_batch_done(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.end_time is not None
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    answers = done.dest.inlined_responses
    assert [a.metadata for a in answers] == [{"key": f"q{i}"} for i in range(3)]
    for answer in answers:
        assert answer.error is None
        assert answer.response is not None
        assert answer.response.text
        assert answer.response.usage_metadata is not None
        assert 0 < (answer.response.usage_metadata.candidates_token_count or 0) <= 8

    listed = [b.name for b in client.batches.list(config={"page_size": 50})]
    assert job.name in listed
    client.batches.delete(name=job.name)
    with pytest.raises(genai_errors.ClientError) as info:
        client.batches.get(name=job.name)
    assert info.value.code == 404


def test_a_batch_from_a_jsonl_file_answers_in_a_file(client: genai.Client, tmp_path: Any) -> None:
    path = tmp_path / "requests.jsonl"
    lines = [
        {"key": key, "request": {"contents": [{"parts": [{"text": text}]}],
                                 "generationConfig": {"maxOutputTokens": 6}}}
        for key, text in (("colour", "Name a colour."), ("fruit", "Name a fruit."))
    ]  # fmt: skip
    job = client.batches.create(model=MODEL, src=upload_jsonl(client, path, lines))
    assert job.name is not None
    done = wait_batch_done(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    results = responses_file_lines(client, done)
    assert [r["key"] for r in results] == ["colour", "fruit"]
    assert all(r["response"]["candidates"][0]["content"]["parts"][0]["text"] for r in results)
    client.batches.delete(name=job.name)


def test_a_cancelled_batch_ends_cancelled(client: genai.Client) -> None:
    job = client.batches.create(
        model=MODEL,
        src=inline_requests(
            *[f"Write a long story about ship {i}." for i in range(6)], max_tokens=400
        ),  # type: ignore[arg-type]
    )
    assert job.name is not None
    client.batches.cancel(name=job.name)
    done = wait_batch_done(client, job.name)
    assert done.state == types.JobState.JOB_STATE_CANCELLED
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    assert len(done.dest.inlined_responses) == 6
    assert any(a.error is not None for a in done.dest.inlined_responses)
    client.batches.delete(name=job.name)


def test_a_bad_batch_request_is_a_400(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        client.batches.create(
            model=MODEL,
            src=[{"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}],  # type: ignore[arg-type]
        )
    assert info.value.code == 400
    assert "requests[0].request" in str(info.value.message)


# ----- curl -----------------------------------------------------------------------------------


def curl(live_server: LiveServer, method: str, path: str, body: Any = None) -> Any:
    command = [
        "curl", "-sS", "-X", method, f"{live_server.base_url}{path}",
        "-H", f"x-goog-api-key: {API_KEY}", "-H", "Content-Type: application/json",
    ]  # fmt: skip
    if body is not None:
        command += ["-d", json.dumps(body)]
    out = subprocess.run(command, capture_output=True, timeout=120, check=True).stdout
    return json.loads(out)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_cache_and_batch(live_server: LiveServer) -> None:
    cache = curl(
        live_server,
        "POST",
        "/v1beta/cachedContents",
        {
            "model": f"models/{MODEL}",
            "contents": [{"role": "user", "parts": [{"text": NOTES}]}],
            "systemInstruction": {"parts": [{"text": SYSTEM}]},
            "ttl": "120s",
        },
    )
    assert cache["name"].startswith("cachedContents/"), cache
    answer = curl(
        live_server,
        "POST",
        f"/v1beta/models/{MODEL}:generateContent",
        {
            "contents": [{"role": "user", "parts": [{"text": "Where was the heron?"}]}],
            "cachedContent": cache["name"],
            "generationConfig": {"maxOutputTokens": 8, "temperature": 0},
        },
    )
    assert answer["usageMetadata"]["cachedContentTokenCount"] > 0, answer
    assert curl(live_server, "DELETE", f"/v1beta/{cache['name']}") == {}

    batch = curl(
        live_server,
        "POST",
        f"/v1beta/models/{MODEL}:batchGenerateContent",
        {
            "batch": {
                "displayName": "curl",
                "inputConfig": {
                    "requests": {
                        "requests": [
                            {
                                "request": {
                                    "contents": [{"parts": [{"text": "Say hi."}]}],
                                    "generationConfig": {"maxOutputTokens": 4},
                                },
                                "metadata": {"key": "hi"},
                            }
                        ]
                    }
                },
            }
        },
    )
    assert batch["metadata"]["state"] == "BATCH_STATE_PENDING", batch
    deadline = time.monotonic() + BATCH_POLL_S
    while not batch.get("done"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
        batch = curl(live_server, "GET", f"/v1beta/{batch['name']}")
    assert batch["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    (answer,) = batch["response"]["inlinedResponses"]["inlinedResponses"]
    assert answer["metadata"] == {"key": "hi"}
    assert answer["response"]["candidates"][0]["content"]["parts"][0]["text"]


# ----- the JS SDK -----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_caches_and_batches(live_server: LiveServer) -> None:
    seen = run_js_example(live_server.base_url, "caches_batches.mjs")
    assert seen["cacheName"].startswith("cachedContents/")
    assert seen["cacheTokens"] > 100
    assert seen["gotName"] == seen["cacheName"]
    assert seen["updatedExpire"] > seen["createdExpire"]
    assert seen["cacheListed"]
    assert seen["answer"]
    assert seen["cachedTokens"] >= seen["cacheTokens"] - 8
    assert seen["deletedStatus"] == 404
    assert seen["batchName"].startswith("batches/")
    assert seen["batchState"] == "JOB_STATE_SUCCEEDED"
    assert seen["batchKeys"] == ["a", "b"]
    assert all(seen["batchTexts"])
    assert seen["batchListed"]
    assert seen["cancelState"] in ("JOB_STATE_CANCELLED", "JOB_STATE_SUCCEEDED")
