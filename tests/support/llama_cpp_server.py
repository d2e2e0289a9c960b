"""llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``, the
llama-cpp-python gemserve already runs, with its ``server`` extra's dependencies from the dev
requirements) on the bundled model, on loopback: the second real upstream of the
remote-engine tests, an implementation apart from llama.cpp's llama-server (FastAPI, one
request at a time behind a lock, no usage in streams, no chat-prompt tokenizer, no /slots)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.llama import default_spec
from tests.support.server import free_port
from tests.support.upstream_process import stop_process, wait_ready

# Variables the process may need; every other one stays out, because its settings
# (pydantic-settings) read any variable named like a field (PORT, HOST, API_KEY, MODEL, …).
_KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH")
START_TIMEOUT_S = 120


@dataclass
class LlamaCppServer:
    url: str  # the OpenAI base URL, with /v1
    root: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def decoding(self) -> bool:
        """Whether the model is busy with a request. It has no /slots; its model list waits
        for the model's lock, which a request holds until its answer ends or is dropped
        (started with ``interrupt_requests`` off, the wait does not disturb that answer)."""
        try:
            httpx.get(self.url + "/models", timeout=1.0)
        except httpx.TimeoutException:
            return True
        return False


def start_llama_cpp_server(tmp: Path, *, context: int = 4096, threads: int = 2) -> LlamaCppServer:
    port = free_port()
    log_path = tmp / f"llama-cpp-python-{port}.log"
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(default_spec().gguf_path()),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(context),
        "--n_threads", str(threads),
        # A second request waits for the first instead of cutting it short.
        "--interrupt_requests", "false",
    ]  # fmt: skip
    env = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    root = f"http://127.0.0.1:{port}"
    server = LlamaCppServer(root + "/v1", root, process, log_path)
    wait_ready(
        process, root + "/v1/models", "llama-cpp-python's server", server.log, START_TIMEOUT_S
    )
    return server


def stop_llama_cpp_server(server: LlamaCppServer) -> None:
    stop_process(server.process)
