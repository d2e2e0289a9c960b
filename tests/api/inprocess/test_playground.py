"""The playground page in-process: served at ``/`` without a key, under a strict CSP, with
no inline code, and every asset it names served from the package (never a CDN)."""

from __future__ import annotations

import re

from gemserve.api.playground import CONTENT_SECURITY_POLICY
from gemserve.playground import STATIC_DIR
from tests.support.inprocess import InProcessApi, MakeApi

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' blob: data:",
    "connect-src": "'self'",
}


def directives(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition(" ")
        out[name] = value.strip()
    return out


async def test_the_page_needs_no_key_and_has_a_strict_csp(api: InProcessApi) -> None:
    response = await api.client.get("/")  # no x-goog-api-key
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = directives(response.headers["content-security-policy"])
    for name, value in POLICY.items():
        assert policy[name] == value, (name, policy)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert 'data-require-keys="false"' in response.text


async def test_keys_required_mode_serves_the_page_and_asks_for_a_key(make_api: MakeApi) -> None:
    api = await make_api(require_keys=True)
    response = await api.client.get("/")
    assert response.status_code == 200
    assert 'data-require-keys="true"' in response.text
    # The API itself still wants a key.
    assert (await api.client.get("/v1beta/models")).status_code == 403


async def test_every_asset_is_served_with_the_policy(api: InProcessApi) -> None:
    page = (await api.client.get("/")).text
    named = re.findall(r'(?:src|href)="(/playground/[^"]+)"', page)
    modules = {
        f"/playground/{m}"
        for path in STATIC_DIR.glob("*.js")
        for m in re.findall(r'from "\./([\w.-]+)"', path.read_text())
    }
    assert "/playground/app.js" in named
    assert "/playground/style.css" in named
    for path in {*named, *modules}:
        response = await api.client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        kind = "css" if path.endswith(".css") else "javascript"
        assert kind in response.headers["content-type"], (path, response.headers)
    missing = await api.client.get("/playground/nope.js")
    assert missing.status_code == 404


def test_no_inline_code_and_nothing_from_elsewhere() -> None:
    page = (STATIC_DIR / "index.html").read_text()
    for script in re.findall(r"<script[^>]*>", page):
        assert 'src="/playground/' in script, script
    assert "<style" not in page
    assert not re.search(r"\son\w+=", page), "inline event handler"
    assert not re.search(r'\sstyle="', page), "inline style"
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://(?!generativelanguage\.googleapis\.com)", text), path
        if path.suffix == ".js":
            for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "Function("):
                assert unsafe not in text, (path, unsafe)


async def test_the_conversation_list_names_each_last_turn(api: InProcessApi) -> None:
    first = (await api.create(input="My name is Ada.")).json()
    second = (await api.create(input="And yours?", previous_interaction_id=first["id"])).json()
    alone = (await api.create(input=[{"type": "text", "text": "Alone"}])).json()
    response = await api.client.get("/v1beta/interactions", headers=api.headers)
    assert response.status_code == 200, response.text
    items = response.json()["interactions"]
    assert [i["id"] for i in items] == [alone["id"], second["id"]]
    assert items[1]["previous_interaction_id"] == first["id"]
    assert items[1]["input_preview"] == "And yours?"
    assert items[1]["status"] == "completed"
    assert {"created", "updated", "model"} <= items[0].keys()
    page = (await api.client.get("/v1beta/interactions?pageSize=1", headers=api.headers)).json()
    assert [i["id"] for i in page["interactions"]] == [alone["id"]]
    assert page["next_page_token"] == "1"
    rest = await api.client.get(
        "/v1beta/interactions", params={"pageSize": "1", "pageToken": "1"}, headers=api.headers
    )
    assert [i["id"] for i in rest.json()["interactions"]] == [second["id"]]
    assert "next_page_token" not in rest.json()
    # Another key is another tenant; no key is a 403.
    other = await api.client.get("/v1beta/interactions", headers={"x-goog-api-key": "other"})
    assert other.json() == {"interactions": []}
    assert (await api.client.get("/v1beta/interactions")).status_code == 403


async def test_the_conversation_list_refuses_bad_paging(api: InProcessApi) -> None:
    for params in ({"pageSize": "abc"}, {"pageSize": "1.5"}, {"pageToken": "x"}):
        response = await api.client.get("/v1beta/interactions", params=params, headers=api.headers)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
