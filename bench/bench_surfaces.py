"""Adapter overhead: the classic surface (streamGenerateContent) and the OpenAI-compatible
one (chat/completions) against the Interactions path, single stream, on one gemserve, in one
run. All three reach the same turn pipeline; what differs is the wire adapter (parsing, event
translation, framing). Rounds rotate the order of the surfaces; per-stream decode tok/s (tokens
after the first over first-to-last delta) and time to the first delta, medians.

    .venv/bin/python bench/bench_surfaces.py [--rounds 12] [--tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import httpx
from common import (
    API_KEY,
    MODEL_ID,
    StreamResult,
    _sse_data,
    gemserve_server,
    gemserve_stream,
    md_table,
    median,
    print_preamble,
)

PROMPTS = (
    "Write a short story about a lighthouse keeper.",
    "Explain how bread rises.",
    "Describe a walk through a forest in autumn.",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.tokens = 2, 32
    return args


async def classic_stream(
    client: httpx.AsyncClient, base_url: str, prompt: str, max_tokens: int
) -> StreamResult:
    result = StreamResult(time.perf_counter())
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"maxOutputTokens": max_tokens, "temperature": 0},
    }
    url = f"{base_url}/v1beta/models/{MODEL_ID}:streamGenerateContent?alt=sse"
    async with client.stream("POST", url, json=body, headers={"x-goog-api-key": API_KEY}) as r:
        async for data in _sse_data(r):
            chunk = json.loads(data)
            for candidate in chunk.get("candidates", []):
                for part in candidate.get("content", {}).get("parts", []):
                    if part.get("text"):
                        result.delta(time.perf_counter(), part["text"])
            usage = chunk.get("usageMetadata")
            if usage:
                result.output_tokens = int(usage.get("candidatesTokenCount", 0))
    result.t_end = time.perf_counter()
    return result


async def openai_stream(
    client: httpx.AsyncClient, base_url: str, prompt: str, max_tokens: int
) -> StreamResult:
    result = StreamResult(time.perf_counter())
    body = {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url = f"{base_url}/v1beta/openai/chat/completions"
    async with client.stream("POST", url, json=body, headers={"authorization": "Bearer x"}) as r:
        async for data in _sse_data(r):
            if data == "[DONE]":
                continue
            chunk = json.loads(data)
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    result.delta(time.perf_counter(), content)
            if chunk.get("usage"):
                result.output_tokens = int(chunk["usage"]["completion_tokens"])
    result.t_end = time.perf_counter()
    return result


Streamer = Callable[[httpx.AsyncClient, str, str, int], Awaitable[StreamResult]]
SURFACES: dict[str, Streamer] = {
    "interactions": gemserve_stream,
    "generateContent": classic_stream,
    "chat/completions": openai_stream,
}


async def main() -> None:
    args = parse_args()
    print_preamble("bench_surfaces: the classic and OpenAI adapters against Interactions")
    names = list(SURFACES)
    rates: dict[str, list[float]] = {n: [] for n in names}
    ttfts: dict[str, list[float]] = {n: [] for n in names}
    with gemserve_server(slots=2, threads=2) as server:
        async with httpx.AsyncClient(timeout=300) as client:
            for name in names:  # warm-up: each path once
                await SURFACES[name](client, server.base_url, "Hi", 8)
            for rep in range(args.rounds):
                order = names[rep % 3 :] + names[: rep % 3]
                prompt = f"Round {rep}. {PROMPTS[rep % len(PROMPTS)]}"
                for name in order:
                    result = await SURFACES[name](client, server.base_url, prompt, args.tokens)
                    rates[name].append(result.decode_tps)
                    ttfts[name].append(result.ttft * 1000)
    base = median(rates["interactions"])
    rows = [
        [name, f"{median(rates[name]):.1f}", f"{median(rates[name]) / base:.3f}",
         f"{median(ttfts[name]):.1f}"]
        for name in names
    ]  # fmt: skip
    print(f"rounds={args.rounds} max_output_tokens={args.tokens} temperature 0, one stream\n")
    print(md_table(["surface", "decode tok/s", "vs interactions", "TTFT ms"], rows))


if __name__ == "__main__":
    asyncio.run(main())
