"""The cost of metrics: aggregate decode tok/s at 8 concurrent streams on a gemserve with
metrics on (the default: request counter, TTFT and inter-token histograms per output piece,
token counters, store timings; /metrics scraped every ``--scrape-interval`` seconds, 15 by
default as Prometheus) against one with ``metrics_enabled = false``, both up for the whole
run, their rounds interleaved (on off, off on, ...) because this shared machine's speed drifts
within minutes. Round r of both servers asks the same 8 long-answer questions (numbered r).

Per round and server: aggregate tok/s = sum of output tokens / wall time from the first
request to the end of the last stream (prefill included), and the median per-stream decode
tok/s (tokens after the first over first-to-last delta). The figures are the on/off ratio of
the medians and the median of the per-round (paired) ratios (target >= 0.99).

    .venv/bin/python bench/bench_metrics.py [--rounds 3] [--tokens 128] [--streams 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import httpx
from common import (
    LONG_PROMPTS,
    Server,
    StreamResult,
    add_omp_argument,
    apply_omp_policy,
    exit_on_sigterm,
    gemserve_server,
    gemserve_stream,
    md_table,
    median,
    print_preamble,
    ratio,
    verdict,
)

TARGET = 0.99
OFF_TOML = "[server]\nmetrics_enabled = false\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument(
        "--server-log-level",
        default="warning",
        help="debug shows the thread governor's decisions in bench/out/logs/",
    )
    parser.add_argument(
        "--fixed-threads",
        action="store_true",
        help="adaptive_threads = false on both servers: the thread governor gives a core back "
        "when other work (the server's event loop, this client) passes half a core, so a small "
        "cost near that line can flip a step's thread count; this takes the governor out",
    )
    add_omp_argument(parser)
    return parser.parse_args()


async def scrape_forever(client: httpx.AsyncClient, base_url: str, interval: float) -> int:
    scrapes = 0
    try:
        while True:
            response = await client.get(f"{base_url}/metrics")
            response.raise_for_status()
            scrapes += 1
            await asyncio.sleep(interval)
    except asyncio.CancelledError:
        return scrapes


async def run_round(
    server: Server, args: argparse.Namespace, round_no: int, *, scrape: bool
) -> tuple[float, float, int]:
    """Aggregate tok/s, median per-stream decode tok/s, and the scrapes made meanwhile."""
    limits = httpx.Limits(max_connections=args.streams + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        scraper = (
            asyncio.create_task(scrape_forever(client, server.base_url, args.scrape_interval))
            if scrape
            else None
        )
        t0 = time.perf_counter()
        results: list[StreamResult] = await asyncio.gather(
            *(
                gemserve_stream(
                    client,
                    server.base_url,
                    f"Request {round_no}. {LONG_PROMPTS[i % len(LONG_PROMPTS)]}",
                    args.tokens,
                )
                for i in range(args.streams)
            )
        )
        wall = time.perf_counter() - t0
        scrapes = 0
        if scraper is not None:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                scrapes = await scraper
    per_stream = median([r.decode_tps for r in results])
    return sum(r.output_tokens for r in results) / wall, per_stream, scrapes


async def main() -> None:
    args = parse_args()
    apply_omp_policy(args.omp_wait_policy)
    exit_on_sigterm()
    print_preamble("bench_metrics: decode tok/s with metrics on and off")
    names = ("on", "off")
    aggregate: dict[str, list[float]] = {n: [] for n in names}
    streams: dict[str, list[float]] = {n: [] for n in names}
    scrapes = 0
    fixed = "adaptive_threads = false\n" if args.fixed_threads else ""
    on_toml = f"[server]\n{fixed}" if fixed else ""
    off_toml = OFF_TOML + fixed
    with (
        gemserve_server(
            slots=args.streams,
            threads=args.threads,
            name="metrics-on",
            config_toml=on_toml,
            log_level=args.server_log_level,
        ) as on,
        gemserve_server(
            slots=args.streams,
            threads=args.threads,
            name="metrics-off",
            config_toml=off_toml,
            log_level=args.server_log_level,
        ) as off,
    ):
        servers = {"on": on, "off": off}
        async with httpx.AsyncClient() as client:  # /metrics answers only where enabled
            assert (await client.get(f"{on.base_url}/metrics")).status_code == 200
            assert (await client.get(f"{off.base_url}/metrics")).status_code == 404
        for name in names:  # warm-up: one short round each
            warm = argparse.Namespace(**{**vars(args), "tokens": 8})
            await run_round(servers[name], warm, -1, scrape=False)
        for round_no in range(args.rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            for name in order:
                agg, per, made = await run_round(servers[name], args, round_no, scrape=name == "on")
                aggregate[name].append(agg)
                streams[name].append(per)
                scrapes += made
                print(
                    f"round {round_no} {name:>3}: aggregate {agg:6.1f} tok/s, "
                    f"per stream {per:5.1f} tok/s",
                    flush=True,
                )
    print()
    rows = [
        [name, f"{median(aggregate[name]):.1f}", f"{median(streams[name]):.2f}"] for name in names
    ]
    print(
        f"rounds={args.rounds} streams={args.streams} max_output_tokens={args.tokens} "
        f"slots={args.streams} threads={args.threads}; /metrics scraped {scrapes} times "
        f"(every {args.scrape_interval:g} s during the 'on' rounds)\n"
    )
    print(md_table(["metrics", "aggregate tok/s (median)", "per-stream decode tok/s"], rows))
    agg_ratio = ratio(median(aggregate["on"]), median(aggregate["off"]))
    per_ratio = ratio(median(streams["on"]), median(streams["off"]))
    paired = median([ratio(a, b) for a, b in zip(aggregate["on"], aggregate["off"], strict=True)])
    print(
        f"\non/off aggregate: {agg_ratio:.3f}x {verdict(agg_ratio, TARGET)}; "
        f"per stream: {per_ratio:.3f}x {verdict(per_ratio, TARGET)}; "
        f"median of per-round aggregate ratios: {paired:.3f}x {verdict(paired, TARGET)} "
        f"(target >= {TARGET}x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
