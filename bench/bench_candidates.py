"""candidateCount=4: four answers to one prompt decoded side by side, the prompt's KV cache
prefilled once and copied to the other three slots (``Scheduler._sibling``), against the same
four requests each prefilling the prompt (sharing off), and against one answer.

In-process ``LlamaEngine`` on the bundled model, sampled (temperature 0.8, seeds 1-4, as
candidates are), a long prompt (the case sharing is for), rounds alternating between the
modes. Each round uses a prompt no slot has cached.

    .venv/bin/python bench/bench_candidates.py [--rounds 6] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import REPEAT_PENALTY, md_table, median, print_preamble

import gemserve.engine.llama.scheduler as scheduler_module
from gemserve.config import ModelRegistry
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.engine import ChatMessage, Finished, GenerationRequest, SamplingParams
from gemserve.engine.llama import LlamaEngine

NOTES = "Here are some notes about ships, harbours and the trade between them. " * 24


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.tokens = 1, 16
    return args


async def answer(engine: LlamaEngine, request: GenerationRequest) -> Finished:
    stream = await engine.generate(request)
    async for event in stream:
        if isinstance(event, Finished):
            return event
    raise AssertionError("no Finished")


async def round_of(engine: LlamaEngine, mode: str, tokens: int, number: int) -> tuple[float, int]:
    """Wall time of one request's answers, and the prompt tokens prefilled for them."""
    prompt = (ChatMessage("user", f"Round {number}. {NOTES} Summarise them."),)
    count = 1 if mode == "one answer" else 4
    scheduler_module.SHARE_MIN_TOKENS = 48 if mode == "4, shared prompt" else 10**9
    requests = [
        GenerationRequest(
            prompt,
            SamplingParams(
                temperature=0.8,
                top_p=0.95,
                top_k=40,
                max_output_tokens=tokens,
                repeat_penalty=REPEAT_PENALTY,
                seed=i + 1,
            ),
        )
        for i in range(count)
    ]
    t0 = time.perf_counter()
    finished = await asyncio.gather(*(answer(engine, r) for r in requests))
    elapsed = time.perf_counter() - t0
    return elapsed, sum(f.prompt_tokens - f.cached_tokens for f in finished)


async def main() -> None:
    args = parse_args()
    print_preamble("bench_candidates: candidateCount=4 with the prompt's KV shared")
    spec = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID).resolve(DEFAULT_MODEL_ID).spec
    engine = LlamaEngine(
        model_id=spec.id, gguf_path=spec.gguf_path(), context_length=2048,
        output_token_limit=1024, slots=4, batch_tokens=512, threads=2, max_queued=16,
    )  # fmt: skip
    await engine.start()
    modes = ("one answer", "4, shared prompt", "4, each prefills")
    times: dict[str, list[float]] = {m: [] for m in modes}
    prefilled: dict[str, list[int]] = {m: [] for m in modes}
    try:
        number = 0
        for rep in range(args.rounds):
            for mode in modes if rep % 2 == 0 else tuple(reversed(modes)):
                number += 1
                elapsed, tokens = await round_of(engine, mode, args.tokens, number)
                times[mode].append(elapsed)
                prefilled[mode].append(tokens)
    finally:
        await engine.close()
    base = median(times["4, each prefills"])
    rows = [
        [m, f"{median(times[m]) * 1000:.0f}", f"{median(prefilled[m]):.0f}",
         f"{median(times[m]) / base:.2f}"]
        for m in modes
    ]  # fmt: skip
    print(f"rounds={args.rounds} max_output_tokens={args.tokens} temperature 0.8\n")
    print(
        md_table(
            ["request", "wall ms (median)", "prompt tokens prefilled", "vs each prefills"], rows
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
