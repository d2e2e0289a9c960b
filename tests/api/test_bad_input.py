"""Every bad-input class gets the Google error envelope with the right status (live server)."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gemserve.protocol.interactions.status import TERMINAL_STATUSES as TERMINAL
from tests.support.envelope import assert_envelope
from tests.support.media import ten_hours_of_silence
from tests.support.server import LiveServer, wait_status

pytestmark = [pytest.mark.contract, pytest.mark.live]

KEY = {"x-goog-api-key": "test-key"}
OK_BODY: dict[str, Any] = {
    "model": "gemini-3-flash-preview",
    "input": "Hi",
    "generation_config": {"max_output_tokens": 2},
}


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.base_url, headers=KEY, timeout=30) as c:
        yield c


def post(client: httpx.Client, body: Any, path: str = "/v1beta/interactions") -> httpx.Response:
    return client.post(path, json=body)


def with_config(**config: Any) -> dict[str, Any]:
    return {**OK_BODY, "generation_config": {**OK_BODY["generation_config"], **config}}


def test_a_valid_request_succeeds(client: httpx.Client) -> None:
    response = post(client, OK_BODY)
    assert response.status_code == 200
    assert response.json()["status"] in ("completed", "incomplete")


@pytest.mark.parametrize("raw", [b"{not json", b'{"model": "x",}', b"\xff\xfe"])
def test_malformed_json(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/v1beta/interactions", content=raw)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "Invalid JSON payload")


def test_empty_body(client: httpx.Client) -> None:
    response = client.post("/v1beta/interactions", content=b"")
    assert_envelope(response, 400, "INVALID_ARGUMENT", "empty")


def test_body_must_be_an_object(client: httpx.Client) -> None:
    assert_envelope(post(client, [OK_BODY]), 400, "INVALID_ARGUMENT", "JSON object")


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"temperature": "hot"}, "generation_config.temperature"),
        ({"temperature": 2.5}, "generation_config.temperature"),
        ({"temperature": -0.1}, "generation_config.temperature"),
        ({"top_p": 1.5}, "generation_config.top_p"),
        ({"top_k": 0}, "generation_config.top_k"),
        ({"top_k": 2.5}, "generation_config.top_k"),
        ({"max_output_tokens": 0}, "generation_config.max_output_tokens"),
        ({"max_output_tokens": -5}, "generation_config.max_output_tokens"),
        ({"max_output_tokens": 10**9}, "generation_config.max_output_tokens"),
        ({"presence_penalty": 3}, "generation_config.presence_penalty"),
        ({"frequency_penalty": -2.5}, "generation_config.frequency_penalty"),
        ({"seed": "abc"}, "generation_config.seed"),
        ({"stop_sequences": "STOP"}, "generation_config.stop_sequences"),
        ({"stop_sequences": [""]}, "generation_config.stop_sequences"),
        ({"stop_sequences": ["s"] * 17}, "generation_config.stop_sequences"),
        ({"thinking_level": "extreme"}, "generation_config.thinking_level"),
        ({"thinking_summaries": "sometimes"}, "generation_config.thinking_summaries"),
        ({"tool_choice": "sometimes"}, "generation_config.tool_choice"),
    ],
)
def test_out_of_range_or_wrong_type_names_the_field(
    client: httpx.Client, config: dict[str, Any], field: str
) -> None:
    assert_envelope(post(client, with_config(**config)), 400, "INVALID_ARGUMENT", field)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**OK_BODY, "stream": "yes"}, "'stream'"),
        ({**OK_BODY, "input": 123}, "'input'"),
        ({**OK_BODY, "model": 5}, "'model'"),
        ({**OK_BODY, "system_instruction": ["a"]}, "'system_instruction'"),
        ({**OK_BODY, "temprature": 1}, "Unknown name 'temprature'"),
        (with_config(temprature=1), "Unknown name 'temprature' at 'generation_config'"),
        ({"input": "Hi"}, "'model'"),
        ({"model": "gemini-3-flash-preview"}, "'input'"),
        ({**OK_BODY, "input": ""}, "'input'"),
        ({**OK_BODY, "input": "   "}, "'input'"),
        ({**OK_BODY, "input": []}, "'input'"),
        ({**OK_BODY, "input": [{"type": "text"}]}, "input[0]"),
        ({**OK_BODY, "input": [{"type": "hologram", "data": "x"}]}, "hologram"),
        ({**OK_BODY, "input": [{"type": "thought", "signature": "x"}]}, "user_input"),
        (
            {
                **OK_BODY,
                "input": [
                    {"type": "thought", "signature": "x"},
                    {"type": "user_input", "content": [{"type": "text", "text": "Hi"}]},
                ],
            },
            "input[0].signature",
        ),
        ({**OK_BODY, "input": [{"role": "robot", "content": "hi"}]}, "role"),
        ({**OK_BODY, "tools": [{"type": "google_search"}]}, "google_search"),
        ({**OK_BODY, "previous_interaction_id": "v1_abc"}, "'previous_interaction_id'"),
        ({**OK_BODY, "response_mime_type": "text/csv"}, "'response_mime_type'"),
    ],
)
def test_invalid_requests_are_400(
    client: httpx.Client, body: dict[str, Any], fragment: str
) -> None:
    assert_envelope(post(client, body), 400, "INVALID_ARGUMENT", fragment)


def test_media_part_for_a_text_only_model_names_part_and_model(client: httpx.Client) -> None:
    body = {
        **OK_BODY,
        "input": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "data": "aGVsbG8=", "mime_type": "image/png"},
        ],
    }
    assert_envelope(
        post(client, body),
        400,
        "INVALID_ARGUMENT",
        "input[0].content[1]",
        "smollm2-135m-instruct",
        "image",
    )


def test_unknown_model_is_404_listing_models(client: httpx.Client) -> None:
    response = post(client, {**OK_BODY, "model": "gpt-17"})
    assert_envelope(
        response, 404, "NOT_FOUND", "gpt-17", "smollm2-135m-instruct", "gemini-2.5-flash"
    )


def test_models_prefix_and_camel_case_are_accepted(client: httpx.Client) -> None:
    body = {
        "model": "models/gemini-2.5-pro",
        "input": "Hi",
        "systemInstruction": "Answer in one word.",
        "generationConfig": {"maxOutputTokens": 3, "stopSequences": ["zzz"], "topK": 5.0},
    }
    response = post(client, body, "/v1alpha/interactions")
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["total_output_tokens"] <= 3


def test_missing_api_key_is_403(live_server: LiveServer) -> None:
    response = httpx.post(live_server.base_url + "/v1/interactions", json=OK_BODY)
    assert_envelope(response, 403, "PERMISSION_DENIED", "API Key")
    blank = httpx.post(
        live_server.base_url + "/v1/interactions", json=OK_BODY, headers={"x-goog-api-key": ""}
    )
    assert_envelope(blank, 403, "PERMISSION_DENIED")


def test_key_query_parameter_is_accepted(live_server: LiveServer) -> None:
    response = httpx.post(
        live_server.base_url + "/v1/interactions?key=abc", json=OK_BODY, timeout=30
    )
    assert response.status_code == 200


def test_unknown_paths_versions_and_methods(client: httpx.Client) -> None:
    assert_envelope(client.get("/v1beta/nothing"), 404, "NOT_FOUND")
    assert_envelope(post(client, OK_BODY, "/latest/interactions"), 404, "NOT_FOUND")
    assert_envelope(client.put("/v1beta/interactions"), 405, "UNIMPLEMENTED")


def test_unknown_model_get_is_404(client: httpx.Client) -> None:
    assert_envelope(client.get("/v1/models/gpt-17"), 404, "NOT_FOUND", "gpt-17")
    assert_envelope(client.get("/v1/models?pageSize=abc"), 400, "INVALID_ARGUMENT", "pageSize")


# ----- limits, with a server configured by a TOML file ------------------------------------------


def test_body_over_the_limit_is_413(limited_server: LiveServer) -> None:
    body = {**OK_BODY, "input": "x" * 5000}
    response = httpx.post(limited_server.base_url + "/v1/interactions", json=body, headers=KEY)
    assert_envelope(response, 413, "INVALID_ARGUMENT", "4096")


def test_too_many_parts_is_400(limited_server: LiveServer) -> None:
    body = {**OK_BODY, "input": [{"type": "text", "text": "a"}] * 4}
    response = httpx.post(limited_server.base_url + "/v1/interactions", json=body, headers=KEY)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "4 parts", "3")


def test_prompt_over_the_context_is_400_with_both_counts(limited_server: LiveServer) -> None:
    body = {**OK_BODY, "input": "tree " * 300}
    response = httpx.post(limited_server.base_url + "/v1/interactions", json=body, headers=KEY)
    message = assert_envelope(response, 400, "INVALID_ARGUMENT", "tokens", "128")
    assert any(str(n) in message for n in range(300, 400)), message


def test_configured_alias_and_output_limit(limited_server: LiveServer) -> None:
    ok = httpx.post(
        limited_server.base_url + "/v1/interactions",
        json={**OK_BODY, "model": "my-local-model"},
        headers=KEY,
        timeout=30,
    )
    assert ok.status_code == 200, ok.text
    over = httpx.post(
        limited_server.base_url + "/v1/interactions",
        json=with_config(max_output_tokens=101),
        headers=KEY,
    )
    assert_envelope(over, 400, "INVALID_ARGUMENT", "100")


def test_full_engine_is_429(limited_server: LiveServer) -> None:
    long = {
        **OK_BODY,
        "input": "Write an essay.",
        "stream": True,
        "generation_config": {"max_output_tokens": 90},
    }
    with httpx.Client(base_url=limited_server.base_url, headers=KEY, timeout=30) as c:
        with c.stream("POST", "/v1/interactions", json=long) as busy:
            assert busy.status_code == 200
            lines = busy.iter_lines()
            created = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
            while "step.delta" not in next(lines):
                pass
            response = c.post("/v1/interactions", json=OK_BODY)
            assert_envelope(response, 429, "RESOURCE_EXHAUSTED", "slots")
            assert response.headers["retry-after"] == "1"
        # Hanging up cancels the run and frees the one slot; later tests here need it.
        settled = wait_status(limited_server, created["interaction"]["id"], TERMINAL, KEY)
        assert settled["status"] == "cancelled"


def test_history_longer_than_the_context_is_400_not_truncation(limited_server: LiveServer) -> None:
    url = limited_server.base_url + "/v1/interactions"
    first = httpx.post(
        url,
        json={
            **OK_BODY,
            "input": "Tell me about trees. " * 12,
            "generation_config": {"max_output_tokens": 40},
        },
        headers=KEY,
        timeout=60,
    )
    assert first.status_code == 200, first.text
    follow = httpx.post(
        url,
        json={
            **OK_BODY,
            "input": "And rivers? " * 10,
            "previous_interaction_id": first.json()["id"],
        },
        headers=KEY,
        timeout=60,
    )
    assert_envelope(follow, 400, "INVALID_ARGUMENT", "128", "history")


# ----- media parts: each bad one is a 400 naming the part, the server never decodes it all -----

PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()  # mislabelled as audio


def media_body(part: dict[str, Any]) -> dict[str, Any]:
    return {**OK_BODY, "input": [{"type": "text", "text": "What is this?"}, part]}


@pytest.mark.parametrize(
    ("part", "fragments"),
    [
        (
            {"type": "audio", "data": "@@ not base64 @@", "mime_type": "audio/wav"},
            ("input[0].content[1].data", "base64"),
        ),
        (
            {
                "type": "audio",
                "data": base64.b64encode(b"\x89PNG\r\n").decode(),
                "mime_type": "audio/wav",
            },
            ("input[0].content[1]", "could not be decoded as audio"),
        ),
        (
            {"type": "audio", "data": "AAAA", "mime_type": "image/png"},
            ("input[0].content[1].mime_type", "is not an audio type"),
        ),
        (
            {"type": "document", "data": "AAAA", "mime_type": "application/msword"},
            ("input[0].content[1].mime_type", "PDF, plain text"),
        ),
        (
            {"type": "document", "uri": "files/no-such-file", "mime_type": "application/pdf"},
            ("input[0].content[1].uri", "was not found"),
        ),
        (
            {"type": "video", "uri": "https://example.com/clip.mp4", "mime_type": "video/mp4"},
            ("input[0].content[1].uri", "does not fetch"),
        ),
    ],
)
def test_bad_media_parts_are_400(
    client: httpx.Client, part: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    assert_envelope(post(client, media_body(part)), 400, "INVALID_ARGUMENT", *fragments)


def test_ten_hours_of_audio_are_refused_from_the_header(client: httpx.Client) -> None:
    part = {
        "type": "audio",
        "data": base64.b64encode(ten_hours_of_silence()).decode(),
        "mime_type": "audio/flac",
    }
    message = assert_envelope(post(client, media_body(part)), 400, "INVALID_ARGUMENT")
    assert "36000.0 seconds long; the limit is 600 seconds" in message


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def deep_body(depth: int, where: str) -> dict[str, Any]:
    """The issue's free-form fields: a text part's annotations, a model_output step's error."""
    if where == "annotations":
        part = {"type": "text", "text": "hi", "annotations": nested(depth)}
        return {**OK_BODY, "input": [part]}
    steps = [
        {"type": "user_input", "content": [{"type": "text", "text": "hi"}]},
        {
            "type": "model_output",
            "content": [{"type": "text", "text": "yo"}],
            "error": nested(depth),
        },
        {"type": "user_input", "content": [{"type": "text", "text": "again"}]},
    ]
    return {**OK_BODY, "input": steps}


@pytest.mark.parametrize("where", ["annotations", "error"])
def test_deep_nesting_is_a_400_before_any_generation_is_admitted(
    client: httpx.Client, where: str
) -> None:
    before = client.get("/statsz").json()["smollm2-135m-instruct"]
    for _ in range(6):  # more than the slots: none may be held by a refused request
        response = client.post(
            "/v1beta/interactions", content=json.dumps(deep_body(256, where)).encode()
        )
        assert_envelope(response, 400, "INVALID_ARGUMENT", "nested deeper than 100 levels")
    after = client.get("/statsz").json()["smollm2-135m-instruct"]
    assert after["active"] == 0
    assert after["queued"] == 0
    assert after["requests_finished"] == before["requests_finished"]
    assert post(client, OK_BODY).status_code == 200


def test_a_client_gone_during_the_body_is_a_499_not_an_error(live_server: LiveServer) -> None:
    host, port = live_server.base_url.removeprefix("http://").split(":")
    before = live_server.log()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1beta/interactions HTTP/1.1\r\nHost: x\r\nx-goog-api-key: k\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            b'{"model": "gemini-2.5-flash", "inp'
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = live_server.log()[len(before) :]
        if "POST /v1beta/interactions 499" in new:
            break
        time.sleep(0.05)
    assert "POST /v1beta/interactions 499" in new
    assert "Traceback" not in new
    assert " ERROR " not in new


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/v1beta/files/"), ("GET", "/v1beta/models/"), ("POST", "/v1beta/interactions/")],
)
def test_a_trailing_slash_is_a_404_not_a_redirect(
    client: httpx.Client, method: str, path: str
) -> None:
    response = client.request(method, path, follow_redirects=False)
    assert_envelope(response, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "config",
    [
        {"temperature": True},
        {"top_p": False},
        {"top_k": True},
        {"top_k": "５"},  # full-width digits
        {"top_k": "5.0"},
        {"max_output_tokens": "²"},
    ],
)
def test_proto3_json_never_reads_booleans_or_other_digits_as_numbers(
    client: httpx.Client, config: dict[str, Any]
) -> None:
    (field,) = config
    assert_envelope(post(client, with_config(**config)), 400, "INVALID_ARGUMENT", field)


def test_proto3_json_integers_may_be_strings_of_ascii_digits(client: httpx.Client) -> None:
    response = post(client, with_config(top_k="5", max_output_tokens="2", seed="-7"))
    assert response.status_code == 200, response.text


def test_a_stalled_body_is_a_408_within_the_read_timeout(tmp_path: Any) -> None:
    """A body shorter than its Content-Length (or sent a byte at a time) would hold the
    connection and its handler forever: limits.body_read_timeout_seconds bounds it."""
    from tests.support.server import start_server, stop_server

    config = tmp_path / "limits.toml"
    config.write_text("[limits]\nbody_read_timeout_seconds = 1.5\n")
    server = start_server(tmp_path, "--config", str(config))
    try:
        host, port = server.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            started = time.monotonic()
            sock.sendall(
                b"POST /v1beta/interactions HTTP/1.1\r\nHost: x\r\nx-goog-api-key: k\r\n"
                b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model"'
            )
            answer = sock.recv(4096).decode()
            elapsed = time.monotonic() - started
            while "DEADLINE_EXCEEDED" not in answer:  # the body may come in a second packet
                more = sock.recv(4096).decode()
                if not more:
                    break
                answer += more
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "DEADLINE_EXCEEDED" in answer
        assert 1.0 < elapsed < 10
    finally:
        stop_server(server)
