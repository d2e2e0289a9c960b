"""gemserve with a remote model (``engine = "openai"``) against the same llama-server directly.

One llama-server (``--parallel 8``) on the bundled model; one gemserve whose model ``pool``
is that llama-server. The same requests go both ways, interleaved (direct, gemserve, direct,
gemserve, …), with the same sampling (greedy, repeat penalty 1.15, top-k 40, top-p 0.95):

1. single-stream decode speed (tokens after the first / time from the first to the last);
2. 8-stream aggregate decode (all tokens / time from the first request to the last token);
3. time to first token added by gemserve (p50 of the paired differences, short prompts).

Then two llama-servers behind one gemserve (model ``pool`` with affinity, ``pool-rr``
without: least in flight alone, i.e. round robin when idle):

4. the request split under uniform load (``/statsz``), target within ±10%;
5. multi-turn warm TTFT (turns 2+ of conversations chained by ``previous_interaction_id``,
   a long first message) with affinity against without.

Usage: .venv/bin/python bench/bench_remote.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from common import (
    API_KEY,
    LONG_PROMPTS,
    REPEAT_PENALTY,
    ServerError,
    StreamResult,
    add_omp_argument,
    apply_omp_policy,
    exit_on_sigterm,
    gemserve_server,
    llama_server,
    md_table,
    median,
    percentile,
    print_preamble,
    ratio,
    verdict,
)

SAMPLING = {"temperature": 0.0, "top_p": 0.95, "top_k": 40, "repeat_penalty": REPEAT_PENALTY}


def pool_toml(urls: list[str], *, parallel: int) -> str:
    upstreams = json.dumps(urls)
    common = (
        f'engine = "openai"\nupstreams = {upstreams}\nmax_in_flight = {parallel}\n'
        "output_token_limit = 4096\n"
        "[models.sampling]\ntemperature = 0.0\ntop_p = 0.95\ntop_k = 40\n"
        f"repeat_penalty = {REPEAT_PENALTY}\nmax_output_tokens = 256\n"
        '[models.thinking]\nmode = "off"\n'
    )
    return (
        '[server]\ndefault_model = "pool"\n\n'
        f'[[models]]\nid = "pool"\n{common}\n'
        f'[[models]]\nid = "pool-rr"\naffinity = false\n{common}'
    )


# ----- clients ------------------------------------------------------------------------------


def direct_body(prompt: str, max_tokens: int) -> dict[str, Any]:
    """What gemserve's remote engine sends for the same turn (stream, usage, sampling)."""
    return {
        "model": "x",
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "seed": 0,
        **SAMPLING,
    }


async def direct_stream(
    client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int
) -> StreamResult:
    try:
        return await _direct_stream(client, url, prompt, max_tokens)
    except httpx.RemoteProtocolError:
        # llama-server (cpp-httplib) closes a kept-alive connection after 100 requests; the
        # pool can hand that one out just then. Never answered: send it once more.
        return await _direct_stream(client, url, prompt, max_tokens)


async def _direct_stream(
    client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int
) -> StreamResult:
    result = StreamResult(time.perf_counter())
    async with client.stream(
        "POST", url + "/chat/completions", json=direct_body(prompt, max_tokens)
    ) as response:
        if response.status_code != 200:
            raise ServerError(f"llama-server answered {response.status_code}")
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            usage = chunk.get("usage")
            if usage:
                result.output_tokens = int(usage["completion_tokens"])
                result.prompt_tokens = int(usage["prompt_tokens"])
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    result.delta(time.perf_counter(), content)
    result.t_end = time.perf_counter()
    return result


async def gemserve_stream(
    client: httpx.AsyncClient,
    base: str,
    prompt: str,
    max_tokens: int,
    *,
    model: str = "pool",
    previous: str | None = None,
) -> tuple[StreamResult, str]:
    """One streamed interaction; the result and the interaction's id."""
    body: dict[str, Any] = {
        "model": model,
        "input": prompt,
        "stream": True,
        "generation_config": {"max_output_tokens": max_tokens, "seed": 0},
    }
    if previous is not None:
        body["previous_interaction_id"] = previous
    result = StreamResult(time.perf_counter())
    interaction_id = ""
    async with client.stream(
        "POST",
        base + "/v1beta/interactions",
        json=body,
        headers={"x-goog-api-key": API_KEY, "accept": "text/event-stream"},
    ) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            raise ServerError(f"gemserve answered {response.status_code}: {text[:300]}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            kind = event.get("event_type")
            if kind == "interaction.created":
                interaction_id = event["interaction"]["id"]
            elif kind == "step.delta" and event.get("delta", {}).get("type") == "text":
                result.delta(time.perf_counter(), event["delta"].get("text", ""))
            elif kind == "interaction.completed":
                usage = event["interaction"].get("usage", {})
                result.output_tokens = int(usage.get("total_output_tokens", 0))
                result.prompt_tokens = int(usage.get("total_input_tokens", 0))
            elif kind == "error":
                raise ServerError(f"gemserve stream error: {event}")
    result.t_end = time.perf_counter()
    return result, interaction_id


# ----- one upstream -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_token(client: httpx.AsyncClient, base: str, pid: int) -> list[Any]:
    """gemserve's own CPU time per streamed token (8 streams of 128 tokens): what it takes
    from the cores the upstream decodes on, whatever else the machine is doing."""
    before = cpu_seconds(pid)
    prompts = [LONG_PROMPTS[i % len(LONG_PROMPTS)] for i in range(8)]
    pairs = await asyncio.gather(*(gemserve_stream(client, base, p, 128) for p in prompts))
    used = cpu_seconds(pid) - before
    tokens = sum(r.output_tokens for r, _ in pairs)
    per_token = used / tokens * 1000
    return [
        "gemserve CPU per streamed token (ms, 8 streams)",
        "",
        per_token,
        f"{used:.2f} s for {tokens} tokens",
        "reported",
        "",
    ]


async def single_stream(client: httpx.AsyncClient, url: str, base: str, rounds: int) -> list[Any]:
    direct: list[float] = []
    through: list[float] = []
    for i in range(rounds):
        prompt = LONG_PROMPTS[i % len(LONG_PROMPTS)]
        d = await direct_stream(client, url, prompt, 128)
        g, _ = await gemserve_stream(client, base, prompt, 128)
        direct.append(d.decode_tps)
        through.append(g.decode_tps)
    r = ratio(median(through), median(direct))
    return [
        "single-stream decode (tok/s, median)",
        median(direct),
        median(through),
        r,
        ">= 0.97x",
        verdict(r, 0.97),
    ]


async def aggregate(
    client: httpx.AsyncClient, url: str, base: str, rounds: int, streams: int = 8
) -> list[Any]:
    async def run(direct: bool) -> float:
        t0 = time.perf_counter()
        prompts = [LONG_PROMPTS[i % len(LONG_PROMPTS)] for i in range(streams)]
        if direct:
            results = await asyncio.gather(*(direct_stream(client, url, p, 128) for p in prompts))
        else:
            pairs = await asyncio.gather(*(gemserve_stream(client, base, p, 128) for p in prompts))
            results = [r for r, _ in pairs]
        end = max(r.t_last for r in results)
        return sum(r.output_tokens for r in results) / (end - t0)

    direct: list[float] = []
    through: list[float] = []
    for _ in range(rounds):
        direct.append(await run(True))
        through.append(await run(False))
    r = ratio(median(through), median(direct))
    return [
        f"{streams}-stream aggregate (tok/s, median)",
        median(direct),
        median(through),
        r,
        ">= 0.97x",
        verdict(r, 0.97),
    ]


async def ttft(client: httpx.AsyncClient, url: str, base: str, rounds: int) -> list[Any]:
    direct: list[float] = []
    through: list[float] = []
    added: list[float] = []
    for i in range(rounds):
        # A fresh prompt each time (the nonce leads): no request reuses another's prefill
        # beyond the chat template's header, which both paths share alike.
        one, two = (f"[{uuid.uuid4().hex[:8]}] Say hi." for _ in range(2))
        if i % 2:
            g, _ = await gemserve_stream(client, base, one, 4)
            d = await direct_stream(client, url, two, 4)
        else:
            d = await direct_stream(client, url, one, 4)
            g, _ = await gemserve_stream(client, base, two, 4)
        direct.append(d.ttft * 1000)
        through.append(g.ttft * 1000)
        added.append((g.ttft - d.ttft) * 1000)
    p50 = median(added)
    return [
        "TTFT (ms, p50; added = p50 of paired differences)",
        median(direct),
        median(through),
        f"{p50:+.2f} ms",
        "<= 5 ms",
        verdict(p50, 5.0, higher_is_better=False),
    ]


# ----- two upstreams ------------------------------------------------------------------------


async def split(client: httpx.AsyncClient, base: str, requests: int, concurrency: int) -> list[Any]:
    before = await upstream_requests(client, base, "pool")
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await gemserve_stream(client, base, f"Request {i}: name a fruit.", 16)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    after = await upstream_requests(client, base, "pool")
    counts = [a - b for a, b in zip(after, before, strict=True)]
    share = [c / sum(counts) for c in counts]
    # relative to an even half; rounded, so 22 of 40 reads as exactly 10% (not 10.000…01%)
    worst = round(max(abs(s - 0.5) for s in share) * 2, 9)
    return [
        f"request split, {requests} requests at concurrency {concurrency}",
        " / ".join(str(c) for c in counts),
        " / ".join(f"{s:.0%}" for s in share),
        f"±{worst:.0%} of even",
        "within ±10%",
        verdict(worst, 0.10, higher_is_better=False),
    ]


async def upstream_requests(client: httpx.AsyncClient, base: str, model: str) -> list[int]:
    stats = (await client.get(base + "/statsz")).json()
    entry = stats[model] if model in stats else stats.get("models", {}).get(model)
    if entry is None:
        raise ServerError(f"/statsz has no {model}: {stats}")
    extra = entry.get("extra", entry)
    return [int(extra[f"upstream{i}_requests"]) for i in range(2)]


LONG_CONTEXT = " ".join(LONG_PROMPTS) * 6  # about 1,000 tokens of a first message


async def multi_turn(
    client: httpx.AsyncClient, base: str, conversations: int, turns: int
) -> list[list[Any]]:
    warm: dict[str, list[float]] = {"pool": [], "pool-rr": []}
    for c in range(conversations):
        for model in ("pool", "pool-rr") if c % 2 == 0 else ("pool-rr", "pool"):
            previous: str | None = None
            nonce = uuid.uuid4().hex[:8]
            for t in range(turns):
                text = (
                    f"[{nonce}] Read this, then answer briefly: {LONG_CONTEXT}"
                    if t == 0
                    else f"Question {t}: summarise that in one line."
                )
                result, previous = await gemserve_stream(
                    client, base, text, 8, model=model, previous=previous
                )
                if t > 0:
                    warm[model].append(result.ttft * 1000)
    with_aff, without = warm["pool"], warm["pool-rr"]
    return [
        [
            f"multi-turn warm TTFT (ms, p50 of turns 2-{turns}, {conversations} conversations)",
            median(without),
            median(with_aff),
            f"{ratio(median(with_aff), median(without)):.2f}x",
            "reported",
            "",
        ],
        [
            "multi-turn warm TTFT (ms, p90)",
            percentile(without, 90),
            percentile(with_aff, 90),
            f"{ratio(percentile(with_aff, 90), percentile(without, 90)):.2f}x",
            "reported",
            "",
        ],
    ]


# ----- main ---------------------------------------------------------------------------------


def progress(row: list[Any]) -> None:
    print(f"[progress] {row}", file=sys.stderr, flush=True)


async def one_upstream(args: argparse.Namespace) -> list[list[Any]]:
    with ExitStack() as stack:
        upstream = stack.enter_context(llama_server(parallel=8, threads=args.threads))
        url = upstream.base_url + "/v1"
        gemserve = stack.enter_context(
            gemserve_server(
                slots=1, threads=1, config_toml=pool_toml([url], parallel=8), log_level="warning"
            )
        )
        limits = httpx.Limits(
            max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0
        )
        async with httpx.AsyncClient(timeout=600, limits=limits, trust_env=False) as client:
            # Warm both paths (first requests load caches and connections).
            await direct_stream(client, url, "Warm up.", 8)
            await gemserve_stream(client, gemserve.base_url, "Warm up.", 8)
            rows = [await single_stream(client, url, gemserve.base_url, args.rounds)]
            progress(rows[-1])
            rows.append(await aggregate(client, url, gemserve.base_url, max(2, args.rounds // 2)))
            progress(rows[-1])
            rows.append(await ttft(client, url, gemserve.base_url, args.rounds * 4))
            progress(rows[-1])
            rows.append(await cpu_per_token(client, gemserve.base_url, gemserve.pid))
            progress(rows[-1])
            return rows


async def two_upstreams(args: argparse.Namespace) -> list[list[Any]]:
    with ExitStack() as stack:
        upstreams = [
            stack.enter_context(llama_server(parallel=4, threads=max(1, args.threads // 2)))
            for _ in range(2)
        ]
        urls = [u.base_url + "/v1" for u in upstreams]
        gemserve = stack.enter_context(
            gemserve_server(slots=1, threads=1, config_toml=pool_toml(urls, parallel=4))
        )
        limits = httpx.Limits(keepalive_expiry=2.0)
        async with httpx.AsyncClient(timeout=600, limits=limits, trust_env=False) as client:
            for model in ("pool", "pool-rr"):
                await gemserve_stream(client, gemserve.base_url, "Warm up.", 4, model=model)
            rows = [await split(client, gemserve.base_url, args.split_requests, 4)]
            progress(rows[-1])
            rows += await multi_turn(client, gemserve.base_url, args.conversations, args.turns)
            progress(rows[-1])
            return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split-requests", type=int, default=40)
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--turns", type=int, default=4)
    add_omp_argument(parser)
    args = parser.parse_args()
    apply_omp_policy(args.omp_wait_policy)
    exit_on_sigterm()
    print_preamble("Remote engine: gemserve → llama-server against llama-server directly")
    rows = asyncio.run(one_upstream(args))
    print(md_table(["measure", "direct", "via gemserve", "ratio / added", "target", ""], rows))
    print()
    rows = asyncio.run(two_upstreams(args))
    print(
        md_table(
            [
                "two upstreams",
                "without affinity / counts",
                "with affinity / shares",
                "ratio",
                "target",
                "",
            ],
            rows,
        )
    )
    if any(isinstance(v, float) and math.isnan(v) for row in rows for v in row):
        print("\n(n/a: a measure had no samples)")


if __name__ == "__main__":
    main()
