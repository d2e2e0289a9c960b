"""Aggregate generation throughput at 1, 4 and 8 concurrent streams: gemserve against peers.

Systems (each started here on a free 127.0.0.1 port, stopped at the end):

  gemserve          ``gemserve serve --slots <max level> --threads T``, streaming
                    ``POST /v1beta/interactions`` read by a raw httpx SSE client (the
                    google-genai SDK costs several ms of client CPU per event, which on a
                    2-core machine would measure the client; see bench_decode.py)
  llama-cpp-python  ``python -m llama_cpp.server`` (one ``Llama`` behind a lock: requests
                    run one at a time), streaming ``/v1/chat/completions``
  llama-server      llama.cpp's server built by build_llama_server.sh, ``--parallel <max
                    level> -c <max level x 4096>`` with continuous batching, streaming
                    ``/v1/chat/completions`` (skipped when not built)

Every system gets the same GGUF, the same thread count, 4096 tokens of context per sequence,
greedy decoding with gemserve's repeat penalty (1.15, sent to the peers explicitly), the same
prompts and the same max tokens. Stream i of a round asks long-answer question i, prefixed
with a request number unique within the system's run ("Request 17. Write ..."), so that no
system reuses a previous round's KV beyond the chat template's shared system prompt (gemserve
and llama-server both keep per-slot KV for prefix reuse; llama-cpp-python reuses the prefix of
its previous request). The numbering is the same for every system, so they answer the same
requests. ``ignore_eos`` does not exist in gemserve: the questions are ones the model answers
at length, and the table reports the tokens actually generated.

A level's aggregate tok/s is (sum of output tokens of its C streams) / (wall time from sending
the first request to the end of the last stream), prefill included; median over reps. All
servers are up for the whole run and their rounds alternate (A B C, B C A, ...), because this
shared machine's speed drifts by tens of percent within minutes: run one after the other, the
systems would be measured on different machines.

    .venv/bin/python bench/bench_concurrency.py            # full run
    .venv/bin/python bench/bench_concurrency.py --quick    # smoke run
    .venv/bin/python bench/bench_concurrency.py --systems gemserve --baseline HEAD
                                           # the working tree against the last commit
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import (
    LLAMA_SERVER_BIN,
    LONG_PROMPTS,
    Server,
    StreamResult,
    add_omp_argument,
    apply_omp_policy,
    exit_on_sigterm,
    gemserve_server,
    gemserve_stream,
    git_worktree,
    llama_cpp_python_server,
    llama_server,
    md_table,
    median,
    openai_stream,
    print_preamble,
    ratio,
    verdict,
)

SYSTEMS = ("gemserve", "llama-cpp-python", "llama-server")


def prompt(request_no: int, stream: int) -> str:
    return f"Request {request_no}. {LONG_PROMPTS[stream % len(LONG_PROMPTS)]}"


StreamFn = Callable[[httpx.AsyncClient, str, int], Awaitable[StreamResult]]


@dataclass
class LevelResult:
    system: str
    streams: int
    agg_tps: list[float]
    results: list[StreamResult]

    @property
    def tokens(self) -> list[int]:
        return [r.output_tokens for r in self.results]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--tokens", type=int, default=128, help="max output tokens per stream")
    parser.add_argument("--levels", default="1,4,8", help="concurrency levels, comma-separated")
    parser.add_argument("--reps", type=int, default=3, help="measured rounds per level")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads everywhere")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}"
    )
    parser.add_argument(
        "--llama-flash-attn",
        choices=("on", "off"),
        default="on",
        help="flash attention for llama-cpp-python's server (the others use llama.cpp's "
        "'auto', which enables it on CPU)",
    )
    parser.add_argument(
        "--round-timeout", type=float, default=600.0, help="seconds allowed for one round"
    )
    parser.add_argument(
        "--gguf",
        type=Path,
        help="serve this GGUF instead of the bundled one, on every system (e.g. another "
        "quantization of the same model)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run gemserve as of git REF (e.g. HEAD for the last commit), interleaved "
        "with the working tree's, and print their ratio: a before/after on one machine",
    )
    add_omp_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.reps = 24, 1
    args.levels = sorted({int(x) for x in args.levels.split(",") if x})
    args.systems = [s for s in SYSTEMS if s in args.systems.split(",")]
    return args


async def run_round(
    stream: StreamFn, streams: int, tokens: int, first_no: int, *, limit_s: float
) -> tuple[float, list[StreamResult]]:
    limits = httpx.Limits(max_connections=streams + 4, max_keepalive_connections=streams + 4)
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(limit_s, connect=10.0), limits=limits) as client,
        asyncio.timeout(limit_s),
    ):
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(stream(client, prompt(first_no + i, i), tokens) for i in range(streams))
        )
        wall = time.perf_counter() - t0
    return sum(r.output_tokens for r in results) / wall, list(results)


def stream_fn(system: str, base_url: str) -> StreamFn:
    if system.startswith("gemserve"):

        async def gem(client: httpx.AsyncClient, prompt: str, tokens: int) -> StreamResult:
            return await gemserve_stream(client, base_url, prompt, tokens)

        return gem
    is_llama_server = system == "llama-server"

    async def openai(client: httpx.AsyncClient, prompt: str, tokens: int) -> StreamResult:
        return await openai_stream(client, base_url, prompt, tokens, llama_server=is_llama_server)

    return openai


def start(system: str, args: argparse.Namespace, max_level: int) -> Server:
    if system == "llama-cpp-python":
        return llama_cpp_python_server(
            threads=args.threads, flash_attn=args.llama_flash_attn == "on", gguf=args.gguf
        )
    if system == "llama-server":
        return llama_server(parallel=max_level, threads=args.threads, gguf=args.gguf)
    raise ValueError(system)


async def bench_interleaved(
    servers: dict[str, Server], args: argparse.Namespace
) -> list[LevelResult]:
    """Every round of every level runs once per system, the systems taking turns (the first
    system of a rep rotates), so drift in this shared machine's speed hits all of them alike."""
    fns = {system: stream_fn(system, server.base_url) for system, server in servers.items()}
    for fn in fns.values():
        await run_round(fn, 1, min(16, args.tokens), 0, limit_s=args.round_timeout)  # warm-up
    out: list[LevelResult] = []
    next_no = 1
    systems = list(fns)
    for level in args.levels:
        by_system = {system: LevelResult(system, level, [], []) for system in systems}
        for rep in range(args.reps):
            turn = systems[rep % len(systems) :] + systems[: rep % len(systems)]
            for system in turn:
                # Every system answers the same numbered requests.
                agg, results = await run_round(
                    fns[system], level, args.tokens, next_no, limit_s=args.round_timeout
                )
                by_system[system].agg_tps.append(agg)
                by_system[system].results.extend(results)
                print(
                    f"  {system:16s} streams={level} rep {rep + 1}/{args.reps}: {agg:6.1f} tok/s "
                    f"tokens={[r.output_tokens for r in results]}",
                    file=sys.stderr,
                    flush=True,
                )
            next_no += level
        out.extend(by_system.values())
    return out


def main() -> int:
    args = parse_args()
    apply_omp_policy(args.omp_wait_policy)
    exit_on_sigterm()
    print_preamble("bench_concurrency: aggregate tok/s at 1/4/8 streams")
    max_level = max(args.levels)
    print(
        f"levels={args.levels} max_output_tokens={args.tokens} reps={args.reps} "
        f"threads={args.threads} systems={args.systems} temperature=0 repeat_penalty=1.15 "
        f"gemserve_slots={max_level} llama_server_parallel={max_level} "
        f"gguf={args.gguf or 'the bundled one above'} "
        "(all servers up at once, rounds interleaved)\n",
        flush=True,
    )
    skipped: list[str] = []
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for system in args.systems:
            if system == "llama-server" and not LLAMA_SERVER_BIN.exists():
                skipped.append(f"llama-server: {LLAMA_SERVER_BIN} not built")
                continue
            if system == "gemserve":
                servers[system] = stack.enter_context(
                    gemserve_server(slots=max_level, threads=args.threads, gguf=args.gguf)
                )
            else:
                servers[system] = stack.enter_context(start(system, args, max_level))
        if args.baseline:
            baseline = f"gemserve@{args.baseline}"
            tree = stack.enter_context(git_worktree(args.baseline))
            servers[baseline] = stack.enter_context(
                gemserve_server(slots=max_level, threads=args.threads, source=tree, name=baseline)
            )
        results = asyncio.run(bench_interleaved(servers, args))
    # Report in the fixed system order, a baseline right after gemserve.
    order = [SYSTEMS[0], f"gemserve@{args.baseline}", *SYSTEMS[1:]]
    all_results = sorted(results, key=lambda lr: (order.index(lr.system), lr.streams))
    elapsed = time.perf_counter() - t0

    print("\n### Aggregate generation throughput\n")
    rows: list[list[object]] = []
    for lr in all_results:
        tokens = lr.tokens
        rows.append(
            [
                lr.system,
                lr.streams,
                len(lr.agg_tps),
                f"{min(tokens)}-{max(tokens)} (mean {sum(tokens) / len(tokens):.0f}; "
                + "/".join(sorted({r.tokens_from for r in lr.results}))
                + ")",
                median(lr.agg_tps),
                median([r.ttft * 1000 for r in lr.results]),
                median([r.decode_tps for r in lr.results]),
            ]
        )
    print(
        md_table(
            [
                "system",
                "streams",
                "rounds",
                "output tokens/stream",
                "aggregate tok/s (median)",
                "TTFT p50 (ms)",
                "per-stream decode tok/s p50",
            ],
            rows,
        )
    )
    for note in skipped:
        print(f"\nskipped: {note}")
    short = [(lr.system, lr.streams, t) for lr in all_results for t in lr.tokens if t < args.tokens]
    if short:
        print(f"\nnote: {len(short)} stream(s) ended before {args.tokens} tokens: {short[:8]}")

    agg = {(lr.system, lr.streams): median(lr.agg_tps) for lr in all_results}
    top, low = max_level, min(args.levels)
    g_top = agg.get(("gemserve", top), float("nan"))
    rows = []
    for name, value, target in (
        (
            f"gemserve {top}-stream / llama-server {top}-stream",
            ratio(g_top, agg.get(("llama-server", top), float("nan"))),
            1.0,
        ),
        (
            f"gemserve {top}-stream / gemserve {low}-stream",
            ratio(g_top, agg.get(("gemserve", low), float("nan"))),
            1.8,
        ),
        *(
            (
                f"gemserve {level}-stream / gemserve@{args.baseline} {level}-stream",
                ratio(
                    agg.get(("gemserve", level), float("nan")),
                    agg.get((f"gemserve@{args.baseline}", level), float("nan")),
                ),
                None,
            )
            for level in (args.levels if args.baseline else [])
        ),
        (
            f"gemserve {top}-stream / llama-cpp-python {top}-stream",
            ratio(g_top, agg.get(("llama-cpp-python", top), float("nan"))),
            None,
        ),
    ):
        if top == low and "gemserve" in name.split("/")[1]:
            continue  # one level: gemserve against itself says nothing
        if target is None:
            rows.append([name, value, "", ""])
        else:
            rows.append([name, value, f">= {target}", verdict(value, target)])
    print("\n### Ratios\n")
    print(md_table(["ratio", "value", "target", "verdict"], rows))
    print(f"\n(total {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
