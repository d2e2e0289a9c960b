"""The tenant-isolation matrix: for every route that takes an id, another tenant's key gets
404 NOT_FOUND (never 403, which would confirm the id exists), lists never show another
tenant's items, and nothing the owner has is changed by the attempts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.inprocess import InProcessApi
from tests.support.scripted import ScriptedEngine

OWNER = {"x-goog-api-key": "tenant-owner"}
OTHER = {"x-goog-api-key": "tenant-other"}
MODEL = "gemini-2.5-flash"


async def owned_resources(api: InProcessApi) -> dict[str, str]:
    """One of everything, made by the owner: ids and names."""
    engine = api.engine
    engine.pieces, engine.delay = ["done"], 0.0
    done = (await api.create(OWNER, store=True)).json()
    engine.pieces, engine.delay = ["tick "] * 100_000, 0.01  # runs until cancelled
    running = (await api.create(OWNER, background=True)).json()
    engine.pieces, engine.delay = ["done"], 0.0
    file = await api.upload(b"owner's notes")
    cache = await api.client.post(
        "/v1beta/cachedContents",
        json={
            "model": MODEL,
            "contents": [{"role": "user", "parts": [{"text": "secret manual"}]}],
            "ttl": "300s",
        },
        headers=OWNER,
    )
    batch = await api.client.post(
        f"/v1beta/models/{MODEL}:batchGenerateContent",
        json={
            "batch": {
                "inputConfig": {
                    "requests": {
                        "requests": [
                            {"request": {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}}
                        ]
                    }
                }
            }
        },
        headers=OWNER,
    )
    assert cache.status_code == 200, cache.text
    assert batch.status_code == 200, batch.text
    return {
        "interaction": done["id"],
        "running": running["id"],
        "file": file["name"],
        "cache": cache.json()["name"],
        "batch": batch.json()["name"],
    }


def attempts(ids: dict[str, str]) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(label, method, path, JSON body) of every id-taking request another tenant may try."""
    iid, running, file, cache, batch = (
        ids[k] for k in ("interaction", "running", "file", "cache", "batch")
    )
    generate = f"/v1beta/models/{MODEL}:generateContent"
    return [
        ("get interaction", "GET", f"/v1beta/interactions/{iid}", None),
        ("get running", "GET", f"/v1beta/interactions/{running}", None),
        ("stream resume", "GET", f"/v1beta/interactions/{iid}?stream=true", None),
        (
            "resume after an id",
            "GET",
            f"/v1beta/interactions/{iid}?stream=true&last_event_id=evt_{iid[-8:]}_000001",
            None,
        ),
        ("cancel running", "POST", f"/v1beta/interactions/{running}/cancel", None),
        ("delete interaction", "DELETE", f"/v1beta/interactions/{iid}", None),
        (
            "continue it",
            "POST",
            "/v1beta/interactions",
            {"model": MODEL, "input": "and?", "previous_interaction_id": iid},
        ),
        ("get file", "GET", f"/v1beta/{file}", None),
        ("download file", "GET", f"/v1beta/{file}:download?alt=media", None),
        ("delete file", "DELETE", f"/v1beta/{file}", None),
        (
            "use file in a turn",
            "POST",
            "/v1beta/interactions",
            {
                "model": MODEL,
                "input": [{"type": "document", "uri": file, "mime_type": "text/plain"}],
            },
        ),
        (
            "use file in generateContent",
            "POST",
            generate,
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [{"fileData": {"fileUri": file, "mimeType": "text/plain"}}],
                    }
                ]
            },
        ),
        ("get cache", "GET", f"/v1beta/{cache}", None),
        ("update cache", "PATCH", f"/v1beta/{cache}", {"ttl": "60s"}),
        ("delete cache", "DELETE", f"/v1beta/{cache}", None),
        (
            "use cache",
            "POST",
            generate,
            {"cachedContent": cache, "contents": [{"role": "user", "parts": [{"text": "q"}]}]},
        ),
        ("get batch", "GET", f"/v1beta/{batch}", None),
        ("cancel batch", "POST", f"/v1beta/{batch}:cancel", None),
        ("delete batch", "DELETE", f"/v1beta/{batch}", None),
    ]


@pytest.fixture
async def api(make_api: Any) -> InProcessApi:
    made: InProcessApi = await make_api(engines={"smollm2-135m-instruct": ScriptedEngine()})
    made.headers = dict(OWNER)
    return made


async def test_another_tenant_gets_404_for_every_id_and_changes_nothing(
    api: InProcessApi,
) -> None:
    ids = await owned_resources(api)
    outcomes: dict[str, tuple[int, str]] = {}
    for label, method, path, body in attempts(ids):
        response: httpx.Response = await api.client.request(method, path, json=body, headers=OTHER)
        status = response.json().get("error", {}).get("status", "") if response.content else ""
        outcomes[label] = (response.status_code, status)
    # A file named inside a request is a 400 naming it as not found, the same answer as for
    # a file that does not exist at all (Gemini: an invalid argument, not a missing route).
    for label in ("use file in a turn", "use file in generateContent"):
        assert outcomes.pop(label) == (400, "INVALID_ARGUMENT")
    wrong = {label: got for label, got in outcomes.items() if got != (404, "NOT_FOUND")}
    assert not wrong, wrong
    foreign = await api.client.post(
        "/v1beta/interactions",
        json={"model": MODEL, "input": [{"type": "document", "uri": ids["file"]}]},
        headers=OTHER,
    )
    missing = await api.client.post(
        "/v1beta/interactions",
        json={"model": MODEL, "input": [{"type": "document", "uri": "files/nosuchfile0000"}]},
        headers=OTHER,
    )
    assert foreign.json()["error"]["message"].replace(ids["file"], "files/X") == missing.json()[
        "error"
    ]["message"].replace("files/nosuchfile0000", "files/X")
    # The owner still has everything, unchanged and still running.
    assert (await api.get(ids["interaction"])).status_code == 200
    assert (await api.get(ids["running"])).json()["status"] == "in_progress"
    for name in (ids["file"], ids["cache"], ids["batch"]):
        assert (await api.client.get(f"/v1beta/{name}", headers=OWNER)).status_code == 200
    assert (await api.cancel(ids["running"])).json()["status"] == "cancelled"


async def test_lists_never_show_another_tenants_items(api: InProcessApi) -> None:
    ids = await owned_resources(api)
    own_conversations = (await api.client.get("/v1beta/interactions", headers=OWNER)).json()
    other_conversations = (await api.client.get("/v1beta/interactions", headers=OTHER)).json()
    assert own_conversations["interactions"], own_conversations
    assert other_conversations.get("interactions", []) == [], other_conversations
    for path, key, name in (
        ("/v1beta/files", "files", ids["file"]),
        ("/v1beta/cachedContents", "cachedContents", ids["cache"]),
        ("/v1beta/batches", "operations", ids["batch"]),
    ):
        own = (await api.client.get(path, headers=OWNER)).json()
        other = (await api.client.get(path, headers=OTHER)).json()
        assert name in [item["name"] for item in own.get(key, [])], (path, own)
        assert other.get(key, []) == [], (path, other)
    await api.cancel(ids["running"])


# Routes whose path parameters name no tenant's item: models are the server's, an upload's
# token is its capability (the SDKs send no key with chunks), and a classic model method's
# target is a model (its ids travel in the body: cachedContent, fileData, covered above).
NOT_TENANT_ITEMS = {
    ("GET", "/{version}/models/{name:path}"),
    ("GET", "/{version}/openai/models/{name:path}"),
    ("POST", "/{version}/models/{target:path}"),
    ("GET", "/playground/{path:path}"),
}


async def test_every_route_that_takes_an_id_is_in_the_matrix(api: InProcessApi) -> None:
    """Enumerated from the app: a new route with an id and no row here fails this test."""
    from starlette.routing import Match, Route

    covered = [(method, path.split("?")[0]) for _, method, path, _ in attempts(SAMPLE_IDS)]
    missing = []
    for route in api.app.routes:
        if not isinstance(route, Route):
            continue
        params = set(route.param_convertors) - {"version"}
        for method in sorted((route.methods or set()) - {"HEAD"}):
            if not params or (method, route.path) in NOT_TENANT_ITEMS:
                continue
            hit = any(
                m == method
                and route.matches({"type": "http", "method": m, "path": p})[0] is Match.FULL
                for m, p in covered
            )
            if not hit:
                missing.append((method, route.path))
    assert not missing, f"routes taking an id with no tenant-isolation row: {missing}"


SAMPLE_IDS = {
    "interaction": "v1_" + "ab" * 12,
    "running": "v1_" + "cd" * 12,
    "file": "files/abc123",
    "cache": "cachedContents/abc123",
    "batch": "batches/abc123",
}
