"""The ceiling on batching: one ``llama_decode`` step at 1..8 sequences, in-process.

No server, no sampling, no Python per token beyond filling the batch: the context is built
as gemserve's scheduler builds it (one KV stream per slot, ``n_batch = n_ubatch = 512``,
flash attention auto), every sequence holds a prompt of ``--prompt`` tokens, and each step
decodes one token per sequence. ``8 x t(1) / t(8)`` is the most an 8-stream aggregate can gain
over one stream on this model and machine, before prefill, sampling and HTTP.

The batch is laid out in sequence-id order (as gemserve does) and, for comparison, in
reverse order: with per-slot KV streams llama.cpp makes one weight pass per run of
consecutive ids in batch order, so the reversed batch shows what that layout costs.

    .venv/bin/python bench/bench_step.py [--steps 32] [--reps 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from common import (
    add_omp_argument,
    apply_omp_policy,
    gguf_path,
    md_table,
    median,
    print_preamble,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=32, help="decode steps per measurement")
    parser.add_argument("--reps", type=int, default=5, help="measurements per batch size")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens per sequence")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--gguf", help="another GGUF (default: the bundled model)")
    parser.add_argument(
        "--kv-unified",
        action="store_true",
        help="one KV stream shared by all sequences (gemserve uses one per slot)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    add_omp_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.reps = 8, 2
    return args


class Stepper:
    SEQS = 8

    def __init__(self, threads: int, prompt: int, *, unified: bool, gguf: str) -> None:
        import llama_cpp as llama

        self.llama = llama
        llama.llama_backend_init()
        # Silence llama.cpp's load log; ctypes keeps the callback only while we hold it.
        self._log = llama.llama_log_callback(_quiet)
        llama.llama_log_set(self._log, None)
        self.model = llama.llama_model_load_from_file(
            gguf.encode(), llama.llama_model_default_params()
        )
        params = llama.llama_context_default_params()
        params.n_ctx = 4096 * self.SEQS
        params.n_seq_max = self.SEQS
        params.kv_unified = unified
        params.n_batch = params.n_ubatch = 512
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        self.ctx = llama.llama_init_from_model(self.model, params)
        self.batch = llama.llama_batch_init(512, 0, 1)
        self.n_past = [0] * self.SEQS
        for seq in range(self.SEQS):
            self.decode([(100 + (i * 7 + seq) % 1000, seq, i == prompt - 1) for i in range(prompt)])

    def decode(self, entries: list[tuple[int, int, bool]]) -> None:
        """``entries``: (token, sequence id, wants logits), in batch order."""
        batch = self.batch
        for i, (token, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = self.n_past[seq]
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
            self.n_past[seq] += 1
        batch.n_tokens = len(entries)
        if self.llama.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    def step_ms(self, order: list[int], steps: int) -> float:
        t0 = time.perf_counter()
        for step in range(steps):
            self.decode([(200 + step, seq, True) for seq in order])
        return (time.perf_counter() - t0) / steps * 1000

    def close(self) -> None:
        self.llama.llama_batch_free(self.batch)
        self.llama.llama_free(self.ctx)
        self.llama.llama_model_free(self.model)


def _quiet(level: int, text: bytes, user_data: Any) -> None:
    return None


def main() -> int:
    args = parse_args()
    apply_omp_policy(args.omp_wait_policy)
    print_preamble("bench_step: one llama_decode step at 1..8 sequences (in-process)")
    gguf = args.gguf or str(gguf_path())
    print(
        f"prompt={args.prompt} tokens/sequence steps={args.steps} reps={args.reps} "
        f"threads={args.threads} n_ctx=8x4096 kv_unified={str(args.kv_unified).lower()} "
        f"n_batch=n_ubatch=512 gguf={gguf}\n",
        flush=True,
    )
    stepper = Stepper(args.threads, args.prompt, unified=args.kv_unified, gguf=gguf)
    sizes = [1, 2, 4, 8]
    cases = [(n, "id order", list(range(n))) for n in sizes] + [
        (8, "reversed", list(range(8))[::-1])
    ]
    times: dict[tuple[int, str], list[float]] = {(n, name): [] for n, name, _ in cases}
    try:
        stepper.step_ms([0], 2)  # warm-up
        for _rep in range(args.reps):  # interleaved: drift hits every case alike
            for n, name, order in cases:
                times[(n, name)].append(stepper.step_ms(order, args.steps))
    finally:
        stepper.close()
    t1 = median(times[(1, "id order")])
    rows = []
    for n, name, _ in cases:
        t = median(times[(n, name)])
        rows.append([n, name, t, n * 1000 / t, n * t1 / t])
    print(
        md_table(["sequences", "batch layout", "step ms (median)", "tok/s", "x one sequence"], rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
