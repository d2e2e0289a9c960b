"""Function calling's cost: decode tok/s with tools against the same requests without, at 1
and 8 streams, in ``auto`` (lazy grammar: free text until a call opens) and ``any`` (calls
held to the grammar from the first token); llguidance's mask time during a call, and the
compile time of a 5-tool and a 100-tool set (llama.cpp's own converter fails near 58).

In-process ``LlamaEngine`` on the bundled model, greedy, modes alternating round by round
(this machine's speed drifts by tens of percent). The baseline is the same prompt (the tools
described in the system message) without the grammar and the call parser, so the ratio is
what enforcing calls costs, not what a longer prompt costs. Each token is timed where the
engine's output stage takes it (``SequenceOutput.feed``, on the engine thread): a call's
first event comes only once its name is complete, so events cannot time tokens here.

    .venv/bin/python bench/bench_tools.py [--rounds 6] [--tokens 96]
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
    GenerationRequest,
    SamplingParams,
    ToolSpec,
    ToolUse,
)
from gemserve.engine.llama import LlamaEngine
from gemserve.engine.output import SequenceOutput
from gemserve.engine.tools.formats import FORMATS, JSON_ARRAY, ToolFormat
from gemserve.engine.tools.grammar import tool_constraint

WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}


def tool_set(n: int) -> tuple[ToolSpec, ...]:
    """``n`` tools of four typed arguments each, the first the weather tool."""
    tools = [ToolSpec("get_weather", "The weather forecast for a city", json.dumps(WEATHER))]
    for i in range(1, n):
        schema = {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1},
                "exact": {"type": "boolean"},
                "kind": {"type": "string", "enum": ["a", "b", "c"]},
            },
            "required": ["query"],
            "additionalProperties": False,
        }
        tools.append(ToolSpec(f"tool_{i}", f"Tool number {i}", json.dumps(schema)))
    return tuple(tools)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--format",
        default=JSON_ARRAY.name,
        choices=sorted(FORMATS),
        help="the tool format the engine renders, constrains and parses (llama3: its `auto` "
        "grammar holds from the first token)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.tokens = 1, 32
    return args


class TokenClock:
    """Times every generated token of every sequence, by wrapping the output stage."""

    def __init__(self) -> None:
        # Keyed by id, holding the output too: a freed one's id could be reused.
        self.times: dict[int, tuple[SequenceOutput, list[float]]] = {}
        original = SequenceOutput.feed
        clock = self

        def feed(output: SequenceOutput, piece: bytes, events: list[Any]) -> bool:
            clock.times.setdefault(id(output), (output, []))[1].append(time.perf_counter())
            return original(output, piece, events)

        SequenceOutput.feed = feed  # type: ignore[method-assign]

    def take(self) -> list[list[float]]:
        out, self.times = [times for _, times in self.times.values()], {}
        return out


async def finish(engine: LlamaEngine, request: GenerationRequest) -> None:
    stream = await engine.generate(request)
    async for _ in stream:
        pass


async def round_of(
    engine: LlamaEngine,
    clock: TokenClock,
    streams: int,
    tokens: int,
    mode: str | None,
    first: int,
    fmt: ToolFormat = JSON_ARRAY,
) -> float:
    """The median per-stream decode tok/s of ``streams`` requests."""
    sampling = SamplingParams(
        temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=tokens, repeat_penalty=REPEAT_PENALTY
    )
    tools = ToolUse(tool_set(5), "auto" if mode is None else mode)  # type: ignore[arg-type]
    requests = []
    for i in range(streams):
        ask = (
            ChatMessage("user", f"Request {first + i}. What is the weather in Paris this week?"),
        )
        if mode is None:  # the same prompt, without the grammar and the parser
            # The bundled template ignores a ``tools`` variable: llama3's prompt is the same
            messages, _ = fmt.render(ask, tools)
            requests.append(GenerationRequest(messages, sampling))
        else:
            requests.append(GenerationRequest(ask, sampling, tools=tools))
    clock.take()
    await asyncio.gather(*(finish(engine, r) for r in requests))
    rates = [(len(t) - 1) / (t[-1] - t[0]) for t in clock.take() if len(t) > 2]
    return median(rates)


def mask_and_compile(engine: LlamaEngine) -> dict[str, list[float]]:
    model = engine._model
    assert model is not None
    tokenizer = model.guidance_tokenizer()

    def grammar(n: int) -> str:
        constraint = tool_constraint(JSON_ARRAY, ToolUse(tool_set(n), "any"))
        assert constraint is not None
        text: str = llguidance.LLMatcher.grammar_from_lark(constraint.grammar)
        return text

    matcher = llguidance.LLMatcher(tokenizer, grammar(5))
    call = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": 7}}
    text = "<tool_call>[" + json.dumps(call) + "]</tool_call>"
    mask = np.full((model.n_vocab + 31) // 32, -1, dtype=np.int32)
    masks = []
    for token in model.tokenize(text, add_special=False):
        t0 = time.perf_counter()
        matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        masks.append((time.perf_counter() - t0) * 1e6)
        assert matcher.consume_token(token), matcher.get_error()
    out: dict[str, list[float]] = {"mask (µs per token)": masks}
    for n in (5, 100):
        times = []
        for _ in range(10 if n == 100 else 20):
            t0 = time.perf_counter()
            compiled = llguidance.LLMatcher(tokenizer, grammar(n))
            compiled.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)  # first mask too
            times.append((time.perf_counter() - t0) * 1e3)
            assert not compiled.is_error(), compiled.get_error()
        out[f"compile + first mask, {n} tools (ms)"] = times
    return out


async def main() -> None:
    args = parse_args()
    print_preamble("bench_tools: decode with and without tools")
    levels = [int(x) for x in args.levels.split(",")]
    spec = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID).resolve(DEFAULT_MODEL_ID).spec
    engine = LlamaEngine(
        model_id=spec.id, gguf_path=spec.gguf_path(), context_length=2048,
        output_token_limit=1024, slots=max(levels), batch_tokens=512, threads=2, max_queued=16,
        tool_format=args.format,
    )  # fmt: skip
    await engine.start()
    modes: tuple[str | None, ...] = (None, "auto", "any")
    try:
        clock = TokenClock()
        await round_of(engine, clock, 1, 16, "any", 0)  # warm-up: the tokenizer, a compile
        rates: dict[tuple[int, str | None], list[float]] = {}
        number = 1
        for rep in range(args.rounds):
            for level in levels:
                order = modes if rep % 2 == 0 else tuple(reversed(modes))
                for mode in order:
                    rate = await round_of(
                        engine, clock, level, args.tokens, mode, number, FORMATS[args.format]
                    )
                    rates.setdefault((level, mode), []).append(rate)
                number += level
        timings = mask_and_compile(engine)
    finally:
        await engine.close()
    rows: list[list[object]] = []
    for level in levels:
        free = median(rates[(level, None)])
        auto, forced = median(rates[(level, "auto")]), median(rates[(level, "any")])
        rows.append(
            [level, f"{free:.1f}", f"{auto:.1f}", f"{auto / free:.3f}", f"{forced:.1f}",
             f"{forced / free:.3f}"]
        )  # fmt: skip
    print(f"rounds={args.rounds} max_output_tokens={args.tokens} greedy, per-stream decode\n")
    headers = ["streams", "same prompt, no grammar", "auto tok/s", "ratio", "any tok/s", "ratio"]
    print(md_table(headers, rows))
    print()
    timing_rows = [
        [name, f"{percentile(values, 50):.2f}", f"{percentile(values, 99):.2f}"]
        for name, values in timings.items()
    ]
    print(md_table(["llguidance", "p50", "p99"], timing_rows))


if __name__ == "__main__":
    asyncio.run(main())
