"""Two models in one gemserve: does serving the second slow the first down?

gemserve is started with a second model (the same GGUF under another id). The default model's
single-stream decode tok/s is measured while the second has never run, then again after the
second model has answered requests. With ``--baseline REF`` the same is done, interleaved, for
gemserve as of that git ref: before one native thread ran every model, each model's engine
thread got its own OpenMP pool, and the first model lost a third or more for good once the
second had decoded.

    .venv/bin/python bench/bench_two_models.py [--baseline REF] [--reps 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

import httpx
from common import (
    API_KEY,
    LONG_PROMPTS,
    exit_on_sigterm,
    gemserve_server,
    gemserve_stream,
    gguf_path,
    git_worktree,
    md_table,
    median,
    print_preamble,
    ratio,
)

SECOND = "second-model"


async def decode_tps(client: httpx.AsyncClient, base_url: str, tokens: int) -> float:
    await asyncio.sleep(0.2)
    return (await gemserve_stream(client, base_url, LONG_PROMPTS[0], tokens)).decode_tps


async def use_second(client: httpx.AsyncClient, base_url: str) -> None:
    response = await client.post(
        f"{base_url}/v1beta/interactions",
        headers={"x-goog-api-key": API_KEY},
        json={"model": SECOND, "input": "Hi", "generation_config": {"max_output_tokens": 16}},
    )
    response.raise_for_status()


async def measure(servers: dict[str, str], reps: int, tokens: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    async with httpx.AsyncClient(timeout=300) as client:
        for base_url in servers.values():
            await gemserve_stream(client, base_url, LONG_PROMPTS[0], 16)  # warm-up
        for phase in ("second model never used", "after the second model answered"):
            if phase.startswith("after"):
                for base_url in servers.values():
                    await use_second(client, base_url)
            for rep in range(reps):
                names = list(servers)
                for name in names[rep % len(names) :] + names[: rep % len(names)]:
                    tps = await decode_tps(client, servers[name], tokens)
                    results.setdefault(f"{name}|{phase}", []).append(tps)
                    print(f"  {name} {phase} rep {rep + 1}: {tps:.1f} tok/s", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", metavar="REF", help="also run gemserve as of git REF")
    args = parser.parse_args()
    exit_on_sigterm()
    print_preamble("bench_two_models: the default model's decode beside a second model")
    config = f"[[models]]\nid = {json.dumps(SECOND)}\nsource = {json.dumps(str(gguf_path()))}\n"
    print(f"reps={args.reps} tokens={args.tokens} threads={args.threads} slots=1\n", flush=True)
    with contextlib.ExitStack() as stack:
        servers = {
            "gemserve": stack.enter_context(
                gemserve_server(slots=1, threads=args.threads, config_toml=config)
            ).base_url
        }
        if args.baseline:
            name = f"gemserve@{args.baseline}"
            tree = stack.enter_context(git_worktree(args.baseline))
            servers[name] = stack.enter_context(
                gemserve_server(
                    slots=1, threads=args.threads, config_toml=config, source=tree, name=name
                )
            ).base_url
        results = asyncio.run(measure(servers, args.reps, args.tokens))
    rows: list[list[object]] = []
    for name in servers:
        before = median(results[f"{name}|second model never used"])
        after = median(results[f"{name}|after the second model answered"])
        rows.append([name, before, after, ratio(after, before)])
    print(
        md_table(
            ["system", "decode tok/s, second unused", "after second answered", "after / before"],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
