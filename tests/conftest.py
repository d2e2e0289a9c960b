"""Shared fixtures: the real engine on the bundled model, and a live gemserve process."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gemserve.config import ModelRegistry, ModelSpec
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.engine.llama import LlamaEngine

ROOT = Path(__file__).resolve().parent.parent


def engine_child_check(fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed llama.cpp decoding one batch of the bundled model, in a child process;
    ``fault`` forces a failure (GEMSERVE_SELFCHECK_FAULT)."""
    env = {k: v for k, v in os.environ.items() if k != "GEMSERVE_SELFCHECK_FAULT"}
    if fault is not None:
        env["GEMSERVE_SELFCHECK_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "gemserve.engine.llama"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return line.split(":", 1)[1].strip()
    return "(unknown)"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Before any test decodes in this process: a build that dies on this CPU ends the run
    with the signal and the CPU's flags, not with pytest killed mid-test."""
    result = engine_child_check()
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        pytest.exit(
            f"the installed llama.cpp died by {name} decoding one batch on this CPU; rebuild "
            f"it (scripts/setup probes the CPU). CPU flags: {cpu_flags()}\n{result.stderr}",
            returncode=3,
        )


def default_spec() -> ModelSpec:
    registry = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID)
    return registry.resolve(DEFAULT_MODEL_ID).spec


def make_engine(*, slots: int = 4, context_length: int = 512, max_queued: int = 16) -> LlamaEngine:
    """A real llama.cpp engine on the bundled model (not started)."""
    spec = default_spec()
    return LlamaEngine(
        model_id=spec.id,
        gguf_path=spec.gguf_path(),
        context_length=context_length,
        output_token_limit=context_length,
        slots=slots,
        batch_tokens=256,
        threads=2,
        max_queued=max_queued,
    )


@pytest.fixture(scope="session")
async def engine() -> AsyncIterator[LlamaEngine]:
    """The real llama.cpp engine on SmolLM2-135M, 4 slots, shared by the engine tests."""
    llama_engine = make_engine()
    await llama_engine.start()
    yield llama_engine
    await llama_engine.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> LiveServer:
    port = free_port()
    log_path = tmp / f"gemserve-{port}.log"
    cmd = [
        sys.executable, "-m", "gemserve", "serve",
        "--port", str(port), "--data-dir", str(tmp / "data"), *extra,
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    server = LiveServer(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gemserve exited early:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"gemserve did not become ready:\n{server.log()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real `gemserve serve` process on a free loopback port, with the default model."""
    server = start_server(tmp_path_factory.mktemp("live"))
    yield server
    stop_server(server)


# ----- the tiny random vision model (scripts/make_tiny_vlm.py) ---------------------------------


@dataclass(frozen=True)
class TinyVlm:
    """A random Idefics3/SmolVLM pair: one image becomes 32 image tokens (2 chunks of 16)."""

    gguf: Path
    mmproj: Path
    tokens_per_image: int = 32
    chunks_per_image: int = 2


def load_tiny_vlm_maker() -> Callable[..., tuple[Path, Path]]:
    """``make_tiny_vlm`` from scripts/ (not a package), loaded by file path."""
    path = ROOT / "scripts" / "make_tiny_vlm.py"
    spec = importlib.util.spec_from_file_location("make_tiny_vlm", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    maker: Callable[..., tuple[Path, Path]] = module.make_tiny_vlm
    return maker


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> TinyVlm:
    """Written once per session (milliseconds); its answers are noise, its plumbing is real."""
    gguf, mmproj = load_tiny_vlm_maker()(tmp_path_factory.mktemp("tiny-vlm"), seed=0)
    return TinyVlm(gguf, mmproj)


# ----- the tiny random audio model (scripts/make_tiny_audio_lm.py) -----------------------------


@dataclass(frozen=True)
class TinyAudioLm:
    """A random Ultravox pair: each 30 s window of sound becomes one chunk of 50 tokens."""

    gguf: Path
    mmproj: Path
    tokens_per_window: int = 50


@pytest.fixture(scope="session")
def tiny_audio_lm(tmp_path_factory: pytest.TempPathFactory) -> TinyAudioLm:
    path = ROOT / "scripts" / "make_tiny_audio_lm.py"
    spec = importlib.util.spec_from_file_location("make_tiny_audio_lm", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gguf, mmproj = module.make_tiny_audio_lm(tmp_path_factory.mktemp("tiny-audio"), seed=0)
    return TinyAudioLm(gguf, mmproj)
