"""Thinking levels on the default model: latency and tokens per level.

For each ``thinking_level`` the same questions are streamed through a gemserve process (raw
HTTP, temperature 0) and, for comparison, run in-process through the engine with the same
strategy object the service uses (``service.thinking.start_turn``: two passes for this model),
so the HTTP, storage and event layers' share is visible. Reported per level: the budget, mean
thought and answer tokens, p50 time to the first thought piece, to the first answer piece and
to the end, the gemserve/engine ratio of the end-to-end time and the cost against ``minimal``
(no thinking: one pass, what llama-server or llama-cpp-python's server would do).

Usage: .venv/bin/python bench/bench_thinking.py [--quick] [--levels minimal,low,medium,high]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    API_KEY,
    MODEL_ID,
    add_omp_argument,
    apply_omp_policy,
    gemserve_server,
    md_table,
    median,
    print_preamble,
    ratio,
)

from gemserve.config import Limits, ModelRegistry
from gemserve.engine import ChatMessage, Finished, GenerationRequest, TextDelta, ThoughtDelta
from gemserve.engine.llama import LlamaEngine
from gemserve.service.sampling import sampling_params
from gemserve.service.thinking import plan_thinking, start_turn
from gemserve.service.turn_input import GenerationKnobs, ThinkingRequest

QUESTIONS = (
    "How many paws do two dogs have?",
    "What is the capital of France?",
    "Why is the sky blue?",
    "What should I pack for a weekend trip to the mountains?",
    "Is 17 a prime number?",
)
MAX_OUTPUT_TOKENS = 96


@dataclass
class Run:
    t_thought: float = math.nan  # first thought piece, seconds from the request
    t_answer: float = math.nan  # first answer piece
    t_end: float = math.nan
    thought_tokens: int = 0
    output_tokens: int = 0


@dataclass
class LevelResult:
    budget: int
    http: list[Run] = field(default_factory=list)
    engine: list[Run] = field(default_factory=list)


async def via_http(client: httpx.AsyncClient, base_url: str, question: str, level: str) -> Run:
    run = Run()
    start = time.perf_counter()
    body = {
        "model": MODEL_ID,
        "input": question,
        "stream": True,
        "generation_config": {
            "thinking_level": level,
            "temperature": 0,
            "max_output_tokens": MAX_OUTPUT_TOKENS,
        },
    }
    async with client.stream(
        "POST",
        f"{base_url}/v1beta/interactions",
        json=body,
        headers={"x-goog-api-key": API_KEY, "accept": "text/event-stream"},
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            event: dict[str, Any] = json.loads(line[5:])
            now = time.perf_counter() - start
            kind = event["event_type"]
            if kind == "step.delta":
                delta = event["delta"]["type"]
                if delta == "thought_summary" and math.isnan(run.t_thought):
                    run.t_thought = now
                elif delta == "text" and math.isnan(run.t_answer):
                    run.t_answer = now
            elif kind == "interaction.completed":
                usage = event["interaction"]["usage"]
                run.thought_tokens = usage["total_thought_tokens"]
                run.output_tokens = usage["total_output_tokens"]
    run.t_end = time.perf_counter() - start
    return run


async def via_engine(engine: LlamaEngine, question: str, level: str) -> Run:
    spec = ModelRegistry.from_config([], {}, MODEL_ID).resolve(MODEL_ID).spec
    knobs = GenerationKnobs(temperature=0, max_output_tokens=MAX_OUTPUT_TOKENS)
    request = GenerationRequest(
        (ChatMessage("user", question),), sampling_params(knobs, spec, Limits())
    )
    thinking = ThinkingRequest(level=level)  # type: ignore[arg-type]
    run = Run()
    start = time.perf_counter()
    stream = await start_turn(engine, request, plan_thinking(thinking, spec))
    async for event in stream:
        now = time.perf_counter() - start
        if isinstance(event, ThoughtDelta) and math.isnan(run.t_thought):
            run.t_thought = now
        elif isinstance(event, TextDelta) and math.isnan(run.t_answer):
            run.t_answer = now
        elif isinstance(event, Finished):
            run.thought_tokens = event.thought_tokens
            run.output_tokens = event.output_tokens - event.thought_tokens
    run.t_end = time.perf_counter() - start
    return run


def p50(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return median(present) if present else math.nan


def mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else math.nan


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="minimal,low,medium,high")
    parser.add_argument("--reps", type=int, default=2, help="passes over the questions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one pass over two questions")
    add_omp_argument(parser)
    args = parser.parse_args()
    apply_omp_policy(args.omp_wait_policy)
    levels = args.levels.split(",")
    questions = QUESTIONS[:2] if args.quick else QUESTIONS
    reps = 1 if args.quick else args.reps
    spec = ModelRegistry.from_config([], {}, MODEL_ID).resolve(MODEL_ID).spec
    budgets: dict[str, int] = dict(spec.thinking.budgets)
    results = {level: LevelResult(budgets[level]) for level in levels}
    print_preamble("Thinking levels: latency and tokens (default model, two-pass thinking)")

    engine = LlamaEngine(
        model_id=MODEL_ID,
        gguf_path=spec.gguf_path(),
        context_length=spec.context_length,
        output_token_limit=spec.output_token_limit,
        slots=1,
        batch_tokens=512,
        threads=args.threads,
        max_queued=4,
    )
    await engine.start()
    try:
        for _ in range(reps):
            for level in levels:
                for question in questions:
                    results[level].engine.append(await via_engine(engine, question, level))
                    print(f"engine {level} done", file=sys.stderr, flush=True)
    finally:
        await engine.close()

    with gemserve_server(slots=1, threads=args.threads) as server:
        async with httpx.AsyncClient(timeout=600) as client:
            for _ in range(reps):
                for level in levels:
                    for question in questions:
                        run = await via_http(client, server.base_url, question, level)
                        results[level].http.append(run)
                        print(f"gemserve {level} done", file=sys.stderr, flush=True)

    baseline = p50([r.t_end for r in results[levels[0]].http])
    rows = []
    for level in levels:
        result = results[level]
        end = p50([r.t_end for r in result.http])
        engine_end = p50([r.t_end for r in result.engine])
        rows.append(
            [
                level,
                result.budget,
                f"{mean([r.thought_tokens for r in result.http]):.0f}",
                f"{mean([r.output_tokens for r in result.http]):.0f}",
                f"{p50([r.t_thought for r in result.http]):.2f}",
                f"{p50([r.t_answer for r in result.http]):.2f}",
                f"{end:.2f}",
                f"{engine_end:.2f}",
                f"{ratio(end, engine_end):.2f}",
                f"{ratio(end, baseline):.2f}",
            ]
        )
    print(
        md_table(
            [
                "level",
                "budget",
                "thought tok (mean)",
                "answer tok (mean)",
                "first thought p50 s",
                "first answer p50 s",
                "total p50 s",
                "engine total p50 s",
                "gemserve/engine",
                f"total / {levels[0]}",
            ],
            rows,
        )
    )
    print(
        f"\n{len(questions)} questions × {reps} passes per level, temperature 0, "
        f"max_output_tokens {MAX_OUTPUT_TOKENS}; thought tokens never exceed the budget "
        "(the first pass's token limit)."
    )


if __name__ == "__main__":
    asyncio.run(main())
