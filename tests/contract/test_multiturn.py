"""The guide's multi-turn examples, verbatim, with the Python SDK, the JS SDK and curl.

Each test proves that the history reached the model: turn 2's input tokens are at least turn
1's input + output + the new input (the chat template adds a few more).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from typing import Any

import httpx
import pytest

from tests.support.contract import JS_DIR, client_env, seed_guide
from tests.support.engines import on_both_engines
from tests.support.server import LiveServer
from tests.support.sse import parse_sse

pytestmark = pytest.mark.contract
live_server = on_both_engines()

PY_TURNS = """
from google import genai

client = genai.Client()

interaction1 = client.interactions.create(
    model="gemini-3-flash-preview",
    input="I have 2 dogs in my house.",
)
print(interaction1.steps[-1].content[0].text)

interaction2 = client.interactions.create(
    model="gemini-3-flash-preview",
    input="How many paws are in my house?",
    previous_interaction_id=interaction1.id,
)
print(interaction2.steps[-1].content[0].text)
"""

PY_STREAM = """
from google import genai

client = genai.Client()

interaction1 = client.interactions.create(
    model="gemini-3-flash-preview",
    input="I have 2 dogs in my house.",
)
print(interaction1.steps[-1].content[0].text)

stream = client.interactions.create(
    model="gemini-3-flash-preview",
    input="How many paws are in my house?",
    previous_interaction_id=interaction1.id,
    stream=True
)
for event in stream:
    if event.event_type == "step.delta":
        if event.delta.type == "text":
            print(event.delta.text, end="")
"""

CURL_TURNS = """
RESPONSE1=$(curl -s -X POST "https://generativelanguage.googleapis.com/v1beta/interactions" \\
  -H "x-goog-api-key: $GEMINI_API_KEY" \\
  -H 'Content-Type: application/json' \\
  -d '{
    "model": "gemini-3-flash-preview",
    "input": "I have 2 dogs in my house."
  }')

INTERACTION_ID=$(echo "$RESPONSE1" | jq -r '.name')

curl -X POST "https://generativelanguage.googleapis.com/v1beta/interactions" \\
  -H "x-goog-api-key: $GEMINI_API_KEY" \\
  -H 'Content-Type: application/json' \\
  -d '{
    "model": "gemini-3-flash-preview",
    "input": "I have two dogs in my house. How many paws are in my house?",
    "previous_interaction_id": "'$INTERACTION_ID'"
  }'
"""

CURL_STREAM = """
RESPONSE1=$(curl -s -X POST "https://generativelanguage.googleapis.com/v1beta/interactions" \\
  -H "x-goog-api-key: $GEMINI_API_KEY" \\
  -H 'Content-Type: application/json' \\
  -d '{
    "model": "gemini-3-flash-preview",
    "input": "I have 2 dogs in my house."
  }')
INTERACTION_ID=$(echo "$RESPONSE1" | jq -r '.name')

curl -X POST "https://generativelanguage.googleapis.com/v1beta/interactions?alt=sse" \\
  -H "x-goog-api-key: $GEMINI_API_KEY" \\
  -H 'Content-Type: application/json' \\
  --no-buffer \\
  -d '{
    "model": "gemini-3-flash-preview",
    "input": "How many paws are in my house?",
    "previous_interaction_id": "'$INTERACTION_ID'",
    "stream": true
  }'
"""


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("code", [PY_TURNS, PY_STREAM, CURL_TURNS, CURL_STREAM])
def test_examples_are_the_guides_own_code(code: str) -> None:
    guide = seed_guide()
    if guide is None:
        pytest.skip("the seed guide is not next to the project")
    assert _squash(code.replace("\\\\", "\\")) in _squash(guide)


def assert_history_reached_the_model(
    u1: dict[str, Any], u2: dict[str, Any], new_input: int
) -> None:
    assert (
        u2["total_input_tokens"] >= u1["total_input_tokens"] + u1["total_output_tokens"] + new_input
    )
    # The follow-up reused the first turn's KV cache instead of prefilling it again.
    assert u2["total_cached_tokens"] >= u1["total_input_tokens"]


def run_python(code: str, server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key, value in client_env(server.base_url).items():
        monkeypatch.setenv(key, value)
    namespace: dict[str, Any] = {}
    exec(compile(textwrap.dedent(code), "<guide example>", "exec"), namespace)
    return namespace


def test_python_multiturn(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = run_python(PY_TURNS, live_server, monkeypatch)
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed
    assert ns["interaction2"].steps[-1].content[0].text
    u1 = ns["interaction1"].usage.model_dump()
    u2 = ns["interaction2"].usage.model_dump()
    assert_history_reached_the_model(u1, u2, new_input=8)


def test_python_multiturn_streaming(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = run_python(PY_STREAM, live_server, monkeypatch)
    assert capsys.readouterr().out.strip()
    last = ns["event"]  # the loop's last event: interaction.completed with the usage
    assert last.event_type == "interaction.completed"
    u1 = ns["interaction1"].usage.model_dump()
    u2 = last.interaction.usage.model_dump()
    assert_history_reached_the_model(u1, u2, new_input=8)


def _node(script: str, server: LiveServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", script], cwd=JS_DIR, env=client_env(server.base_url),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def _get(server: LiveServer, iid: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/v1beta/interactions/{iid}",
        headers={"x-goog-api-key": client_env(server.base_url)["GEMINI_API_KEY"]},
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_multiturn(live_server: LiveServer) -> None:
    proc = _node("multiturn.mjs", live_server)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Response 1: ")
    assert any(line.startswith("Response 2: ") and len(line) > 12 for line in lines)
    diag = json.loads(proc.stderr.strip().splitlines()[-1])
    assert_history_reached_the_model(diag["u1"], diag["u2"], new_input=8)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_multiturn_streaming(live_server: LiveServer) -> None:
    proc = _node("multiturn_stream.mjs", live_server)
    assert proc.returncode == 0, proc.stderr
    response1 = proc.stdout.split("\n", 1)
    assert response1[0].startswith("Response 1: ")
    assert response1[1].strip(), "the streamed second turn printed no text"
    diag = json.loads(proc.stderr.strip().splitlines()[-1])
    stored = _get(live_server, diag["id1"])["usage"]
    assert stored["total_input_tokens"] == diag["u1"]["total_input_tokens"]
    assert stored["total_output_tokens"] == diag["u1"]["total_output_tokens"]


def run_curl(script: str, server: LiveServer) -> subprocess.CompletedProcess[str]:
    script = script.replace("https://generativelanguage.googleapis.com", server.base_url)
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script], env=client_env(server.base_url),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_curl_multiturn(live_server: LiveServer) -> None:
    proc = run_curl(CURL_TURNS, live_server)
    assert proc.returncode == 0, proc.stderr
    second = json.loads(proc.stdout)
    assert second["steps"][-1]["content"][0]["text"]
    first = _get(live_server, second["previous_interaction_id"])
    assert_history_reached_the_model(first["usage"], second["usage"], new_input=15)


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_curl_multiturn_streaming(live_server: LiveServer) -> None:
    proc = run_curl(CURL_STREAM, live_server)
    assert proc.returncode == 0, proc.stderr
    events = [e.data for e in parse_sse(proc.stdout)]
    assert any(e["event_type"] == "step.delta" for e in events)
    completed = events[-1]["interaction"]
    first = _get(live_server, completed["previous_interaction_id"])
    assert_history_reached_the_model(first["usage"], completed["usage"], new_input=8)
