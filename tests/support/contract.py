"""What the contract tests share: the client environment of the guide's examples, running
examples concurrently, the JS SDK's examples, batches through the Python SDK (polling, JSONL
input and responses files), and the live server's access log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

from google import genai
from google.genai import types

from tests.support.paths import ROOT, TESTS
from tests.support.server import LiveServer

T = TypeVar("T")

# The model name every example of the guide uses; the server maps it to the bundled model.
MODEL = "gemini-3-flash-preview"
API_KEY = "contract-test-key"
DOCS_HOST = "https://generativelanguage.googleapis.com"

# The user's guide lives in ../shared next to the project (see shared/README.md).
SEED_GUIDE = ROOT.parent / "shared" / "seed" / "text-generation.zh.txt"
JS_DIR = TESTS / "contract" / "js"

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


def client_env(base_url: str) -> dict[str, str]:
    """The environment the guide's examples run under: only the base URL and a key are set."""
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_ENV_NOISE}
    env["GOOGLE_GEMINI_BASE_URL"] = base_url
    env["GEMINI_API_KEY"] = API_KEY
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def seed_guide() -> str | None:
    return SEED_GUIDE.read_text(encoding="utf-8") if SEED_GUIDE.is_file() else None


# Generous: a safety net against a hung server, not a performance budget. On a busy 2-core
# machine the guide's unbounded examples (up to 512 tokens each) can take minutes.
EXAMPLE_TIMEOUT_S = 900


# How long an SDK test waits for a batch: the bundled model answers a few short requests.
BATCH_POLL_S = 300


def wait_batch_done(client: genai.Client, name: str) -> types.BatchJob:
    """The batch job, polled through the Python SDK until it has ended (succeeded, failed,
    cancelled or expired)."""
    deadline = time.monotonic() + BATCH_POLL_S
    while True:
        job = client.batches.get(name=name)
        if job.done:
            return job
        assert time.monotonic() < deadline, f"{name} did not finish: {job.state}"
        time.sleep(0.2)


def upload_jsonl(client: genai.Client, path: Path, lines: list[dict[str, Any]]) -> str:
    """Writes ``lines`` to ``path`` as JSONL (a batch's input file) and uploads it; its name."""
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    uploaded = client.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert uploaded.name is not None
    return uploaded.name


def responses_file_lines(client: genai.Client, job: types.BatchJob) -> list[dict[str, Any]]:
    """The lines of an ended file batch's responses file, which is named after the batch."""
    assert job.name is not None
    assert job.dest is not None
    assert job.dest.file_name == f"files/batch-{job.name.removeprefix('batches/')}"
    content = client.files.download(file=job.dest.file_name).decode()
    return [json.loads(line) for line in content.splitlines()]


def run_js_example(base_url: str, script: str, *args: str) -> dict[str, Any]:
    """Runs tests/contract/js/``script`` (with ``args``) against ``base_url`` under the guide's
    client environment; it must exit 0, and what it printed is JSON of what it saw."""
    result = subprocess.run(
        ["node", script, *args],
        cwd=JS_DIR,
        env=client_env(base_url),
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen: dict[str, Any] = json.loads(result.stdout)
    return seen


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


def pick_stop_word(text: str) -> str:
    """A word from the middle of ``text`` whose first occurrence is not at the start."""
    words = [w.strip(".,;:!?\"'()") for w in text.split()]
    candidates = [w for w in words[2:] if len(w) >= 4 and w.isalpha() and text.find(w) > 0]
    assert candidates, f"no usable stop word in {text!r}"
    return candidates[len(candidates) // 2]


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
