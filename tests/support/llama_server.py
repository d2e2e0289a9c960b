"""llama.cpp's ``llama-server``, built from the llama.cpp that gemserve pins
(bench/build_llama_server.sh, cached under bench/out), on the bundled model, on loopback: the
real OpenAI-compatible upstream of the remote-engine tests."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from gemserve.engine.cpu.build import cache_root
from tests.support.llama import default_spec
from tests.support.paths import ROOT
from tests.support.server import free_port
from tests.support.upstream_process import stop_process, wait_ready

BUILD_SCRIPT = ROOT / "bench" / "build_llama_server.sh"
# In the engine build cache (GEMSERVE_ENGINE_CACHE moves it), by llama.cpp revision: a fresh
# clone, as CI's, reuses it.
CACHE = cache_root() / "llama-server" / "llama-cpp-python-0.3.36"
BINARY = CACHE / "llama.cpp-build" / "bin" / "llama-server"
# Measured from an empty bench/out on this project's 2-core machine (the sdist download, CMake,
# llama-server and the libraries it links): 19.5 minutes of wall time beside other sessions'
# work, 12.4 CPU-minutes (about 7 minutes on two idle cores). Later runs find the binary.
BUILD_TIMEOUT_S = 1800


def ensure_built() -> Path:
    """The binary, built first if missing or built with other CPU flags than the engine's
    (the script checks both, in well under a second when nothing is to be done: a binary
    built natively elsewhere in this cache can die by SIGILL here)."""
    subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        check=True,
        timeout=BUILD_TIMEOUT_S,
        stdout=subprocess.DEVNULL,
        env={
            **os.environ,
            "PYTHON": str(ROOT / ".venv" / "bin" / "python"),
            "LLAMA_SERVER_OUT": str(CACHE),
        },
    )
    return BINARY


@dataclass
class LlamaServer:
    url: str  # the OpenAI base URL, with /v1
    root: str
    process: subprocess.Popen[bytes]
    log_path: Path
    slots: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def slot_states(self) -> list[bool]:
        """Whether each slot is decoding (``/slots``)."""
        slots = httpx.get(self.root + "/slots", timeout=10).json()
        return [bool(slot.get("is_processing")) for slot in slots]

    def decoding(self) -> bool:
        """Whether any slot is decoding."""
        return any(self.slot_states())


def start_llama_server(
    tmp: Path, *, slots: int = 4, context: int = 4096, threads: int = 2, extra: tuple[str, ...] = ()
) -> LlamaServer:
    binary = ensure_built()
    port = free_port()
    log_path = tmp / f"llama-server-{port}.log"
    cmd = [
        str(binary),
        "--model", str(default_spec().gguf_path()),
        "--host", "127.0.0.1", "--port", str(port),
        "--jinja",
        "--ctx-size", str(context * slots), "--parallel", str(slots),
        "--threads", str(threads),
        "--slots", "--no-webui",
        *extra,
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    server = LlamaServer(root + "/v1", root, process, log_path, slots)
    wait_ready(process, root + "/health", "llama-server", server.log, 120)
    return server


def stop_llama_server(server: LlamaServer) -> None:
    stop_process(server.process)
