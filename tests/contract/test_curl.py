"""curl against a live gemserve: the guide's REST examples, the Google error envelope, SSE.

The examples run verbatim under bash, with only ``https://generativelanguage.googleapis.com``
replaced by the server's base URL and ``$GEMINI_API_KEY`` set. Responses are parsed with Python
(the guide's text examples do not use jq).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.contract import (
    API_KEY,
    DOCS_HOST,
    EXAMPLE_TIMEOUT_S,
    MODEL,
    AccessLog,
    client_env,
    pick_stop_word,
    run_concurrently,
    seed_guide,
)
from tests.support.engines import on_both_engines
from tests.support.guide import CURL_EXAMPLES as EXAMPLES
from tests.support.llama import default_spec
from tests.support.server import LiveServer
from tests.support.sse import check_stream_events, check_usage, parse_sse
from tests.support.tokenizer import Tokenizer

pytestmark = [
    pytest.mark.contract,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]
live_server = on_both_engines()

TIMEOUT_S = 300  # one bounded request (generous for a busy machine)


def _bash(script: str, server: LiveServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace(DOCS_HOST, server.base_url)],
        env=client_env(server.base_url),
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def example_runs(live_server: LiveServer) -> dict[str, Any]:
    """All examples at once (the server batches them)."""
    log = AccessLog(live_server)
    runs = run_concurrently(
        {name: functools.partial(_bash, code, live_server) for name, code in EXAMPLES.items()}
    )
    return {"runs": runs, "requests": log.lines(expect=len(EXAMPLES))}


def _finished(example_runs: dict[str, Any], name: str) -> subprocess.CompletedProcess[str]:
    proc = example_runs["runs"][name]
    if isinstance(proc, BaseException):
        raise AssertionError(f"example {name!r} could not run: {proc!r}") from proc
    assert proc.returncode == 0, proc.stderr
    assert isinstance(proc, subprocess.CompletedProcess)
    return proc


def test_examples_are_the_guides_own_code() -> None:
    guide = seed_guide()
    if guide is None:
        pytest.skip("../shared/seed/text-generation.zh.txt is not present")
    for name, code in EXAMPLES.items():
        assert code.strip() in guide, f"example {name!r} differs from the guide"


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n != "streaming"])
def test_guide_example_runs_verbatim(example_runs: dict[str, Any], name: str) -> None:
    proc = _finished(example_runs, name)
    interaction = json.loads(proc.stdout)
    assert interaction["model"] == MODEL
    assert interaction["id"]
    # The guide's multi-turn REST example reads `.name` with jq and sends it back as an id.
    assert interaction["name"] == interaction["id"]
    assert interaction["status"] in ("completed", "incomplete")
    step = interaction["steps"][-1]
    assert step["type"] == "model_output"
    assert step["content"][0]["type"] == "text"
    assert step["content"][0]["text"].strip()
    check_usage(interaction["usage"])
    if interaction["status"] == "incomplete":
        # The server's default output budget for the bundled model.
        budget = default_spec().sampling.max_output_tokens
        assert interaction["usage"]["total_output_tokens"] == budget


def test_guide_streaming_example_runs_verbatim(example_runs: dict[str, Any]) -> None:
    proc = _finished(example_runs, "streaming")
    events = parse_sse(proc.stdout)
    text = check_stream_events([e.data for e in events])
    assert text.strip()
    for event in events:
        # The optional SSE `event:` and `id:` lines agree with the JSON payload.
        assert event.event == event.data["event_type"]
        assert event.id == event.data["event_id"]


def test_guide_examples_call_v1beta_once_each(example_runs: dict[str, Any]) -> None:
    assert example_runs["requests"] == [("POST", "/v1beta/interactions", 200)] * len(EXAMPLES)


# ----- more requests with curl ----------------------------------------------------------------


@dataclass
class CurlResponse:
    status: int
    content_type: str
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def curl(
    server: LiveServer,
    path: str,
    body: Any = None,
    *,
    raw_body: str | None = None,
    key: str | None = API_KEY,
    method: str = "POST",
) -> CurlResponse:
    marker = "\n--curl-meta--"
    cmd = ["curl", "-sS", "--no-buffer", "-X", method, server.base_url + path]
    cmd += ["-w", marker + "%{http_code} %{content_type}"]
    if key is not None:
        cmd += ["-H", f"x-goog-api-key: {key}"]
    if body is not None or raw_body is not None:
        cmd += ["-H", "Content-Type: application/json"]
        cmd += ["-d", raw_body if raw_body is not None else json.dumps(body)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr
    payload, _, meta = proc.stdout.rpartition(marker)
    status, _, content_type = meta.partition(" ")
    return CurlResponse(int(status), content_type, payload)


def _text(interaction: dict[str, Any]) -> str:
    text = interaction["steps"][-1]["content"][0]["text"]
    assert isinstance(text, str)
    return text


def _unary(server: LiveServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = curl(server, path, body)
    assert response.status == 200, response.body
    assert response.content_type.startswith("application/json")
    interaction: dict[str, Any] = response.json()
    check_usage(interaction["usage"])
    return interaction


def _streamed(server: LiveServer, path: str, body: dict[str, Any]) -> tuple[str, list[Any]]:
    response = curl(server, path, body)
    assert response.status == 200, response.body
    assert response.content_type.startswith("text/event-stream")
    events = [e.data for e in parse_sse(response.body)]
    return check_stream_events(events), events


BOUNDED: dict[str, Any] = {
    "model": MODEL,
    "input": "Explain how AI works",
    "generation_config": {"temperature": 0, "seed": 4, "max_output_tokens": 16},
}


def test_v1_and_v1beta_serve_the_same(live_server: LiveServer) -> None:
    log = AccessLog(live_server)
    beta = _unary(live_server, "/v1beta/interactions", BOUNDED)
    v1 = _unary(live_server, "/v1/interactions", BOUNDED)
    assert _text(v1).strip()
    assert _text(v1) == _text(beta)
    assert v1["usage"] == beta["usage"]
    assert v1["id"] != beta["id"]
    assert log.lines(expect=2) == [
        ("POST", "/v1beta/interactions", 200),
        ("POST", "/v1/interactions", 200),
    ]


@pytest.mark.parametrize(
    ("path", "stream_flag"),
    [
        ("/v1beta/interactions?alt=sse", True),  # the guide's form
        ("/v1beta/interactions?alt=sse", False),  # alt=sse alone asks for SSE
        ("/v1/interactions", True),  # the SDKs' form: stream in the body, no query
    ],
)
def test_stream_text_equals_unary_text(
    live_server: LiveServer, path: str, stream_flag: bool
) -> None:
    body = {**BOUNDED, "stream": True} if stream_flag else BOUNDED
    streamed, events = _streamed(live_server, path, body)
    unary = _unary(live_server, "/v1beta/interactions", BOUNDED)
    assert streamed.strip()
    assert streamed == _text(unary)
    completed = events[-1]["interaction"]
    assert completed["status"] == unary["status"] == "incomplete"
    assert completed["usage"] == unary["usage"]


def test_camel_case_request_keys(live_server: LiveServer, tokenizer: Tokenizer) -> None:
    system = "You are a cat. Your name is Neko."
    camel = _unary(
        live_server,
        "/v1beta/interactions",
        {
            "model": MODEL,
            "input": "What is your name?",
            "systemInstruction": system,
            "generationConfig": {"maxOutputTokens": 5, "temperature": 0, "topP": 0.5},
        },
    )
    assert camel["status"] == "incomplete"
    assert camel["usage"]["total_output_tokens"] == 5
    assert camel["usage"]["total_input_tokens"] == tokenizer.prompt_tokens(
        "What is your name?", system
    )
    snake = _unary(
        live_server,
        "/v1beta/interactions",
        {
            "model": MODEL,
            "input": "What is your name?",
            "system_instruction": system,
            "generation_config": {"max_output_tokens": 5, "temperature": 0, "top_p": 0.5},
        },
    )
    assert _text(camel) == _text(snake)


def test_stop_sequences_and_max_output_tokens(live_server: LiveServer) -> None:
    full = _unary(live_server, "/v1beta/interactions", BOUNDED)
    assert full["status"] == "incomplete"
    assert full["usage"]["total_output_tokens"] == 16
    text = _text(full)
    stop = pick_stop_word(text)
    body = {
        **BOUNDED,
        "generation_config": {**BOUNDED["generation_config"], "stop_sequences": [stop]},
    }
    cut = _unary(live_server, "/v1beta/interactions", body)
    assert cut["status"] == "completed"
    assert _text(cut) == text[: text.index(stop)]
    assert cut["usage"]["total_output_tokens"] < 16


# ----- errors: the Google envelope ------------------------------------------------------------


def _error(response: CurlResponse, code: int, status: str) -> str:
    assert response.status == code, response.body
    assert response.content_type.startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert error["status"] == status
    message = error["message"]
    assert isinstance(message, str)
    assert message
    return message


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"temperature": 5}, "generation_config.temperature"),
        ({"max_output_tokens": -1}, "generation_config.max_output_tokens"),
        ({"thinking_level": "extreme"}, "generation_config.thinking_level"),
        ({"stop_sequences": "STOP"}, "generation_config.stop_sequences"),
    ],
)
def test_invalid_generation_config_is_400(
    live_server: LiveServer, config: dict[str, Any], field: str
) -> None:
    response = curl(
        live_server,
        "/v1beta/interactions",
        {"model": MODEL, "input": "Hi", "generation_config": config},
    )
    assert field in _error(response, 400, "INVALID_ARGUMENT")


def test_unknown_model_is_404(live_server: LiveServer) -> None:
    response = curl(live_server, "/v1beta/interactions", {"model": "no-such-model", "input": "Hi"})
    assert "no-such-model" in _error(response, 404, "NOT_FOUND")


def test_missing_api_key_is_403(live_server: LiveServer) -> None:
    response = curl(live_server, "/v1beta/interactions", {"model": MODEL, "input": "Hi"}, key=None)
    _error(response, 403, "PERMISSION_DENIED")


def test_malformed_json_is_400(live_server: LiveServer) -> None:
    response = curl(live_server, "/v1beta/interactions", raw_body='{"model": ')
    _error(response, 400, "INVALID_ARGUMENT")


def test_missing_input_is_400(live_server: LiveServer) -> None:
    response = curl(live_server, "/v1beta/interactions", {"model": MODEL})
    assert "input" in _error(response, 400, "INVALID_ARGUMENT")


def test_models_with_curl(live_server: LiveServer) -> None:
    listing = curl(live_server, "/v1beta/models", method="GET")
    assert listing.status == 200
    names = [m["name"] for m in listing.json()["models"]]
    assert f"models/{MODEL}" in names
    got = curl(live_server, f"/v1beta/models/{MODEL}", method="GET")
    assert got.status == 200
    model = got.json()
    assert model["name"] == f"models/{MODEL}"
    # The Model resource is camelCase on the wire.
    assert model["inputTokenLimit"] > 0
    assert model["outputTokenLimit"] > 0
    assert "input_token_limit" not in model
    missing = curl(live_server, "/v1beta/models/no-such-model", method="GET")
    _error(missing, 404, "NOT_FOUND")
