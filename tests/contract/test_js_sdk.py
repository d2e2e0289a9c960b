"""The official JS SDK (@google/genai, run with node) against a live gemserve.

``js/{basic,thinking,system_instruction,temperature,streaming}.mjs`` are the guide's examples,
verbatim; the environment is all that points them at the server. ``js/checks.mjs`` drives the
SDK with bounded requests and reports what it saw as JSON, which the tests below assert on.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from tests.support.contract import (
    EXAMPLE_TIMEOUT_S,
    JS_DIR,
    MODEL,
    AccessLog,
    client_env,
    run_concurrently,
    seed_guide,
)
from tests.support.engines import on_both_engines
from tests.support.envelope import assert_error_body
from tests.support.llama import default_spec
from tests.support.server import LiveServer
from tests.support.sse import check_stream_events, check_usage
from tests.support.tokenizer import Tokenizer

pytestmark = [
    pytest.mark.contract,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]
live_server = on_both_engines()

EXAMPLES = ("basic", "thinking", "system_instruction", "temperature", "streaming")


def _node(script: str, server: LiveServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", script],
        cwd=JS_DIR,
        env=client_env(server.base_url),
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module", autouse=True)
def _sdk_installed() -> None:
    if not (JS_DIR / "node_modules" / "@google" / "genai" / "package.json").is_file():
        pytest.fail("@google/genai is not installed: run `npm ci` in tests/contract/js")


@pytest.fixture(scope="module")
def example_runs(live_server: LiveServer) -> dict[str, Any]:
    """All examples at once, as separate node processes (the server batches them)."""
    log = AccessLog(live_server)
    runs = run_concurrently(
        {name: functools.partial(_node, f"{name}.mjs", live_server) for name in EXAMPLES}
    )
    return {"runs": runs, "requests": log.lines(expect=len(EXAMPLES))}


@pytest.fixture(scope="module")
def checks(live_server: LiveServer) -> dict[str, Any]:
    log = AccessLog(live_server)
    proc = _node("checks.mjs", live_server)
    assert proc.returncode == 0, f"checks.mjs failed:\n{proc.stderr}"
    results: dict[str, Any] = json.loads(proc.stdout)
    results["_requests"] = log.lines(expect=len(results))
    return results


def _ok(checks: dict[str, Any], name: str) -> dict[str, Any]:
    result: dict[str, Any] = checks[name]
    assert not result.get("threw"), f"{name} threw: {result}"
    return result


def test_examples_are_the_guides_own_code() -> None:
    guide = seed_guide()
    if guide is None:
        pytest.skip("../shared/seed/text-generation.zh.txt is not present")
    for name in EXAMPLES:
        code = (JS_DIR / f"{name}.mjs").read_text(encoding="utf-8")
        assert code.strip() in guide, f"js/{name}.mjs differs from the guide"


@pytest.mark.parametrize("name", EXAMPLES)
def test_guide_example_runs_verbatim(example_runs: dict[str, Any], name: str) -> None:
    proc = example_runs["runs"][name]
    if isinstance(proc, BaseException):
        raise AssertionError(f"{name}.mjs could not run: {proc!r}") from proc
    assert proc.returncode == 0, f"{name}.mjs exited {proc.returncode}:\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    assert proc.stdout.strip(), f"{name}.mjs printed nothing"
    assert re.search(r"[A-Za-z]{2,}", proc.stdout)
    assert "undefined" not in proc.stdout
    if name != "streaming":
        assert proc.stdout.endswith("\n")


def test_guide_examples_call_v1_once_each(example_runs: dict[str, Any]) -> None:
    assert example_runs["requests"] == [("POST", "/v1/interactions", 200)] * len(EXAMPLES)


def test_camel_case_keys_mean_the_same_as_snake_case(
    checks: dict[str, Any], tokenizer: Tokenizer
) -> None:
    camel = _ok(checks, "camelCase")
    snake = _ok(checks, "snakeCase")
    for result in (camel, snake):
        check_usage(result["usage"])
        assert result["status"] == "incomplete"
        assert result["usage"]["total_output_tokens"] == 12
        assert result["model"] == MODEL
        assert [s["type"] for s in result["steps"]] == ["model_output"]
        assert result["outputText"] == result["text"]
    # systemInstruction took effect: it is in the prompt, and the cat knows its name.
    assert camel["usage"]["total_input_tokens"] == tokenizer.prompt_tokens(
        "What is your name?", "You are a cat. Your name is Neko."
    )
    # "Neko" on the embedded engine; llama-server writes "Nekko" on some CPUs (its kernels).
    assert "Nek" in camel["text"]
    assert camel["text"] == snake["text"]
    assert camel["usage"]["total_input_tokens"] == snake["usage"]["total_input_tokens"]


def test_streaming_event_type_field_and_text(checks: dict[str, Any]) -> None:
    events = _ok(checks, "stream")["events"]
    streamed = check_stream_events(events)
    unary = _ok(checks, "unaryLikeStream")
    assert streamed.strip()
    assert streamed == unary["text"]
    completed = events[-1]["interaction"]
    assert completed["status"] == unary["status"] == "incomplete"
    assert completed["usage"]["total_output_tokens"] == 16


def test_stop_sequences_camel_case(checks: dict[str, Any]) -> None:
    result = _ok(checks, "stopSequences")
    full, stop = result["full"], result["stop"]
    assert result["status"] == "completed"
    assert result["text"] == full[: full.index(stop)]
    assert result["usage"]["total_output_tokens"] < 16


def test_api_version_v1beta(checks: dict[str, Any]) -> None:
    result = _ok(checks, "v1beta")
    assert result["text"].strip()
    assert result["usage"]["total_output_tokens"] <= 6
    assert ("POST", "/v1beta/interactions", 200) in checks["_requests"]
    # Every other interaction call of checks.mjs used the SDK default, v1.
    posts = [r for r in checks["_requests"] if r[0] == "POST"]
    assert sum(1 for r in posts if r[1] == "/v1beta/interactions") == 1
    assert all(r[1] in ("/v1/interactions", "/v1beta/interactions") for r in posts)


def test_models_list_and_get(checks: dict[str, Any]) -> None:
    spec = default_spec()
    models = _ok(checks, "modelsList")["models"]
    by_name = {m["name"]: m for m in models}
    assert f"models/{spec.id}" in by_name
    assert f"models/{MODEL}" in by_name
    for model in models:
        assert model["displayName"]
        assert model["inputTokenLimit"] > 0
        assert model["outputTokenLimit"] > 0
        assert model["supportedActions"]
    got = _ok(checks, "modelsGet")
    assert got["name"] == f"models/{MODEL}"
    assert got["inputTokenLimit"] == spec.context_length
    assert got["outputTokenLimit"] == spec.output_token_limit
    assert got["displayName"] == by_name[f"models/{MODEL}"]["displayName"]


def test_unknown_model_is_404(checks: dict[str, Any]) -> None:
    result = checks["errorUnknownModel"]
    assert result["threw"], result
    assert result["name"] == "NotFoundError"
    assert result["status"] == 404
    assert_error_body(result["body"], 404, "NOT_FOUND", "no-such-model")


def test_invalid_temperature_is_400_naming_the_field(checks: dict[str, Any]) -> None:
    result = checks["errorBadTemperature"]
    assert result["threw"], result
    assert result["name"] == "BadRequestError"
    assert result["status"] == 400
    error = result["body"]["error"]
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert "temperature" in error["message"]
    # 4xx is not retried by the SDK (5 attempts would take seconds of backoff).
    assert checks["_requests"].count(("POST", "/v1/interactions", 400)) == 1


def test_models_get_unknown_is_404(checks: dict[str, Any]) -> None:
    result = checks["errorModelsGetUnknown"]
    assert result["threw"], result
    assert result["status"] == 404
    body = json.loads(result["message"])
    assert body["error"]["code"] == 404
    assert body["error"]["status"] == "NOT_FOUND"
