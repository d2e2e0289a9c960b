"""Single-stream decode speed and time to first token: gemserve's engine, llama-cpp-python, HTTP.

Three paths generate from the same GGUF, with the same thread count, the same rendered chat
prompt and greedy decoding with gemserve's repeat penalty:

  engine   gemserve's ``LlamaEngine.generate`` in this process (no HTTP), consuming the stream
  llama    llama-cpp-python's ``Llama.create_completion(stream=True)`` on the same prompt tokens,
           in a child process (two llama.cpp contexts in one process slow each other down)
  sdk      the official ``google-genai`` SDK streaming ``interactions.create`` from a gemserve
           process started here (the full server: HTTP, JSON, SSE, the SDK's parsing)
  raw      the same server read by a minimal httpx SSE client (separates the server's cost
           from the SDK's: google-genai 3.3.0 builds a pydantic model per event, several ms
           of client CPU per token, which competes with the server for the same cores)

Decode tok/s excludes the time to the first token: (output tokens - 1) / (last delta - first
delta). Repetitions are interleaved (engine, llama, sdk, rotated) so that drift in machine
load hits all three alike; the medians are reported. A second phase sends short requests
(max_output_tokens=1) to measure what HTTP adds to the time to first token.

    .venv/bin/python bench/bench_decode.py            # full run
    .venv/bin/python bench/bench_decode.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from common import (
    API_KEY,
    LONG_PROMPTS,
    MODEL_ID,
    REPEAT_LAST_N,
    REPEAT_PENALTY,
    Server,
    StreamResult,
    add_omp_argument,
    apply_omp_policy,
    exit_on_sigterm,
    gemserve_server,
    gemserve_stream,
    gguf_path,
    md_table,
    median,
    percentile,
    print_preamble,
    ratio,
    verdict,
)
from google import genai

from gemserve.app import llama_engine
from gemserve.config import ModelRegistry, Settings, load_settings
from gemserve.engine import ChatMessage, Engine, Finished, GenerationRequest, TextDelta
from gemserve.engine.chat_template import ChatTemplate
from gemserve.protocol.interactions import GenerationConfig
from gemserve.service.sampling import sampling_params

PATHS = ("engine", "llama", "sdk", "raw")
LABELS = {
    "engine": "gemserve engine alone (in-process)",
    "llama": "llama-cpp-python create_completion",
    "sdk": "gemserve over HTTP, google-genai SDK stream",
    "raw": "gemserve over HTTP, raw httpx SSE",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--tokens", type=int, default=256, help="max output tokens per run")
    parser.add_argument("--reps", type=int, default=7, help="measured runs per path")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per path")
    parser.add_argument("--ttft-requests", type=int, default=20, help="TTFT runs per path")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads everywhere")
    parser.add_argument("--slots", type=int, default=1, help="gemserve slots (engine and server)")
    parser.add_argument("--prompt", default=LONG_PROMPTS[0], help="user message")
    parser.add_argument(
        "--llama-flash-attn",
        choices=("on", "off"),
        default="on",
        help="flash attention for llama-cpp-python (gemserve uses llama.cpp's 'auto', which "
        "enables it on CPU; llama-cpp-python defaults to off)",
    )
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between runs")
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help=f"comma-separated subset of {','.join(PATHS)} for the decode phase",
    )
    add_omp_argument(parser)
    args = parser.parse_args()
    args.paths = tuple(p for p in PATHS if p in args.paths.split(","))
    if args.quick:
        args.tokens, args.reps, args.warmup, args.ttft_requests = 32, 2, 1, 4
    return args


# ----- the three paths ------------------------------------------------------------------------


def build_engine(args: argparse.Namespace, data_dir: Path) -> tuple[Engine, Settings]:
    """The engine exactly as ``gemserve serve --slots S --threads T`` builds it."""
    settings = load_settings({"slots": args.slots, "threads": args.threads, "data_dir": data_dir})
    registry = ModelRegistry.from_config(settings.models, settings.aliases, MODEL_ID)
    return llama_engine(registry.resolve(MODEL_ID).spec, settings), settings


def engine_request(prompt: str, max_tokens: int, settings: Settings) -> GenerationRequest:
    """The request the HTTP layer builds for ``input=prompt`` with temperature 0."""
    registry = ModelRegistry.from_config(settings.models, settings.aliases, MODEL_ID)
    spec = registry.resolve(MODEL_ID).spec
    config = GenerationConfig(max_output_tokens=max_tokens, temperature=0)
    sampling = sampling_params(config, spec, settings.limits)
    return GenerationRequest((ChatMessage("user", prompt),), sampling)


async def engine_once(engine: Engine, request: GenerationRequest) -> StreamResult:
    result = StreamResult(time.perf_counter())
    stream = await engine.generate(request)
    async for event in stream:
        if isinstance(event, TextDelta):
            result.delta(time.perf_counter(), event.text)
        elif isinstance(event, Finished):
            result.output_tokens = event.output_tokens
            result.prompt_tokens = event.prompt_tokens
            result.finish = event.reason.value
            if event.error:
                raise RuntimeError(f"engine error: {event.error}")
    result.t_end = time.perf_counter()
    if math.isnan(result.t_first):
        result.t_first = result.t_last = result.t_end
    return result


class LlamaPath:
    """llama-cpp-python's high-level API on the same prompt tokens gemserve decodes.

    It runs in a process of its own: a second llama.cpp context that has decoded in this
    process slows gemserve's in-process engine by about a third (measured: 181 tok/s alone,
    105-128 tok/s after one ``create_completion`` in the same process), and the reverse
    holds too, so the two references would be measured against each other's interference.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_llama_worker,
            args=(child, args.threads, args.llama_flash_attn == "on"),
            name="llama-cpp-python",
            daemon=True,
        )
        self._process.start()
        child.close()

    def _call(self, *request: Any) -> Any:
        self._conn.send(request)
        kind, value = self._conn.recv()
        if kind == "error":
            raise RuntimeError(f"llama-cpp-python worker: {value}")
        return value

    def prompt_tokens(self, prompt: str) -> list[int]:
        tokens: list[int] = self._call("prompt_tokens", prompt)
        return tokens

    def once(self, tokens: list[int], max_tokens: int) -> StreamResult:
        result: StreamResult = self._call("once", tokens, max_tokens)
        return result

    def close(self) -> None:
        self._conn.send(("stop",))
        self._process.join(timeout=30)


def _llama_worker(conn: Connection, threads: int, flash_attn: bool) -> None:
    """The llama-cpp-python side: answers ``LlamaPath`` requests until told to stop."""
    llama = _Llama(threads, flash_attn)
    while True:
        request = conn.recv()
        try:
            if request[0] == "stop":
                return
            if request[0] == "prompt_tokens":
                conn.send(("ok", llama.prompt_tokens(request[1])))
            else:
                conn.send(("ok", llama.once(request[1], request[2])))
        except Exception as exc:  # reported to the parent, which raises
            conn.send(("error", repr(exc)))


class _Llama:
    def __init__(self, threads: int, flash_attn: bool) -> None:
        from llama_cpp import Llama

        self.llm = Llama(
            model_path=str(gguf_path()),
            n_threads=threads,
            n_threads_batch=threads,
            n_ctx=4096,
            n_batch=512,
            flash_attn=flash_attn,
            last_n_tokens_size=REPEAT_LAST_N,
            verbose=False,
        )
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeError("the GGUF has no chat template")
        bos = self.llm.detokenize([self.llm.token_bos()], special=True).decode()
        eos = self.llm.detokenize([self.llm.token_eos()], special=True).decode()
        self.template = ChatTemplate(template, bos_token=bos, eos_token=eos)

    def prompt_tokens(self, prompt: str) -> list[int]:
        rendered = self.template.render([ChatMessage("user", prompt)])
        tokens: list[int] = self.llm.tokenize(rendered.encode(), add_bos=True, special=True)
        return tokens

    def once(self, tokens: list[int], max_tokens: int) -> StreamResult:
        # No reset(): like gemserve's slot KV reuse, llama-cpp-python reuses the prompt prefix
        # of the previous run, so TTFT is about one decode step on every path.
        result = StreamResult(time.perf_counter())
        chunks: Any = self.llm.create_completion(
            tokens,
            max_tokens=max_tokens,
            temperature=0.0,
            repeat_penalty=REPEAT_PENALTY,
            stream=True,
        )
        for chunk in chunks:
            choice = chunk["choices"][0]
            result.delta(time.perf_counter(), choice.get("text") or "")
            if choice.get("finish_reason"):
                result.finish = str(choice["finish_reason"])
        result.t_end = time.perf_counter()
        if math.isnan(result.t_first):
            result.t_first = result.t_last = result.t_end
        # Exact count: every generated token but a final one cut by max_tokens gets evaluated.
        if result.finish == "length":
            result.output_tokens, result.tokens_from = max_tokens, "length"
        else:
            result.output_tokens, result.tokens_from = self.llm.n_tokens - len(tokens), "n_tokens"
        return result


def sdk_once(client: genai.Client, prompt: str, max_tokens: int) -> StreamResult:
    result = StreamResult(time.perf_counter())
    cpu0 = time.thread_time()
    stream: Any = client.interactions.create(
        model=MODEL_ID,
        input=prompt,
        stream=True,
        generation_config={"max_output_tokens": max_tokens, "temperature": 0},
    )
    try:
        for event in stream:
            kind = event.event_type
            if kind == "step.delta":
                if event.delta.type == "text":
                    result.delta(time.perf_counter(), event.delta.text or "")
            elif kind == "interaction.completed":
                usage = event.interaction.usage
                result.output_tokens = int(usage.total_output_tokens or 0) if usage else 0
                result.finish = str(event.interaction.status)
            elif kind == "error":
                raise RuntimeError(f"stream error: {event.error}")
    finally:
        stream.close()
    result.t_end = time.perf_counter()
    result.client_cpu = time.thread_time() - cpu0
    if math.isnan(result.t_first):
        result.t_first = result.t_last = result.t_end
    return result


# ----- the run --------------------------------------------------------------------------------


def summarize(results: dict[str, list[StreamResult]], max_tokens: int) -> str:
    rows: list[list[object]] = []
    for path, runs in results.items():
        if not runs:
            continue
        tps = [r.decode_tps for r in runs]
        tokens = sorted({r.output_tokens for r in runs})
        rows.append(
            [
                LABELS[path],
                len(runs),
                "/".join(str(t) for t in tokens),
                median([r.ttft * 1000 for r in runs]),
                median(tps),
                min(tps),
                max(tps),
                median([r.client_cpu * 1000 / max(r.n_deltas, 1) for r in runs]),
            ]
        )
        short = [r.output_tokens for r in runs if r.output_tokens < max_tokens]
        if short:
            print(
                f"WARNING: {path}: {len(short)} run(s) stopped before {max_tokens} tokens "
                f"({short}); decode tok/s still divides by the tokens actually generated.",
                file=sys.stderr,
            )
    return md_table(
        [
            "path",
            "runs",
            "output tokens",
            "TTFT p50 (ms)",
            "decode tok/s (median)",
            "min",
            "max",
            "client CPU ms/delta",
        ],
        rows,
    )


def main() -> int:
    args = parse_args()
    apply_omp_policy(args.omp_wait_policy)
    exit_on_sigterm()
    print_preamble("bench_decode: single-stream decode and TTFT")
    print(
        f"prompt={args.prompt!r} max_output_tokens={args.tokens} reps={args.reps} "
        f"warmup={args.warmup} threads={args.threads} slots={args.slots} "
        f"temperature=0 repeat_penalty={REPEAT_PENALTY} "
        f"llama_flash_attn={args.llama_flash_attn}\n",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="gemserve-bench-") as tmp,
        asyncio.Runner() as runner,
    ):
        engine, settings = build_engine(args, Path(tmp))
        runner.run(engine.start())
        try:
            llama = LlamaPath(args)
            with gemserve_server(slots=args.slots, threads=args.threads) as server:
                sdk = genai.Client(api_key=API_KEY, http_options={"base_url": server.base_url})
                http = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0))
                try:
                    code = run_phases(args, runner, engine, settings, llama, sdk, http, server)
                finally:
                    runner.run(http.aclose())
                    sdk.close()
                    llama.close()
        finally:
            runner.run(engine.close())
    return code


def run_phases(
    args: argparse.Namespace,
    runner: asyncio.Runner,
    engine: Engine,
    settings: Settings,
    llama: LlamaPath,
    sdk: genai.Client,
    http: httpx.AsyncClient,
    server: Server,
) -> int:
    request = engine_request(args.prompt, args.tokens, settings)
    llama_tokens = llama.prompt_tokens(args.prompt)

    def run(path: str, max_tokens: int) -> StreamResult:
        time.sleep(args.pause)
        if path == "engine":
            req = (
                request
                if max_tokens == args.tokens
                else engine_request(args.prompt, max_tokens, settings)
            )
            return runner.run(engine_once(engine, req))
        if path == "llama":
            return llama.once(llama_tokens, max_tokens)
        if path == "sdk":
            return sdk_once(sdk, args.prompt, max_tokens)
        if path == "raw":
            return runner.run(gemserve_stream(http, server.base_url, args.prompt, max_tokens))
        raise ValueError(path)

    # Same prompt on both sides: compare gemserve's prompt length with llama-cpp-python's.
    engine_prompt_len = run("engine", 1).prompt_tokens
    print(
        f"prompt tokens: gemserve {engine_prompt_len}, llama-cpp-python {len(llama_tokens)}"
        + ("" if engine_prompt_len == len(llama_tokens) else "  <-- MISMATCH"),
        flush=True,
    )

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        for path in args.paths:
            run(path, min(args.tokens, 16))
    paths: tuple[str, ...] = args.paths
    results: dict[str, list[StreamResult]] = {p: [] for p in paths}
    for rep in range(args.reps):
        k = rep % len(paths)
        order = paths[k:] + paths[:k]
        for path in order:
            res = run(path, args.tokens)
            results[path].append(res)
            print(
                f"  rep {rep + 1}/{args.reps} {path:6s} tokens={res.output_tokens:4d} "
                f"ttft={res.ttft * 1000:7.1f} ms decode={res.decode_tps:6.1f} tok/s",
                file=sys.stderr,
                flush=True,
            )
    decode_s = time.perf_counter() - t0

    ttft_paths = ("engine", "sdk", "raw")
    ttft: dict[str, list[StreamResult]] = {p: [] for p in ttft_paths}
    t1 = time.perf_counter()
    for i in range(args.ttft_requests):
        k = i % len(ttft_paths)
        for path in ttft_paths[k:] + ttft_paths[:k]:
            ttft[path].append(run(path, 1))
    ttft_s = time.perf_counter() - t1

    print(f"\n### Decode (single stream, {args.tokens} tokens, median of {args.reps})\n")
    print(summarize(results, args.tokens))
    med = {p: median([r.decode_tps for r in results.get(p, [])]) for p in PATHS}
    rows: list[list[object]] = []
    for name, num, den, target in (
        ("sdk_http / engine_alone", "sdk", "engine", 0.95),
        ("sdk_http / create_completion", "sdk", "llama", 1.0),
        ("raw_http / engine_alone", "raw", "engine", None),
        ("engine_alone / create_completion", "engine", "llama", None),
    ):
        value = ratio(med[num], med[den])
        if target is None:
            rows.append([name, value, "", ""])
        else:
            rows.append([name, value, f">= {target}", verdict(value, target)])
    print("\n### Decode ratios\n")
    print(md_table(["ratio", "value", "target", "verdict"], rows))

    p50 = {p: median([r.ttft * 1000 for r in v]) for p, v in ttft.items()}
    p90 = {p: percentile([r.ttft * 1000 for r in v], 90) for p, v in ttft.items()}
    cpu = {p: median([r.client_cpu * 1000 for r in v]) for p, v in ttft.items()}
    rows = [[LABELS["engine"], p50["engine"], p90["engine"], "", "", ""]]
    for path in ("sdk", "raw"):
        added = p50[path] - p50["engine"]
        check = "<= 10 " + verdict(added, 10.0, higher_is_better=False)
        rows.append([LABELS[path], p50[path], p90[path], added, check, cpu[path]])
    print(f"\n### Time to first token, max_output_tokens=1, {args.ttft_requests} requests each\n")
    print(
        md_table(
            [
                "path",
                "TTFT p50 (ms)",
                "TTFT p90 (ms)",
                "added vs engine p50 (ms)",
                "target",
                "client CPU ms/request",
            ],
            rows,
        )
    )
    print(f"\n(decode phase {decode_s:.0f} s, TTFT phase {ttft_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
