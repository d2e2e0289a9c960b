"""What another quantization of the bundled model costs in quality: perplexity per type.

llama.cpp's CPU backend repacks Q4_0 (and IQ4_NL, Q4_K) weights for matrix-matrix kernels,
so batched decoding gains far more from concurrency on them than on the bundled Q4_1, which
is decoded with per-row dot products (``bench_step.py --gguf``). Requantizing Q4_1 can only
lose information, so this measures how much: each type is made with llama.cpp's own quantizer
(``llama_model_quantize``, requantizing from Q4_1) into bench/out/quant/, and perplexity is
computed on the same English text (the GPL-3 text shipped by Debian, or README.md) in
independent 512-token windows.

    .venv/bin/python bench/bench_quant.py [--types q4_0,q8_0,f16]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from common import OUT_DIR, REPO, gguf_path, md_table, print_preamble

TYPES = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
         "f16": "LLAMA_FTYPE_MOSTLY_F16", "iq4_nl": "LLAMA_FTYPE_MOSTLY_IQ4_NL"}  # fmt: skip
WINDOW = 512
TEXTS = (Path("/usr/share/common-licenses/GPL-3"), REPO / "README.md")


def quantize(source: Path, kind: str, threads: int) -> Path:
    import llama_cpp as llama

    target = OUT_DIR / "quant" / f"{source.stem}.requant-{kind}.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    params = llama.llama_model_quantize_default_params()
    params.ftype = getattr(llama, TYPES[kind])
    params.allow_requantize = True
    params.nthread = threads
    if llama.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
        raise RuntimeError(f"llama_model_quantize failed for {kind}")
    return target


def perplexity(model: Path, text: str, max_tokens: int, threads: int) -> tuple[float, int]:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(model),
        n_ctx=WINDOW * 2,
        n_batch=WINDOW,
        logits_all=True,
        n_threads=threads,
        verbose=False,
    )
    tokens = llm.tokenize(text.encode(), add_bos=True)[: max_tokens + 1]
    nll, count = 0.0, 0
    for start in range(0, len(tokens) - 1, WINDOW):
        window = tokens[start : start + WINDOW + 1]
        llm.reset()
        llm.eval(window[:-1])
        logits = np.asarray(llm.scores[: len(window) - 1], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
        targets = np.asarray(window[1:])
        nll += float((log_z - logits[np.arange(len(targets)), targets]).sum())
        count += len(targets)
    return math.exp(nll / count), count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", default="q4_0,q8_0,f16", help=f"subset of {','.join(TYPES)}")
    parser.add_argument("--tokens", type=int, default=4096, help="text tokens to score")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    text_path = next(p for p in TEXTS if p.exists())
    print_preamble("bench_quant: perplexity of requantizations of the bundled model")
    print(f"text={text_path} tokens={args.tokens} window={WINDOW}\n", flush=True)
    source = gguf_path()
    text = text_path.read_text()
    base, count = perplexity(source, text, args.tokens, args.threads)
    rows: list[list[object]] = [["bundled (Q4_1)", source.stat().st_size / 2**20, count, base, 1.0]]
    for kind in [k for k in args.types.split(",") if k]:
        model = quantize(source, kind, args.threads)
        value, count = perplexity(model, text, args.tokens, args.threads)
        rows.append([kind, model.stat().st_size / 2**20, count, value, value / base])
        print(f"  {kind}: perplexity {value:.3f}", file=sys.stderr, flush=True)
    print(md_table(["weights", "file MiB", "tokens scored", "perplexity", "x bundled"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
