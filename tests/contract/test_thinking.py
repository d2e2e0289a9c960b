"""Thinking (`thinking_level`, `thinking_summaries`) through both SDKs and curl.

The bundled model does not think by itself: gemserve runs a reasoning pass capped at the
level's token budget, then the answering pass. What clients see is the contract checked here:
a ``thought`` step (an opaque ``signature``, a ``summary`` unless summaries are off) before the
``model_output`` step, ``usage.total_thought_tokens`` within the budget, the streamed thought
step (wire-protocol.md §3.4), and signatures verified when a stateless history sends a thought
back. The guide's thinking example runs verbatim in all three clients.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from google import genai
from google.genai import _interactions

from tests.support.contract import (
    API_KEY,
    DOCS_HOST,
    EXAMPLE_TIMEOUT_S,
    JS_DIR,
    MODEL,
    AccessLog,
    client_env,
    run_concurrently,
    seed_guide,
)
from tests.support.engines import on_both_engines, skip_on_remote
from tests.support.envelope import assert_error_body
from tests.support.guide import CURL_EXAMPLES, PYTHON_EXAMPLES
from tests.support.llama import default_spec
from tests.support.server import LiveServer
from tests.support.sse import check_usage, parse_sse
from tests.support.tokenizer import Tokenizer

pytestmark = pytest.mark.contract
live_server = on_both_engines()

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

# The served model's budgets per level (builtin: minimal 0, low 96, medium 192, ...).
BUDGETS = default_spec().thinking.budgets
LOW = BUDGETS["low"]
MEDIUM = BUDGETS["medium"]
PROMPT = "How does AI work?"  # at temperature 0 the model reasons past both budgets below
TIMEOUT_S = 300  # one bounded request (generous for a busy machine)

# ----- the guide's thinking example, verbatim ---------------------------------------------------

# The guide's thinking example, as the SDK and curl suites hold it (checked against the guide).
PY_EXAMPLE = PYTHON_EXAMPLES["thinking"]
REST_EXAMPLE = CURL_EXAMPLES["thinking"]

JS_EXAMPLE = "thinking.mjs"  # js/thinking.mjs is the guide's JS example, verbatim


def _exec_python(code: str) -> tuple[str, dict[str, Any]]:
    """Run an example as a script; return what it printed and its ``interaction``."""
    out = io.StringIO()

    def captured_print(*args: object, sep: str | None = " ", end: str | None = "\n") -> None:
        out.write((" " if sep is None else sep).join(map(str, args)))
        out.write("\n" if end is None else end)

    namespace: dict[str, Any] = {"__name__": "__main__", "print": captured_print}
    exec(compile(code, "<guide example>", "exec"), namespace)
    return out.getvalue(), namespace["interaction"].model_dump(mode="json", exclude_none=True)


def _node(script: str, server: LiveServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", script], cwd=JS_DIR, env=client_env(server.base_url),
        capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S, check=False,
    )  # fmt: skip


def _bash(script: str, server: LiveServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace(DOCS_HOST, server.base_url)],
        env=client_env(server.base_url),
        capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def guide_runs(live_server: LiveServer) -> dict[str, Any]:
    """The three examples at once (the server batches them); the environment is all they get."""
    log = AccessLog(live_server)
    tasks: dict[str, Any] = {"python": functools.partial(_exec_python, PY_EXAMPLE)}
    expected = [("POST", "/v1/interactions", 200)]
    if shutil.which("node") is not None:
        tasks["js"] = functools.partial(_node, JS_EXAMPLE, live_server)
        expected.append(("POST", "/v1/interactions", 200))
    if shutil.which("curl") is not None:
        tasks["rest"] = functools.partial(_bash, REST_EXAMPLE, live_server)
        expected.append(("POST", "/v1beta/interactions", 200))
    env = client_env(live_server.base_url)
    with pytest.MonkeyPatch.context() as mp:
        for name in set(os.environ) - set(env):
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        runs = run_concurrently(tasks)
    return {"runs": runs, "expected": sorted(expected), "requests": log.lines(len(expected))}


def _run(guide_runs: dict[str, Any], name: str) -> Any:
    if name not in guide_runs["runs"]:
        pytest.skip(f"no {name} client on this machine")
    result = guide_runs["runs"][name]
    if isinstance(result, BaseException):
        raise AssertionError(f"the {name} example raised {result!r}") from result
    return result


def check_thought(interaction: Mapping[str, Any], budget: int, *, summary: bool = True) -> str:
    """Steps are [thought, model_output], usage counts the thought within ``budget``;
    return the signature."""
    steps = interaction["steps"]
    assert [s["type"] for s in steps] == ["thought", "model_output"], steps
    thought, output = steps
    signature = thought.get("signature")
    assert isinstance(signature, str)
    assert signature.strip()
    if summary:
        assert len(thought["summary"]) == 1
        assert thought["summary"][0]["type"] == "text"
        assert thought["summary"][0]["text"].strip()
    else:
        assert "summary" not in thought, thought
    assert output["content"][0]["type"] == "text"
    assert isinstance(output["content"][0]["text"], str)
    usage = interaction["usage"]
    check_usage(usage)
    assert 0 < usage["total_thought_tokens"] <= budget
    return signature


def test_examples_are_the_guides_own_code() -> None:
    guide = seed_guide()
    if guide is None:
        pytest.skip("../shared/seed/text-generation.zh.txt is not present")
    assert PY_EXAMPLE.strip() in guide
    assert REST_EXAMPLE.strip() in guide
    assert (JS_DIR / JS_EXAMPLE).read_text(encoding="utf-8").strip() in guide


def test_guide_python_example(guide_runs: dict[str, Any]) -> None:
    printed, interaction = _run(guide_runs, "python")
    check_thought(interaction, LOW)
    answer = interaction["steps"][-1]["content"][0]["text"]
    assert answer.strip()
    assert printed == answer + "\n"


@needs_node
def test_guide_js_example(guide_runs: dict[str, Any]) -> None:
    proc = _run(guide_runs, "js")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert re.search(r"[A-Za-z]{2,}", proc.stdout), proc.stdout
    assert "undefined" not in proc.stdout
    assert proc.stdout.endswith("\n")


@needs_curl
def test_guide_rest_example(guide_runs: dict[str, Any]) -> None:
    proc = _run(guide_runs, "rest")
    assert proc.returncode == 0, proc.stderr
    interaction = json.loads(proc.stdout)
    assert interaction["model"] == MODEL
    assert interaction["status"] in ("completed", "incomplete")
    check_thought(interaction, LOW)
    assert interaction["steps"][-1]["content"][0]["text"].strip()


def test_guide_examples_are_one_request_each(guide_runs: dict[str, Any]) -> None:
    assert sorted(guide_runs["requests"]) == guide_runs["expected"]


# ----- the Python SDK ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[genai.Client]:
    with genai.Client(api_key=API_KEY, http_options={"base_url": live_server.base_url}) as c:
        yield c


def _bounded(**extra: str) -> dict[str, Any]:
    """A short answer at temperature 0; the reasoning pass is bounded by the level's budget."""
    return {"max_output_tokens": 16, "temperature": 0, **extra}


def _dump(interaction: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = interaction.model_dump(mode="json", exclude_none=True)
    return dumped


def _user(text: str) -> dict[str, Any]:
    return {"type": "user_input", "content": [{"type": "text", "text": text}]}


def alter(signature: str) -> str:
    """One character in the middle replaced by another base64url character."""
    i = len(signature) // 2
    return signature[:i] + ("B" if signature[i] == "A" else "A") + signature[i + 1 :]


@pytest.mark.parametrize("level", [None, "minimal"])
def test_no_thought_by_default_or_at_minimal(
    client: genai.Client, tokenizer: Tokenizer, level: str | None
) -> None:
    config = _bounded() if level is None else _bounded(thinking_level=level)
    interaction = _dump(
        client.interactions.create(model=MODEL, input=PROMPT, generation_config=config)
    )
    assert [s["type"] for s in interaction["steps"]] == ["model_output"]
    usage = interaction["usage"]
    check_usage(usage)
    assert usage["total_thought_tokens"] == 0
    # One pass over the user's prompt alone: no reasoning instruction was added.
    assert usage["total_input_tokens"] == tokenizer.prompt_tokens(PROMPT)


def test_levels_map_to_their_budgets(
    client: genai.Client, tokenizer: Tokenizer, request: pytest.FixtureRequest
) -> None:
    skip_on_remote(
        request,
        "a level's floor (budget forcing: no end of generation before floor tokens) needs a "
        "minimum-tokens knob, which llama-server lacks; medium's reasoning may stop below "
        "low's budget",
    )
    results = run_concurrently(
        {
            level: functools.partial(
                client.interactions.create,
                model=MODEL,
                input=PROMPT,
                generation_config=_bounded(thinking_level=level),
            )
            for level in ("low", "medium")
        }
    )
    thought_tokens = {}
    for level, budget in (("low", LOW), ("medium", MEDIUM)):
        result = results[level]
        if isinstance(result, BaseException):
            raise AssertionError(f"{level} raised {result!r}") from result
        interaction = _dump(result)
        check_thought(interaction, budget)
        tokens = interaction["usage"]["total_thought_tokens"]
        # The count is the thought's: re-tokenizing the summary gives (about) the same.
        summary = interaction["steps"][0]["summary"][0]["text"]
        assert abs(tokenizer.count(summary) - tokens) <= 2, (summary, tokens)
        thought_tokens[level] = tokens
    # This prompt makes the model reason at length: medium really allows more than low.
    assert thought_tokens["medium"] > LOW, thought_tokens


def test_unknown_level_is_400(client: genai.Client, live_server: LiveServer) -> None:
    log = AccessLog(live_server)
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(
            model=MODEL, input="Hi", generation_config={"thinking_level": "extreme"}
        )
    assert info.value.status_code == 400
    assert_error_body(info.value.body, 400, "INVALID_ARGUMENT", "thinking_level")
    assert log.lines(expect=1) == [("POST", "/v1/interactions", 400)]


@pytest.mark.parametrize("summaries", ["auto", "none"])
def test_thinking_summaries(client: genai.Client, summaries: str) -> None:
    config = _bounded(thinking_level="low", thinking_summaries=summaries)
    interaction = _dump(
        client.interactions.create(model=MODEL, input=PROMPT, generation_config=config)
    )
    check_thought(interaction, LOW, summary=summaries == "auto")
    # Without a summary the signature still carries the thought: the history is accepted.
    history = [_user(PROMPT), *interaction["steps"], _user("Say it in one sentence.")]
    follow_up = _dump(
        client.interactions.create(model=MODEL, input=history, generation_config=_bounded())
    )
    assert [s["type"] for s in follow_up["steps"]] == ["model_output"]
    assert follow_up["steps"][0]["content"][0]["text"].strip()
    check_usage(follow_up["usage"])


# ----- streaming ------------------------------------------------------------------------------

THINKING_STREAM = re.compile(
    r"interaction\.created interaction\.status_update "
    r"step\.start:thought (step\.delta:thought_summary )+step\.delta:thought_signature "
    r"step\.stop step\.start:model_output (step\.delta:text )+step\.stop interaction\.completed"
)
UNSUMMARIZED_STREAM = re.compile(
    r"interaction\.created interaction\.status_update "
    r"step\.start:thought step\.delta:thought_signature "
    r"step\.stop step\.start:model_output (step\.delta:text )+step\.stop interaction\.completed"
)


@dataclass
class ThinkingStream:
    interaction_id: str
    signature: str
    summary: str  # the thought_summary deltas, concatenated
    text: str  # the text deltas, concatenated
    usage: dict[str, Any]


def _kind(event: Mapping[str, Any]) -> str:
    kind = str(event["event_type"])
    if kind == "step.start":
        return f"{kind}:{event['step']['type']}"
    if kind == "step.delta":
        return f"{kind}:{event['delta']['type']}"
    return kind


def _runs(kinds: str) -> str:
    """``a a a b`` as ``a×3 b``: a readable event order in a failure message."""
    return " ".join(
        f"{kind}×{len(run.split())}" if " " in run else kind
        for run, kind in re.findall(r"((\S+)(?: \2(?!\S))*)", kinds)
    )


def check_thinking_stream(
    events: Sequence[Mapping[str, Any]], *, summaries: bool = True
) -> ThinkingStream:
    """The §3.4 order with thinking: the thought step (index 0), then the answer (index 1)."""
    kinds = " ".join(_kind(e) for e in events)
    order = THINKING_STREAM if summaries else UNSUMMARIZED_STREAM
    assert order.fullmatch(kinds), f"unexpected event order: {_runs(kinds)}"
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids), f"duplicate event ids: {ids}"
    for event in events:
        assert event["type"] == event["event_type"], event
    interaction_id = events[0]["interaction"]["id"]
    assert events[1]["interaction_id"] == interaction_id
    completed = events[-1]["interaction"]
    assert completed["id"] == interaction_id
    assert completed["status"] in ("completed", "incomplete")
    steps = [e for e in events if e["event_type"].startswith("step.")]
    split = next(i for i, e in enumerate(steps) if _kind(e) == "step.start:model_output")
    assert all(e["index"] == 0 for e in steps[:split])
    assert all(e["index"] == 1 for e in steps[split:])
    summary = [e["delta"]["content"] for e in steps if _kind(e) == "step.delta:thought_summary"]
    assert all(c["type"] == "text" for c in summary)
    texts = [e["delta"]["text"] for e in steps if _kind(e) == "step.delta:text"]
    (signature,) = [
        e["delta"]["signature"] for e in steps if _kind(e) == "step.delta:thought_signature"
    ]
    assert isinstance(signature, str)
    assert signature.strip()
    usage = completed["usage"]
    check_usage(usage)
    assert 0 < usage["total_thought_tokens"] <= LOW
    # A delta carries at least one token's text.
    assert len(summary) <= usage["total_thought_tokens"]
    assert len(texts) <= usage["total_output_tokens"] + 1
    return ThinkingStream(
        interaction_id, signature, "".join(c["text"] for c in summary), "".join(texts), usage
    )


def check_stored(
    got: Mapping[str, Any], streamed: ThinkingStream, *, summaries: bool = True
) -> None:
    """A later GET returns the streamed thought: the same signature and summary text."""
    steps = got["steps"]
    assert [s["type"] for s in steps] == ["user_input", "thought", "model_output"], steps
    thought = steps[1]
    assert thought["signature"] == streamed.signature
    if summaries:
        assert thought["summary"] == [{"type": "text", "text": streamed.summary}]
    else:
        assert "summary" not in thought
    assert steps[2]["content"] == [{"type": "text", "text": streamed.text}]
    assert got["usage"]["total_thought_tokens"] == streamed.usage["total_thought_tokens"]


def test_python_stream_with_thinking(client: genai.Client) -> None:
    stream: Any = client.interactions.create(
        model=MODEL, input=PROMPT, generation_config=_bounded(thinking_level="low"), stream=True
    )
    events = [e.model_dump(mode="json", exclude_none=True) for e in stream]
    streamed = check_thinking_stream(events)
    assert streamed.summary.strip()
    assert streamed.text.strip()
    check_stored(_dump(client.interactions.get(streamed.interaction_id)), streamed)


# ----- stateless and stored multi-turn ------------------------------------------------------------

FIRST = "I have 2 dogs in my house."
SECOND = "How many paws are in my house?"


def test_python_stateless_history_with_a_thought(
    client: genai.Client, live_server: LiveServer, tokenizer: Tokenizer
) -> None:
    turn1 = _dump(
        client.interactions.create(
            model=MODEL, input=FIRST, generation_config=_bounded(thinking_level="low")
        )
    )
    signature = check_thought(turn1, LOW)
    thought, output = turn1["steps"]
    history = [_user(FIRST), thought, output, _user(SECOND)]

    log = AccessLog(live_server)
    turn2 = _dump(
        client.interactions.create(model=MODEL, input=history, generation_config=_bounded())
    )
    assert [s["type"] for s in turn2["steps"]] == ["model_output"]
    assert turn2["steps"][0]["content"][0]["text"].strip()
    check_usage(turn2["usage"])
    # The earlier turn reached the model along with the new question.
    assert turn2["usage"]["total_input_tokens"] >= (
        tokenizer.prompt_tokens(FIRST)
        + turn1["usage"]["total_output_tokens"]
        + tokenizer.count(SECOND)
    )

    tampered = [*history[:1], {**thought, "signature": alter(signature)}, *history[2:]]
    unsigned = [*history[:1], {k: v for k, v in thought.items() if k != "signature"}, *history[2:]]
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(model=MODEL, input=tampered, generation_config=_bounded())
    body = info.value.body
    assert isinstance(body, dict)
    assert body["error"]["code"] == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert "Invalid value at 'input[1].signature'" in body["error"]["message"]
    # A dropped signature is accepted, as on Gemini (clients drop them): no thought restored.
    client.interactions.create(model=MODEL, input=unsigned, generation_config=_bounded())
    assert log.lines(expect=3) == [
        ("POST", "/v1/interactions", 200),
        ("POST", "/v1/interactions", 400),
        ("POST", "/v1/interactions", 200),
    ]


def test_previous_interaction_after_a_thinking_turn(
    client: genai.Client, tokenizer: Tokenizer
) -> None:
    turn1 = _dump(
        client.interactions.create(
            model=MODEL, input=FIRST, generation_config=_bounded(thinking_level="low")
        )
    )
    signature = check_thought(turn1, LOW)
    turn2 = _dump(
        client.interactions.create(
            model=MODEL,
            input=SECOND,
            previous_interaction_id=turn1["id"],
            generation_config=_bounded(thinking_level="low"),
        )
    )
    check_thought(turn2, LOW)
    assert turn2["steps"][-1]["content"][0]["text"].strip()
    assert turn2["usage"]["total_input_tokens"] >= (
        tokenizer.prompt_tokens(FIRST)
        + turn1["usage"]["total_output_tokens"]
        + tokenizer.count(SECOND)
    )
    # Turn 1 is stored with its thought, exactly as it was returned.
    got = _dump(client.interactions.get(turn1["id"]))
    assert [s["type"] for s in got["steps"]] == ["user_input", "thought", "model_output"]
    assert got["steps"][1]["signature"] == signature
    assert got["steps"][1:] == turn1["steps"]


# ----- the JS SDK -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def js_checks(live_server: LiveServer) -> dict[str, Any]:
    """js/thinking_checks.mjs, run once; it reports what the SDK returned or threw."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (JS_DIR / "node_modules" / "@google" / "genai" / "package.json").is_file():
        pytest.fail("@google/genai is not installed: run `npm ci` in tests/contract/js")
    log = AccessLog(live_server)
    proc = _node("thinking_checks.mjs", live_server)
    assert proc.returncode == 0, f"thinking_checks.mjs failed:\n{proc.stderr}"
    results: dict[str, Any] = json.loads(proc.stdout)
    # 8 creates (3 of them refused) and one GET.
    results["_requests"] = log.lines(expect=9)
    return results


def _ok(checks: Mapping[str, Any], name: str) -> dict[str, Any]:
    result: dict[str, Any] = checks[name]
    assert not result.get("threw"), f"{name} threw: {result}"
    return result


def _refused(checks: Mapping[str, Any], name: str) -> str:
    """The check threw the SDK's BadRequestError for a 400 INVALID_ARGUMENT; its message."""
    result = checks[name]
    assert result["threw"], result
    assert result["name"] == "BadRequestError"
    assert result["status"] == 400
    return assert_error_body(result["body"], 400, "INVALID_ARGUMENT")


def test_js_camel_case_thinking_level_and_summaries(js_checks: dict[str, Any]) -> None:
    with_summary = _ok(js_checks, "camelCaseLevel")
    check_thought(with_summary, LOW)
    without = _ok(js_checks, "camelCaseSummariesNone")
    check_thought(without, LOW, summary=False)
    for result in (with_summary, without):
        assert result["text"].strip()


def test_js_unknown_level_is_400(js_checks: dict[str, Any]) -> None:
    assert "thinking_level" in _refused(js_checks, "errorUnknownLevel")
    # 4xx is not retried: the two refusals of the script are two requests.
    assert js_checks["_requests"].count(("POST", "/v1/interactions", 400)) == 2


def test_js_stream_with_thinking(js_checks: dict[str, Any]) -> None:
    result = _ok(js_checks, "stream")
    streamed = check_thinking_stream(result["events"])
    assert streamed.summary.strip()
    assert streamed.text.strip()
    got = result["got"]
    assert got["id"] == streamed.interaction_id
    steps = got["steps"]
    assert [s["type"] for s in steps] == ["user_input", "thought", "model_output"]
    assert steps[1]["signature"] == streamed.signature
    assert steps[1]["summary"] == [{"type": "text", "text": streamed.summary}]
    assert steps[2]["content"] == [{"type": "text", "text": streamed.text}]


def test_js_stateless_history_with_a_thought(js_checks: dict[str, Any]) -> None:
    turn1 = _ok(js_checks, "statelessTurn1")
    signature = check_thought(turn1, LOW)
    turn2 = _ok(js_checks, "statelessTurn2")
    assert [s["type"] for s in turn2["sent"]] == [
        "user_input", "thought", "model_output", "user_input",
    ]  # fmt: skip
    assert turn2["sent"][1] == turn1["steps"][0]
    assert [s["type"] for s in turn2["steps"]] == ["model_output"]
    assert turn2["text"].strip()
    check_usage(turn2["usage"])

    tampered = js_checks["statelessTampered"]
    sent = tampered["sent"][1]["signature"]
    assert len(sent) == len(signature)
    assert sum(a != b for a, b in zip(sent, signature, strict=True)) == 1
    assert "Invalid value at 'input[1].signature'" in _refused(js_checks, "statelessTampered")

    assert "signature" not in js_checks["statelessUnsigned"]["sent"][1]
    # A dropped signature is accepted, as on Gemini: the call went through.
    assert not js_checks["statelessUnsigned"].get("threw"), js_checks["statelessUnsigned"]


# ----- curl -------------------------------------------------------------------------------------


@dataclass
class CurlResponse:
    status: int
    content_type: str
    body: str


def curl(server: LiveServer, path: str, body: Any = None) -> CurlResponse:
    """One request with curl: POST with a JSON body, or GET without one."""
    marker = "\n--curl-meta--"
    cmd = ["curl", "-sS", "--no-buffer", server.base_url + path]
    cmd += ["-w", marker + "%{http_code} %{content_type}", "-H", f"x-goog-api-key: {API_KEY}"]
    if body is not None:
        cmd += ["-X", "POST", "-H", "Content-Type: application/json", "-d", json.dumps(body)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr
    payload, _, meta = proc.stdout.rpartition(marker)
    status, _, content_type = meta.partition(" ")
    return CurlResponse(int(status), content_type, payload)


def _sse(server: LiveServer, config: dict[str, Any]) -> list[dict[str, Any]]:
    body = {"model": MODEL, "input": PROMPT, "generation_config": config, "stream": True}
    response = curl(server, "/v1beta/interactions?alt=sse", body)
    assert response.status == 200, response.body
    assert response.content_type.startswith("text/event-stream")
    events = parse_sse(response.body)
    for event in events:
        # The SSE `event:` and `id:` lines agree with the JSON payload.
        assert event.event == event.data["event_type"]
        assert event.id == event.data["event_id"]
    return [e.data for e in events]


def _get(server: LiveServer, interaction_id: str) -> dict[str, Any]:
    response = curl(server, f"/v1beta/interactions/{interaction_id}")
    assert response.status == 200, response.body
    got: dict[str, Any] = json.loads(response.body)
    return got


@needs_curl
def test_curl_unknown_level_is_400(live_server: LiveServer) -> None:
    body = {"model": MODEL, "input": "Hi", "generation_config": {"thinking_level": "extreme"}}
    response = curl(live_server, "/v1beta/interactions", body)
    assert response.status == 400, response.body
    assert response.content_type.startswith("application/json")
    error = json.loads(response.body)["error"]
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert "generation_config.thinking_level" in error["message"]


@needs_curl
def test_curl_stream_with_thinking(live_server: LiveServer) -> None:
    streamed = check_thinking_stream(_sse(live_server, _bounded(thinking_level="low")))
    assert streamed.summary.strip()
    check_stored(_get(live_server, streamed.interaction_id), streamed)


@needs_curl
def test_curl_stream_without_summaries(live_server: LiveServer) -> None:
    """``none`` hides the thought text but still streams and stores its signature."""
    config = _bounded(thinking_level="low", thinking_summaries="none")
    streamed = check_thinking_stream(_sse(live_server, config), summaries=False)
    assert streamed.summary == ""
    check_stored(_get(live_server, streamed.interaction_id), streamed, summaries=False)
