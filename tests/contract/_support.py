"""Helpers shared by the contract tests: client environment, SSE parsing, usage and log checks."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gemserve.config import ModelRegistry, ModelSpec
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.engine import ChatMessage
from gemserve.engine.chat_template import ChatTemplate
from gemserve.engine.llama.native import LoadedModel
from tests.conftest import ROOT, LiveServer

T = TypeVar("T")

# The model name every example of the guide uses; the server maps it to the bundled model.
MODEL = "gemini-3-flash-preview"
API_KEY = "contract-test-key"
DOCS_HOST = "https://generativelanguage.googleapis.com"

# The user's guide lives in ../shared next to the project (see shared/README.md).
SEED_GUIDE = ROOT.parent / "shared" / "seed" / "text-generation.zh.txt"
JS_DIR = Path(__file__).resolve().parent / "js"

# Client settings from the caller's environment that would redirect or reconfigure the SDKs.
_CLIENT_ENV_NOISE = (
    "GOOGLE_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_GENAI_API_VERSION",
    "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)

# The event order of a plain-text interaction stream (wire-protocol.md §3.4).
STREAM_ORDER = re.compile(
    r"interaction\.created interaction\.status_update step\.start (step\.delta )+"
    r"step\.stop interaction\.completed"
)


def client_env(base_url: str) -> dict[str, str]:
    """The environment the guide's examples run under: only the base URL and a key are set."""
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_ENV_NOISE}
    env["GOOGLE_GEMINI_BASE_URL"] = base_url
    env["GEMINI_API_KEY"] = API_KEY
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def default_spec() -> ModelSpec:
    return ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID).resolve(DEFAULT_MODEL_ID).spec


def seed_guide() -> str | None:
    return SEED_GUIDE.read_text(encoding="utf-8") if SEED_GUIDE.is_file() else None


# Generous: a safety net against a hung server, not a performance budget. On a busy 2-core
# machine the guide's unbounded examples (up to 512 tokens each) can take minutes.
EXAMPLE_TIMEOUT_S = 900


def run_concurrently(
    tasks: Mapping[str, Callable[[], T]], timeout: float = EXAMPLE_TIMEOUT_S
) -> dict[str, T | BaseException]:
    """Run ``tasks`` in threads at once (the server batches them); an exception is a result."""
    pool = ThreadPoolExecutor(max_workers=max(1, len(tasks)))
    futures = {name: pool.submit(task) for name, task in tasks.items()}
    wait(futures.values(), timeout=timeout)
    pool.shutdown(wait=False, cancel_futures=True)
    results: dict[str, T | BaseException] = {}
    for name, future in futures.items():
        if not future.done():
            results[name] = TimeoutError(f"{name} did not finish within {timeout} s")
        elif future.exception() is not None:
            results[name] = future.exception()  # type: ignore[assignment]
        else:
            results[name] = future.result()
    return results


# ----- server access log ----------------------------------------------------------------------

_ACCESS = re.compile(r"gemserve\.access: \S+ (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) ")


class AccessLog:
    """The live server's access log lines written after a mark: which requests really arrived."""

    def __init__(self, server: LiveServer) -> None:
        self._server = server
        self._offset = len(server.log())

    def lines(self, expect: int = 0) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of each request since the mark.

        A line is written just before a response's last bytes go out (so a finished request
        from an earlier test is never counted here); a request still running when the mark
        was taken is. Waits (briefly) until at least ``expect`` lines are there.
        """
        deadline = time.monotonic() + 10
        while True:
            text = self._server.log()[self._offset :]
            found = [
                (m["method"], m["path"], int(m["status"]))
                for m in _ACCESS.finditer(text)
                if m["path"] not in ("/readyz", "/healthz")
            ]
            if len(found) >= expect or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


# ----- SSE ------------------------------------------------------------------------------------


@dataclass
class SseEvent:
    event: str | None
    id: str | None
    data: dict[str, Any]


def parse_sse(body: str) -> list[SseEvent]:
    """Parse an SSE body strictly: every data-bearing block must hold one JSON object."""
    events = []
    for block in re.split(r"\r?\n\r?\n", body):
        fields: dict[str, list[str]] = {}
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        if "data" not in fields:
            assert not fields, f"SSE block without data: {block!r}"
            continue
        raw = "\n".join(fields["data"])
        if raw == "[DONE]":
            continue
        data = json.loads(raw)
        assert isinstance(data, dict), f"SSE data is not a JSON object: {raw!r}"
        events.append(
            SseEvent(
                event=fields.get("event", [None])[-1],
                id=fields.get("id", [None])[-1],
                data=data,
            )
        )
    return events


def check_stream_events(events: Sequence[Mapping[str, Any]]) -> str:
    """Assert the documented event order and fields; return the streamed text."""
    types = [e["event_type"] for e in events]
    assert STREAM_ORDER.fullmatch(" ".join(types)), f"unexpected event order: {types}"
    ids = [e.get("event_id") for e in events]
    assert all(isinstance(i, str) and i for i in ids), f"events without event_id: {ids}"
    assert len(set(ids)) == len(ids), f"duplicate event ids: {ids}"
    for event in events:
        assert event.get("type") == event["event_type"], event
    created, status_update, start = events[0], events[1], events[2]
    stop, completed = events[-2], events[-1]
    interaction_id = created["interaction"]["id"]
    assert interaction_id
    assert created["interaction"]["status"] == "in_progress"
    assert status_update["interaction_id"] == interaction_id
    assert status_update["status"] == "in_progress"
    assert start["step"]["type"] == "model_output"
    assert completed["interaction"]["id"] == interaction_id
    assert completed["interaction"]["status"] in ("completed", "incomplete")
    check_usage(completed["interaction"]["usage"])
    deltas = events[3:-2]
    for delta in deltas:
        assert delta["index"] == start["index"] == stop["index"]
        assert delta["delta"]["type"] == "text"
        assert isinstance(delta["delta"]["text"], str)
    text = "".join(d["delta"]["text"] for d in deltas)
    # A delta carries at least one token's text, so there are no more deltas than tokens.
    assert len(deltas) <= completed["interaction"]["usage"]["total_output_tokens"] + 1
    return text


# ----- usage ----------------------------------------------------------------------------------


def check_usage(usage: Mapping[str, Any]) -> None:
    """The Usage invariants every interaction must satisfy."""
    inp = usage["total_input_tokens"]
    out = usage["total_output_tokens"]
    thought = usage.get("total_thought_tokens") or 0
    assert isinstance(inp, int)
    assert isinstance(out, int)
    assert inp > 0
    assert out >= 0
    assert usage["total_tokens"] == inp + out + thought
    # Cached (reused) prompt tokens are part of the input, never more than it.
    assert 0 <= (usage.get("total_cached_tokens") or 0) <= inp
    assert _by_modality(usage.get("input_tokens_by_modality")) == {"text": inp}
    if usage.get("output_tokens_by_modality") is not None:
        assert _by_modality(usage["output_tokens_by_modality"]) == {"text": out}


def _by_modality(items: Iterable[Mapping[str, Any]] | None) -> dict[str, int]:
    return {item["modality"]: item["tokens"] for item in items or ()}


def pick_stop_word(text: str) -> str:
    """A word from the middle of ``text`` whose first occurrence is not at the start."""
    words = [w.strip(".,;:!?\"'()") for w in text.split()]
    candidates = [w for w in words[2:] if len(w) >= 4 and w.isalpha() and text.find(w) > 0]
    assert candidates, f"no usable stop word in {text!r}"
    return candidates[len(candidates) // 2]


# ----- tokenizer ------------------------------------------------------------------------------


class Tokenizer:
    """The bundled model's own vocabulary and chat template, loaded in the test process."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        bos, eos = model.bos_eos_text()
        source = model.chat_template()
        assert source, "the bundled GGUF has no chat template"
        self._template = ChatTemplate(source, bos_token=bos, eos_token=eos)

    def count(self, text: str) -> int:
        """Tokens of raw text, without special tokens."""
        return len(self._model.tokenize(text, add_special=False))

    def prompt_tokens(self, user: str, system: str | None = None) -> int:
        """Tokens of a one-turn conversation as the chat template renders it."""
        messages = [ChatMessage("user", user)]
        if system is not None:
            messages.insert(0, ChatMessage("system", system))
        return len(self._model.tokenize(self._template.render(messages)))
