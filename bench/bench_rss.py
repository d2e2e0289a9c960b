"""Resident memory of a gemserve process: idle after load, then across 1,000 short requests.

Starts ``gemserve serve`` with a throw-away data directory, records its RSS (the process and
any children) when /readyz first answers 200, after a short warm-up, and then every tenth of
the run while ``--concurrency`` clients send ``--requests`` short interactions
(max_output_tokens=4, unique prompts; streamed and unary requests alternate, so both paths
are exercised; stored unless ``--no-store``). Reports growth from idle and from warm-up, and
the slope over the second half of the run (a leak shows up as a steady slope).

    .venv/bin/python bench/bench_rss.py            # 1,000 requests
    .venv/bin/python bench/bench_rss.py --quick    # 40 requests
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from pathlib import Path

import httpx
import psutil
from common import (
    API_KEY,
    Server,
    add_omp_argument,
    apply_omp_policy,
    exit_on_sigterm,
    gemserve_body,
    gemserve_server,
    md_table,
    median,
    percentile,
    print_preamble,
)

MiB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--requests", type=int, default=1000, help="requests after warm-up")
    parser.add_argument("--warmup", type=int, default=20, help="requests before the baseline")
    parser.add_argument("--concurrency", type=int, default=4, help="clients sending at once")
    parser.add_argument("--tokens", type=int, default=4, help="max_output_tokens per request")
    parser.add_argument("--slots", type=int, default=4, help="gemserve --slots")
    parser.add_argument("--threads", type=int, default=2, help="gemserve --threads")
    parser.add_argument("--no-store", action="store_true", help="send store=false")
    parser.add_argument(
        "--time-limit", type=float, default=1800.0, help="stop sending after this many seconds"
    )
    add_omp_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.warmup = 40, 4
    return args


def tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return int(total)


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def one_request(
    client: httpx.AsyncClient, base_url: str, i: int, args: argparse.Namespace
) -> float:
    """One interaction; streamed when ``i`` is even. Returns its latency in seconds."""
    stream = i % 2 == 0
    body = gemserve_body(f"Request {i}: name one colour.", args.tokens, stream=stream)
    body["store"] = not args.no_store
    headers = {"x-goog-api-key": API_KEY}
    t0 = time.perf_counter()
    if stream:
        async with client.stream(
            "POST", f"{base_url}/v1beta/interactions", json=body, headers=headers
        ) as response:
            async for _ in response.aiter_bytes():
                pass
            status = response.status_code
    else:
        response = await client.post(f"{base_url}/v1beta/interactions", json=body, headers=headers)
        status = response.status_code
        if status == 200:
            json.loads(response.content)
    if status != 200:
        raise RuntimeError(f"request {i} answered {status}")
    return time.perf_counter() - t0


async def drive(
    server: Server, args: argparse.Namespace, start: int, count: int, deadline: float
) -> tuple[list[float], list[tuple[int, float, int]]]:
    """Send ``count`` requests with ``args.concurrency`` workers; sample RSS along the way."""
    latencies: list[float] = []
    samples: list[tuple[int, float, int]] = []  # (requests done, seconds, rss)
    every = max(1, count // 10)
    counter = itertools.count(start)
    done = 0
    t0 = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            i = next(counter)
            if i >= start + count:
                return
            latencies.append(await one_request(client, server.base_url, i, args))
            done += 1
            if done % every == 0:
                samples.append((done, time.perf_counter() - t0, tree_rss(server.pid)))

    limits = httpx.Limits(max_connections=args.concurrency + 2)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
    return latencies, samples


def main() -> int:
    args = parse_args()
    apply_omp_policy(args.omp_wait_policy)
    exit_on_sigterm()
    print_preamble("bench_rss: gemserve resident memory under short requests")
    print(
        f"requests={args.requests} warmup={args.warmup} concurrency={args.concurrency} "
        f"max_output_tokens={args.tokens} slots={args.slots} threads={args.threads} "
        f"store={not args.no_store} (streamed and unary requests alternate)\n",
        flush=True,
    )
    t_start = time.perf_counter()
    deadline = time.perf_counter() + args.time_limit
    with gemserve_server(slots=args.slots, threads=args.threads) as server:
        data_dir = Path(server.argv[server.argv.index("--data-dir") + 1])
        rss_ready = tree_rss(server.pid)
        time.sleep(2.0)
        rss_idle = tree_rss(server.pid)
        asyncio.run(drive(server, args, 0, args.warmup, deadline))
        time.sleep(1.0)
        rss_warm = tree_rss(server.pid)
        t_run = time.perf_counter()
        latencies, samples = asyncio.run(drive(server, args, args.warmup, args.requests, deadline))
        run_s = time.perf_counter() - t_run
        time.sleep(2.0)
        rss_end = tree_rss(server.pid)
        store_bytes = dir_size(data_dir)
    total_s = time.perf_counter() - t_start

    n = len(latencies)
    if n < args.requests:
        print(f"WARNING: time limit reached after {n} of {args.requests} requests\n")
    print(
        f"\n### RSS of the gemserve process ({n} requests after a {args.warmup}-request warm-up)\n"
    )
    print(
        md_table(
            ["point", "RSS (MiB)", "vs idle (MiB)"],
            [
                ["ready (/readyz 200)", rss_ready / MiB, (rss_ready - rss_idle) / MiB],
                ["idle, 2 s after ready", rss_idle / MiB, 0.0],
                [
                    f"after warm-up ({args.warmup} requests)",
                    rss_warm / MiB,
                    (rss_warm - rss_idle) / MiB,
                ],
                [f"after {n} more requests (+2 s)", rss_end / MiB, (rss_end - rss_idle) / MiB],
            ],
        )
    )
    growth_warm = (rss_end - rss_warm) / MiB
    print(f"\ngrowth over the {n} requests (end - after warm-up): {growth_warm:.1f} MiB")
    half = [s for s in samples if s[0] >= n // 2]
    if len(half) >= 2 and half[-1][0] > half[0][0]:
        slope = (half[-1][2] - half[0][2]) / (half[-1][0] - half[0][0])
        print(f"slope over the second half: {slope / 1024:.2f} KiB/request")
    print(f"data directory after the run: {store_bytes / MiB:.1f} MiB (on disk, not RSS)")

    print("\n### RSS samples during the run\n")
    print(
        md_table(
            ["requests done", "seconds", "RSS (MiB)"],
            [[d, t, r / MiB] for d, t, r in samples],
        )
    )
    rate = n / run_s if run_s > 0 else float("nan")
    print(
        f"\nrequest latency p50 {median(latencies) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms; {rate:.1f} requests/s; "
        f"total {total_s:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
