"""Per-token output processing, before and after ``SequenceOutput`` (engine/output.py).

Two measurements, each interleaved (this machine's speed drifts by tens of percent):

- ``micro``: the text path of one generated token in isolation, ``SequenceOutput.feed``
  against the scheduler's pre-refactor ``_on_token``/``_route_thinking`` text path (copied
  below verbatim as the reference, on a dataclass like the old ``Sequence``), over the
  bundled model's token pieces of a long text: plain, with stop sequences, and with a
  reasoning parser.
- ``engine``: aggregate decode tok/s of ``LlamaEngine`` in-process at 1 and 8 streams,
  greedy, 128 tokens, child processes alternating between this working tree and
  ``--baseline-src`` (e.g. ``git archive HEAD src | tar -x -C /tmp/base``), one child per
  measurement so two llama.cpp contexts never share a process.

    .venv/bin/python bench/bench_output.py [--baseline-src /tmp/base/src] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import LONG_PROMPTS, REPEAT_PENALTY, md_table, median, print_preamble

from gemserve.engine.base import TextDelta, ThoughtDelta
from gemserve.engine.reasoning import Phase

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", help="a src/ of the code to compare with")
    parser.add_argument("--rounds", type=int, default=4, help="engine runs per side and level")
    parser.add_argument("--levels", default="1,8", help="concurrent streams")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=7, help="micro repetitions")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.reps, args.tokens = 1, 3, 32
    return args


# ----- micro ---------------------------------------------------------------------------


def token_pieces() -> list[bytes]:
    """The bundled model's pieces of a long English answer (what ``feed`` sees)."""
    import llama_cpp as llama

    from gemserve.config import ModelRegistry

    spec = ModelRegistry.from_config([], {}, "smollm2-135m-instruct").resolve(
        "smollm2-135m-instruct"
    )
    params = llama.llama_model_default_params()
    params.vocab_only = True
    model = llama.llama_model_load_from_file(str(spec.spec.gguf_path()).encode(), params)
    vocab = llama.llama_model_get_vocab(model)
    text = ((REPO / "docs" / "architecture.md").read_text() * 2)[:40000]
    data = text.encode()
    tokens = (llama.llama_token * (len(data) + 8))()
    n = llama.llama_tokenize(vocab, data, len(data), tokens, len(data) + 8, False, False)
    import ctypes

    pieces = []
    buf = ctypes.create_string_buffer(64)
    for token in tokens[:n]:
        size = llama.llama_token_to_piece(vocab, token, buf, 64, 0, False)
        pieces.append(buf.raw[:size])
    llama.llama_model_free(model)
    return pieces


@dataclass(eq=False)
class OldSequence:
    """The output fields of the pre-refactor scheduler ``Sequence``."""

    detok: Any
    stops: Any
    thinking: Any
    reasoning: Any
    outbox: list[Any] = field(default_factory=list)
    n_thought: int = 0
    close_tokens: tuple[int, ...] = (1, 2)
    forced: deque[int] = field(default_factory=deque)


class OldScheduler:
    """The pre-refactor scheduler's text path, verbatim: ``_on_token`` (less the EOG and
    limit checks, which are unchanged) and ``_route_thinking``."""

    def on_token_text(self, seq: OldSequence, piece: bytes) -> bool:
        text = seq.detok.feed(piece)
        stopped = False
        if seq.thinking is not None:
            text, stopped = self._route_thinking(seq, text)
        elif text and seq.stops is not None:
            text, stopped = seq.stops.feed(text)
        if text:
            seq.outbox.append(TextDelta(text))
        return bool(stopped)

    def _route_thinking(self, seq: OldSequence, text: str) -> tuple[str, bool]:
        parser = seq.thinking
        thinking = parser.phase is not Phase.ANSWER
        answer = ""
        for is_thought, piece in parser.feed(text) if text else ():
            if is_thought:
                seq.outbox.append(ThoughtDelta(piece))
            else:
                answer += piece
        if thinking and not answer:
            seq.n_thought += 1
        stopped = False
        if answer and seq.stops is not None:
            answer, stopped = seq.stops.feed(answer)
        control = seq.reasoning
        if (
            control is not None
            and parser.phase is Phase.THOUGHT
            and seq.n_thought >= control.budget
            and not parser.holding_tag
            and not seq.forced
        ):
            seq.forced.extend(seq.close_tokens)
        return answer, stopped


def old_path(pieces: list[bytes], stops: tuple[str, ...], reasoning: bool) -> int:
    from gemserve.engine.base import ReasoningControl
    from gemserve.engine.reasoning import ThinkingParser
    from gemserve.engine.text import IncrementalDetokenizer, StopMatcher

    seq = OldSequence(
        detok=IncrementalDetokenizer(),
        stops=StopMatcher(stops),  # the old scheduler always made one
        thinking=ThinkingParser("<think>", "</think>") if reasoning else None,
        reasoning=ReasoningControl(budget=10**9) if reasoning else None,
    )
    scheduler = OldScheduler()
    for piece in pieces:
        if scheduler.on_token_text(seq, piece):
            break
    return len(seq.outbox)


def new_path(pieces: list[bytes], stops: tuple[str, ...], reasoning: bool) -> int:
    from gemserve.engine.base import EngineEvent, ReasoningControl
    from gemserve.engine.output import SequenceOutput

    output = SequenceOutput(  # the scheduler calls output.feed(piece, seq.outbox)
        stop_sequences=stops,
        reasoning=ReasoningControl(budget=10**9) if reasoning else None,
        close_tokens=(1, 2),
    )
    outbox: list[EngineEvent] = []
    feed = output.feed
    for piece in pieces:
        if feed(piece, outbox):
            break
    return len(outbox)


def micro(reps: int) -> None:
    pieces = token_pieces()
    thought = [b"<think>", *pieces[: len(pieces) // 2], b"</think>", *pieces[len(pieces) // 2 :]]
    cases = [
        ("plain", pieces, (), False),
        ("2 stop sequences", pieces, ("\x00never", "<<<STOP>>>"), False),
        ("reasoning + stop", thought, ("<<<STOP>>>",), True),
    ]
    rows = []
    for name, data, stops, reasoning in cases:
        times: dict[str, list[float]] = {"old": [], "new": []}
        assert old_path(data, stops, reasoning) > 0
        for rep in range(reps):
            order = [("old", old_path), ("new", new_path)]
            for label, fn in order if rep % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                fn(data, stops, reasoning)
                times[label].append((time.perf_counter() - started) / len(data) * 1e9)
        old, new = median(times["old"]), median(times["new"])
        rows.append((name, len(data), f"{old:.0f}", f"{new:.0f}", new / old))
    print("### Text path per token (ns, median)\n")
    print(
        md_table(["case", "tokens", "old _on_token path", "SequenceOutput.feed", "new/old"], rows)
    )
    print()


# ----- engine --------------------------------------------------------------------------


async def engine_child(streams: int, tokens: int) -> dict[str, float]:
    from gemserve.config import ModelRegistry
    from gemserve.engine import ChatMessage, Finished, GenerationRequest, SamplingParams
    from gemserve.engine.llama import LlamaEngine

    spec = (
        ModelRegistry.from_config([], {}, "smollm2-135m-instruct")
        .resolve("smollm2-135m-instruct")
        .spec
    )
    engine = LlamaEngine(
        model_id=spec.id,
        gguf_path=spec.gguf_path(),
        context_length=1024,
        output_token_limit=1024,
        slots=8,
        batch_tokens=512,
        threads=2,
        max_queued=16,
    )
    await engine.start()
    sampling = SamplingParams(
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        max_output_tokens=tokens,
        repeat_penalty=REPEAT_PENALTY,
    )

    async def one(i: int, first: list[float]) -> tuple[int, float]:
        prompt = LONG_PROMPTS[i % len(LONG_PROMPTS)]
        stream = await engine.generate(GenerationRequest((ChatMessage("user", prompt),), sampling))
        n = 0
        async for event in stream:
            if isinstance(event, Finished):
                n = event.output_tokens
            elif not first[i]:
                first[i] = time.perf_counter()
        return n, time.perf_counter()

    async def round_() -> float:
        first = [0.0] * streams
        results = await asyncio.gather(*(one(i, first) for i in range(streams)))
        # Decode rate: tokens after each stream's first, over the span from the last first
        # token to the last end (prefill left out).
        generated = sum(n - 1 for n, _ in results)
        span = max(end for _, end in results) - min(first)
        return generated / span

    await round_()  # warm-up: prompts cached, pools spun up
    rates = [await round_() for _ in range(2)]
    await engine.close()
    return {"tok_s": max(rates)}


def run_child(src: Path, streams: int, tokens: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(streams), "--tokens", str(tokens)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    return float(json.loads(result.stdout.strip().splitlines()[-1])["tok_s"])


def engine_ab(baseline: Path, levels: list[int], rounds: int, tokens: int) -> None:
    sides = {"baseline": baseline, "working tree": REPO / "src"}
    rates: dict[tuple[str, int], list[float]] = {}
    for r in range(rounds):
        for level in levels:
            order = list(sides.items())
            for name, src in order if r % 2 == 0 else order[::-1]:
                rate = run_child(src, level, tokens)
                rates.setdefault((name, level), []).append(rate)
                print(f"round {r} {name} {level} streams: {rate:.1f} tok/s", file=sys.stderr)
    rows = []
    for level in levels:
        base = median(rates[("baseline", level)])
        new = median(rates[("working tree", level)])
        rows.append((level, f"{base:.1f}", f"{new:.1f}", new / base))
    print(f"### Engine decode tok/s, median of {rounds} alternating runs\n")
    print(md_table(["streams", "baseline", "working tree", "ratio"], rows))
    print()


def main() -> None:
    args = parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(engine_child(args.child, args.tokens))))
        return
    print_preamble("Output processing per token")
    micro(args.reps)
    if args.baseline_src:
        levels = [int(x) for x in args.levels.split(",")]
        engine_ab(Path(args.baseline_src), levels, args.rounds, args.tokens)


if __name__ == "__main__":
    main()
