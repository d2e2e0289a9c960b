"""Issue 13's failure case on real processes: a remote model (``engine = "openai"``) over two
llama-server upstreams, and the one decoding a streamed answer killed by SIGKILL while its
tokens flow. The fake upstream of tests/engine/remote/test_faults.py cuts its stream on cue; a
real llama-server dies at whatever point of a token it is, and the kernel closes its sockets.
The answer must end in-band (an ``error`` event, a ``failed`` interaction) at once, not when
an idle timeout runs out; the stored interaction must be the one the client saw; the pool must
eject the dead upstream and serve the next request on the other one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai

from tests.support.contract import API_KEY, MODEL
from tests.support.generation import LONG_ANSWER_SCHEMA
from tests.support.llama_server import LlamaServer, start_llama_server, stop_llama_server
from tests.support.remote_server import pool_extra, remote_model, start_remote_server
from tests.support.server import LiveServer, stop_server

pytestmark = pytest.mark.contract

HEADERS = {"x-goog-api-key": API_KEY}
# An idle timeout far past the bound on the stream's end after the kill: the broken connection
# must end it, not this timeout.
TIMEOUTS = {"first_token": 120, "idle": 120, "health_interval": 1}
DELTAS_BEFORE_THE_KILL = 5
ENDS_WITHIN_S = 15  # from the kill to the stream's last event
STREAM_BUDGET_S = 120  # the whole streamed call, killed or not: no hang outlives it
# An answer cut by its upstream: the text so far, its step closed, the error, the interaction.
FAILED_STREAM = re.compile(
    r"interaction\.created interaction\.status_update step\.start (step\.delta )+"
    r"step\.stop error interaction\.completed"
)


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[list[LlamaServer]]:
    """Two llama-servers of one slot each (one will be killed: not the session's)."""
    servers: list[LlamaServer] = []
    try:
        for _ in range(2):
            servers.append(start_llama_server(tmp_path, slots=1))
        yield servers
    finally:
        for server in servers:
            stop_llama_server(server)  # the killed one: already reaped, nothing to do


@pytest.fixture
def pool_server(upstreams: list[LlamaServer], tmp_path: Path) -> Iterator[LiveServer]:
    model = remote_model(
        "pool", *(u.url for u in upstreams), output_token_limit=2048, timeouts=TIMEOUTS
    )
    directory = tmp_path / "gemserve"
    directory.mkdir()
    server = start_remote_server(directory, model)
    yield server
    stop_server(server)


@pytest.fixture
def client(pool_server: LiveServer) -> Iterator[genai.Client]:
    with genai.Client(api_key=API_KEY, http_options={"base_url": pool_server.base_url}) as c:
        yield c


def serving(upstreams: list[LlamaServer], server: LiveServer) -> int:
    """The index of the upstream decoding the one answer in flight: the only llama-server
    slot at work, and the upstream gemserve's pool counts it on."""
    decoding = [i for i, upstream in enumerate(upstreams) if upstream.decoding()]
    assert len(decoding) == 1, decoding
    (index,) = decoding
    extra = pool_extra(server)
    assert [extra[f"upstream{i}_in_flight"] for i in range(2)] == [
        float(i == index) for i in range(2)
    ], extra
    return index


def test_an_upstream_killed_mid_stream_fails_the_answer_and_is_routed_around(
    client: genai.Client, pool_server: LiveServer, upstreams: list[LlamaServer]
) -> None:
    events: list[dict[str, Any]] = []
    killed: int | None = None
    killed_at = 0.0
    stream = client.interactions.create(
        model=MODEL,
        input="Count from 1 to 1000.",
        stream=True,
        # It cannot end by itself before the kill: the grammar wants a thousand numbers.
        response_format={
            "type": "text",
            "mime_type": "application/json",
            "schema": LONG_ANSWER_SCHEMA,
        },
        generation_config={"temperature": 0, "max_output_tokens": 2000},
        timeout=STREAM_BUDGET_S,
    )
    for event in stream:
        events.append(event.model_dump(mode="json"))
        deltas = sum(e["event_type"] == "step.delta" for e in events)
        if killed is None and deltas >= DELTAS_BEFORE_THE_KILL:
            killed = serving(upstreams, pool_server)
            upstreams[killed].process.kill()
            upstreams[killed].process.wait(timeout=10)
            killed_at = time.monotonic()
    assert killed is not None, [e["event_type"] for e in events]
    ended_in = time.monotonic() - killed_at
    assert ended_in < ENDS_WITHIN_S, f"the stream ended {ended_in:.1f} s after the kill"
    survivor = 1 - killed

    # (1) In-band: the text so far, the error, then the interaction, failed.
    types = " ".join(e["event_type"] for e in events)
    assert FAILED_STREAM.fullmatch(types), types
    assert events[-2]["error"]["code"] == "INTERNAL", events[-2]
    text = "".join(e["delta"]["text"] for e in events if e["event_type"] == "step.delta")
    assert text.startswith("["), text  # the grammar's array, cut short
    completed = events[-1]["interaction"]
    assert completed["status"] == "failed", completed

    # (2) Stored as streamed: failed, with the partial answer and the error; nothing pending.
    stored = httpx.get(
        f"{pool_server.base_url}/v1beta/interactions/{completed['id']}", headers=HEADERS, timeout=30
    ).json()
    assert stored["status"] == "failed", stored
    assert [step["type"] for step in stored["steps"]] == ["user_input", "model_output"]
    assert stored["steps"][-1]["content"] == [{"type": "text", "text": text}]
    assert stored["errors"] == [events[-2]["error"]]
    # Cut before its usage chunk: the counts are gemserve's estimate, and say so.
    assert stored["usage"] == completed["usage"]
    assert stored["usage"]["estimated"] is True

    # (4) The pool ejected the dead upstream (the answer failed, nothing was retried).
    after_kill = pool_extra(pool_server)
    assert after_kill[f"upstream{killed}_healthy"] == 0.0, after_kill
    assert after_kill[f"upstream{killed}_ejections"] == 1.0
    assert after_kill[f"upstream{survivor}_healthy"] == 1.0
    assert after_kill["requests_failed"] == 1.0
    assert after_kill["retries_before_first_token"] == 0.0

    # (3) The next request completes on the survivor; the dead one stays out.
    interaction = client.interactions.create(
        model=MODEL,
        input="Say hello.",
        generation_config={"temperature": 0, "max_output_tokens": 16},
    )
    assert interaction.status in ("completed", "incomplete"), interaction.status
    after = pool_extra(pool_server)
    assert after[f"upstream{survivor}_requests"] == after_kill[f"upstream{survivor}_requests"] + 1
    assert after[f"upstream{killed}_requests"] == after_kill[f"upstream{killed}_requests"]
    assert after["requests_failed"] == 1.0
    # The health checks find it dead too: it stays out.
    time.sleep(2 * TIMEOUTS["health_interval"])
    assert pool_extra(pool_server)[f"upstream{killed}_healthy"] == 0.0
