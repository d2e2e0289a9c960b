"""JSON output's cost: decode tok/s with a JSON Schema constraint against the same requests
without one, at 1 and 8 streams; llguidance's mask time (p50/p99) and compile time.

In-process ``LlamaEngine`` on the bundled model, greedy, rounds alternating between the two
modes (this machine's speed drifts by tens of percent). Decode tok/s counts each stream's
tokens after its first over the time from its first to its last delta, so the two modes'
different answer lengths (JSON is shorter) do not bias it.

    .venv/bin/python bench/bench_json.py [--rounds 6] [--tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import llguidance
import numpy as np
from common import REPEAT_PENALTY, md_table, median, percentile, print_preamble

from gemserve.config import ModelRegistry
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.engine import (
    ChatMessage,
    Constraint,
    Finished,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.engine.llama.guidance import json_grammar

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "string"}},
        "minutes": {"type": "integer"},
        "vegan": {"type": "boolean"},
    },
    "required": ["title", "steps", "minutes", "vegan"],
    "additionalProperties": False,
}
TOOLS_5 = [
    {
        "type": "object",
        "properties": {f"arg{j}": {"type": ["string", "integer"]} for j in range(4)},
        "required": ["arg0"],
    }
    for _ in range(5)
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.tokens = 1, 32
    return args


async def stream_rate(engine: LlamaEngine, request: GenerationRequest) -> tuple[float, int]:
    stream = await engine.generate(request)
    times: list[float] = []
    tokens = 0
    async for event in stream:
        if isinstance(event, TextDelta):
            times.append(time.perf_counter())
        elif isinstance(event, Finished):
            tokens = event.output_tokens
    if len(times) < 2 or tokens < 2:
        return 0.0, tokens
    return (tokens - 1) / (times[-1] - times[0]), tokens


async def round_of(
    engine: LlamaEngine, streams: int, tokens: int, constrained: bool, first: int
) -> float:
    sampling = SamplingParams(
        temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=tokens, repeat_penalty=REPEAT_PENALTY
    )
    constraint = Constraint(json.dumps(SCHEMA), syntax="json_schema") if constrained else None
    requests = [
        GenerationRequest(
            (ChatMessage("user", f"Request {first + i}. Write a recipe for pancakes as JSON."),),
            sampling,
            constraint=constraint,
        )
        for i in range(streams)
    ]
    results = await asyncio.gather(*(stream_rate(engine, r) for r in requests))
    return median([rate for rate, _ in results])


def mask_and_compile(engine: LlamaEngine) -> tuple[list[float], list[float], list[float]]:
    """llguidance alone: mask time over a constrained answer's tokens, and compile times."""
    model = engine._model
    assert model is not None
    tokenizer = model.guidance_tokenizer()
    grammar = json_grammar(json.dumps(SCHEMA), leading_whitespace=False, opening_tag=None)
    matcher = llguidance.LLMatcher(tokenizer, grammar)
    text = json.dumps({"title": "Pancakes", "steps": ["Mix flour and milk", "Fry"] * 4,
                       "minutes": 20, "vegan": False}, separators=(", ", ": "))  # fmt: skip
    mask = np.full((model.n_vocab + 31) // 32, -1, dtype=np.int32)
    masks = []
    for token in model.tokenize(text, add_special=False):
        t0 = time.perf_counter()
        matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        masks.append((time.perf_counter() - t0) * 1e6)
        matcher.consume_token(token)

    def compile_schema(schema: dict[str, Any]) -> None:
        text = json_grammar(json.dumps(schema), leading_whitespace=False, opening_tag=None)
        llguidance.LLMatcher(tokenizer, text)

    compile_one, compile_five = [], []
    for _ in range(20):
        t0 = time.perf_counter()
        compile_schema(SCHEMA)
        compile_one.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        for schema in TOOLS_5:
            compile_schema(schema)
        compile_five.append((time.perf_counter() - t0) * 1e3)
    return masks, compile_one, compile_five


async def main() -> None:
    args = parse_args()
    print_preamble("bench_json: decode with and without a JSON Schema constraint")
    levels = [int(x) for x in args.levels.split(",")]
    spec = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID).resolve(DEFAULT_MODEL_ID).spec
    engine = LlamaEngine(
        model_id=spec.id, gguf_path=spec.gguf_path(), context_length=1024,
        output_token_limit=1024, slots=max(levels), batch_tokens=512, threads=2, max_queued=16,
    )  # fmt: skip
    await engine.start()
    try:
        await round_of(engine, 1, 16, True, 0)  # warm-up: the tokenizer, a compile
        rates: dict[tuple[int, bool], list[float]] = {}
        number = 1
        for rep in range(args.rounds):
            for level in levels:
                order = (False, True) if rep % 2 == 0 else (True, False)
                for constrained in order:
                    rate = await round_of(engine, level, args.tokens, constrained, number)
                    rates.setdefault((level, constrained), []).append(rate)
                number += level
        masks, compile_one, compile_five = mask_and_compile(engine)
    finally:
        await engine.close()
    rows: list[list[object]] = []
    for level in levels:
        free, held = median(rates[(level, False)]), median(rates[(level, True)])
        rows.append([level, f"{free:.1f}", f"{held:.1f}", f"{held / free:.3f}"])
    print(f"rounds={args.rounds} max_output_tokens={args.tokens} greedy, per-stream decode\n")
    print(md_table(["streams", "no schema tok/s", "JSON Schema tok/s", "ratio"], rows))
    print()
    timing_rows = [
        [name, f"{percentile(values, 50):.2f}", f"{percentile(values, 99):.2f}"]
        for name, values in (
            ("mask (µs per token)", masks),
            ("compile, 1 schema (ms)", compile_one),
            ("compile, 5 schemas (ms)", compile_five),
        )
    ]
    print(md_table(["llguidance", "p50", "p99"], timing_rows))


if __name__ == "__main__":
    asyncio.run(main())
