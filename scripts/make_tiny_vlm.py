#!/usr/bin/env python3
"""Write a tiny, randomly initialised Idefics3/SmolVLM-style model pair for tests.

The output is two GGUF files that llama.cpp (via llama-cpp-python) and its multimodal
library libmtmd load like a real SmolVLM:

* ``tiny-vlm-text.gguf``: a 2-layer Llama decoder (hidden 64) with a SentencePiece-style
  ("llama") vocabulary of 420 tokens: ``<unk>``, ``<s>``, ``</s>``, the 256 byte-fallback
  tokens ``<0x00>``..``<0xFF>`` (so any text tokenizes), ChatML controls
  ``<|im_start|>``/``<|im_end|>``, the Idefics3 image-layout tokens libmtmd looks up
  (``<fake_token_around_image>``, ``<global-img>``, ``<row_R_col_C>``, ``"\\n"``,
  ``"\\n\\n"``), printable ASCII and a few merged word pieces. It carries a ChatML
  ``tokenizer.chat_template``; EOS is ``<|im_end|>``.
* ``tiny-vlm-mmproj.gguf``: a ``clip`` file with ``clip.projector_type = idefics3``:
  a 2-layer SigLIP-style ViT (hidden 32, 64 px images, 8 px patches) followed by a
  pixel-shuffle (scale factor 2) and the ``mm.model.fc`` projection to the text width.

With these sizes one image becomes 32 image tokens in libmtmd: a 64x64 overview tile
plus one 64x64 slice, (64/8/2)^2 = 16 tokens each.

Weights are random (seeded, so the files are byte-identical for a given seed); the model
produces gibberish, but every llama.cpp / libmtmd code path runs, in milliseconds.
Only the standard library, numpy and the ``gguf`` package are needed (no torch).

Usage::

    python scripts/make_tiny_vlm.py OUT_DIR [--seed N]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np

TEXT_FILENAME = "tiny-vlm-text.gguf"
MMPROJ_FILENAME = "tiny-vlm-mmproj.gguf"

# --- text model (Llama) -----------------------------------------------------------------
TEXT_HIDDEN = 64
TEXT_LAYERS = 2
TEXT_HEADS = 4
TEXT_KV_HEADS = 2  # grouped-query attention, like most modern small models
TEXT_FF = 128
TEXT_CTX = 4096
VOCAB_SIZE = 420

# --- vision encoder (SigLIP-like ViT) + Idefics3 projector --------------------------------
VISION_HIDDEN = 32
VISION_LAYERS = 2
VISION_HEADS = 4
VISION_FF = 64  # must differ from VISION_HIDDEN (clip.cpp's "ffn up/down swapped" heuristic)
IMAGE_SIZE = 64
PATCH_SIZE = 8
SCALE_FACTOR = 2
# Grid of <row_R_col_C> tokens put in the vocab. With preproc_image_size == IMAGE_SIZE
# only row_1_col_1 is used, but having a 4x4 grid costs nothing.
MAX_GRID = 4

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# SentencePiece marks a leading space with U+2581 ("▁").
SPIECE_SPACE = "\u2581"

# Words added as merged pieces; every prefix of each word is added too, so the SPM
# bigram merger can actually reach the full word. Counts are chosen so that the vocab
# lands exactly on VOCAB_SIZE (checked at build time).
WORDS = (
    "user",
    "assistant",
    "system",
    "\u2581image",
    "\u2581the",
    "\u2581is",
    "\u2581what",
    "\u2581this",
    "\u2581a",
    "\u2581describe",
    "\u2581of",
    "\u2581in",
    "\u2581an",
)

TT = gguf.TokenType


def _build_vocab() -> tuple[list[str], list[float], list[int]]:
    """Return (tokens, scores, token_types) for the SentencePiece-style vocab."""
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []

    def add(text: str, score: float, ttype: int) -> None:
        if text in tokens:
            return
        tokens.append(text)
        scores.append(score)
        types.append(int(ttype))

    # ids 0, 1, 2 are llama.cpp's SPM defaults for unk / bos / eos.
    add("<unk>", 0.0, TT.UNKNOWN)
    add("<s>", 0.0, TT.CONTROL)
    add("</s>", 0.0, TT.CONTROL)
    # Byte fallback: any byte sequence can be tokenized.
    for b in range(256):
        add(f"<0x{b:02X}>", 0.0, TT.BYTE)
    # ChatML controls (rendered only with special=True, matched with parse_special=True).
    add("<|im_start|>", 0.0, TT.CONTROL)
    add("<|im_end|>", 0.0, TT.CONTROL)
    # Idefics3 layout tokens that libmtmd inserts around the image embeddings. They are
    # USER_DEFINED so that llama_tokenize(parse_special=True) matches them as one token and
    # token_to_piece returns their literal text (libmtmd's lookup_token compares pieces).
    add("<fake_token_around_image>", 0.0, TT.USER_DEFINED)
    add("<global-img>", 0.0, TT.USER_DEFINED)
    for r in range(1, MAX_GRID + 1):
        for c in range(1, MAX_GRID + 1):
            add(f"<row_{r}_col_{c}>", 0.0, TT.USER_DEFINED)
    # Single-char pieces: newline, SPM space, printable ASCII. Lower score = merged later.
    add("\n", -100.0, TT.NORMAL)
    add(SPIECE_SPACE, -100.0, TT.NORMAL)
    for i, code in enumerate(range(0x21, 0x7F)):
        add(chr(code), -100.0 - i * 0.01, TT.NORMAL)
    # Multi-char pieces (scores > single chars so merges happen): "\n\n" then word prefixes.
    add("\n\n", -1.0, TT.NORMAL)
    for word in WORDS:
        for k in range(2, len(word) + 1):
            add(word[:k], -float(k) * 0.01 - 1.0, TT.NORMAL)

    if len(tokens) != VOCAB_SIZE:
        raise AssertionError(f"vocab has {len(tokens)} tokens, expected {VOCAB_SIZE}")
    return tokens, scores, types


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _linear(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    """A [n_out, n_in] matmul weight (torch layout) in f16, std 1/sqrt(n_in).

    gguf stores numpy shapes reversed (ggml ne = [n_in, n_out]), which is what llama.cpp
    and clip.cpp expect for ``ggml_mul_mat(w, x)``.
    """
    return _normal(rng, (n_out, n_in), 1.0 / np.sqrt(n_in)).astype(np.float16)


def _write_text_model(path: Path, rng: np.random.Generator) -> None:
    tokens, scores, types = _build_vocab()
    head_dim = TEXT_HIDDEN // TEXT_HEADS
    kv_dim = head_dim * TEXT_KV_HEADS

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_string("general.name", "tiny-random-smolvlm")
    w.add_uint32("general.file_type", int(gguf.LlamaFileType.MOSTLY_F16))
    w.add_uint32("llama.context_length", TEXT_CTX)
    w.add_uint32("llama.embedding_length", TEXT_HIDDEN)
    w.add_uint32("llama.block_count", TEXT_LAYERS)
    w.add_uint32("llama.feed_forward_length", TEXT_FF)
    w.add_uint32("llama.attention.head_count", TEXT_HEADS)
    w.add_uint32("llama.attention.head_count_kv", TEXT_KV_HEADS)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_uint32("llama.rope.dimension_count", head_dim)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_uint32("llama.vocab_size", len(tokens))

    # SentencePiece ("llama") tokenizer.
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.scores", scores)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_uint32("tokenizer.ggml.unknown_token_id", tokens.index("<unk>"))
    w.add_uint32("tokenizer.ggml.bos_token_id", tokens.index("<s>"))
    w.add_uint32("tokenizer.ggml.eos_token_id", tokens.index("<|im_end|>"))
    w.add_uint32("tokenizer.ggml.padding_token_id", tokens.index("<unk>"))
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_bool("tokenizer.ggml.add_eos_token", False)
    # No implicit leading "▁": keeps "<|im_start|>user" as written by the template.
    w.add_bool("tokenizer.ggml.add_space_prefix", False)
    w.add_string("tokenizer.chat_template", CHAT_TEMPLATE)

    # Tensors. A separate (untied) random output matrix with std 1 gives logits with std ~8:
    # well separated, so greedy decoding is stable against tiny numerical differences
    # between batch shapes, and (unlike tied embeddings, which make the model echo its last
    # input token) the argmax depends on the whole context, images included.
    embd = _normal(rng, (len(tokens), TEXT_HIDDEN), 1.0).astype(np.float16)
    w.add_tensor("token_embd.weight", embd)
    w.add_tensor("output_norm.weight", np.ones(TEXT_HIDDEN, dtype=np.float32))
    out = _normal(rng, (len(tokens), TEXT_HIDDEN), 1.0).astype(np.float16)
    w.add_tensor("output.weight", out)
    for i in range(TEXT_LAYERS):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", np.ones(TEXT_HIDDEN, dtype=np.float32))
        w.add_tensor(f"{p}.attn_q.weight", _linear(rng, TEXT_HIDDEN, TEXT_HIDDEN))
        w.add_tensor(f"{p}.attn_k.weight", _linear(rng, kv_dim, TEXT_HIDDEN))
        w.add_tensor(f"{p}.attn_v.weight", _linear(rng, kv_dim, TEXT_HIDDEN))
        w.add_tensor(f"{p}.attn_output.weight", _linear(rng, TEXT_HIDDEN, TEXT_HIDDEN))
        w.add_tensor(f"{p}.ffn_norm.weight", np.ones(TEXT_HIDDEN, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_gate.weight", _linear(rng, TEXT_FF, TEXT_HIDDEN))
        w.add_tensor(f"{p}.ffn_up.weight", _linear(rng, TEXT_FF, TEXT_HIDDEN))
        w.add_tensor(f"{p}.ffn_down.weight", _linear(rng, TEXT_HIDDEN, TEXT_FF))
    _flush(w)


def _write_mmproj(path: Path, rng: np.random.Generator) -> None:
    n_patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
    merged = VISION_HIDDEN * SCALE_FACTOR * SCALE_FACTOR  # pixel-shuffle output width

    w = gguf.GGUFWriter(str(path), arch="clip")
    w.add_string("general.name", "tiny-random-smolvlm-mmproj")
    w.add_uint32("general.file_type", int(gguf.LlamaFileType.MOSTLY_F16))
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_audio_encoder", False)
    w.add_string("clip.projector_type", "idefics3")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    w.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    w.add_uint32("clip.vision.embedding_length", VISION_HIDDEN)
    w.add_uint32("clip.vision.feed_forward_length", VISION_FF)
    w.add_uint32("clip.vision.block_count", VISION_LAYERS)
    w.add_uint32("clip.vision.attention.head_count", VISION_HEADS)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_uint32("clip.vision.projection_dim", TEXT_HIDDEN)  # must equal the text n_embd
    w.add_uint32("clip.vision.projector.scale_factor", SCALE_FACTOR)
    # Longest edge of the resized image before slicing into IMAGE_SIZE tiles: equal to
    # IMAGE_SIZE means a 1x1 grid, i.e. overview + 1 slice = 2 * 16 = 32 image tokens.
    w.add_uint32("clip.vision.preproc_image_size", IMAGE_SIZE)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    # Patch embedding conv: torch [out=hidden, in=3, kh, kw] -> ggml ne [kw, kh, 3, hidden].
    patch_std = 1.0 / np.sqrt(3 * PATCH_SIZE * PATCH_SIZE)
    w.add_tensor(
        "v.patch_embd.weight",
        _normal(rng, (VISION_HIDDEN, 3, PATCH_SIZE, PATCH_SIZE), patch_std),
    )
    w.add_tensor("v.patch_embd.bias", np.zeros(VISION_HIDDEN, dtype=np.float32))
    w.add_tensor("v.position_embd.weight", _normal(rng, (n_patches, VISION_HIDDEN), 0.02))
    for i in range(VISION_LAYERS):
        p = f"v.blk.{i}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{p}.{name}.weight", _linear(rng, VISION_HIDDEN, VISION_HIDDEN))
            w.add_tensor(f"{p}.{name}.bias", np.zeros(VISION_HIDDEN, dtype=np.float32))
        for name in ("ln1", "ln2"):
            w.add_tensor(f"{p}.{name}.weight", np.ones(VISION_HIDDEN, dtype=np.float32))
            w.add_tensor(f"{p}.{name}.bias", np.zeros(VISION_HIDDEN, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_up.weight", _linear(rng, VISION_FF, VISION_HIDDEN))
        w.add_tensor(f"{p}.ffn_up.bias", np.zeros(VISION_FF, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_down.weight", _linear(rng, VISION_HIDDEN, VISION_FF))
        w.add_tensor(f"{p}.ffn_down.bias", np.zeros(VISION_HIDDEN, dtype=np.float32))
    w.add_tensor("v.post_ln.weight", np.ones(VISION_HIDDEN, dtype=np.float32))
    w.add_tensor("v.post_ln.bias", np.zeros(VISION_HIDDEN, dtype=np.float32))
    # Idefics3 connector: pixel-shuffled features [merged] -> text hidden, no bias.
    w.add_tensor("mm.model.fc.weight", _linear(rng, TEXT_HIDDEN, merged))
    _flush(w)


def _flush(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_pair(
    out_dir: Path,
    seed: int,
    names: tuple[str, str],
    write_mmproj: Callable[[Path, np.random.Generator], None],
) -> tuple[Path, Path]:
    """Write this script's text model and the given projector as ``names`` into ``out_dir``
    (shared with make_tiny_audio_lm.py). Output is deterministic for ``seed``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    text_path, mmproj_path = out_dir / names[0], out_dir / names[1]
    _write_text_model(text_path, rng)
    write_mmproj(mmproj_path, rng)
    return text_path, mmproj_path


def run_cli(description: str, make: Callable[[Path, int], tuple[Path, Path]]) -> None:
    """``script OUT_DIR [--seed N]``: write the pair and print both paths."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out_dir", type=Path, help="directory to write the two GGUF files to")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    args = parser.parse_args()
    for path in make(args.out_dir, args.seed):
        print(path)


def make_tiny_vlm(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the tiny text GGUF and mmproj GGUF into ``out_dir``.

    Returns ``(text_gguf_path, mmproj_gguf_path)``. Output is deterministic for ``seed``.
    """
    return write_pair(out_dir, seed, (TEXT_FILENAME, MMPROJ_FILENAME), _write_mmproj)


def main() -> None:
    run_cli(__doc__.splitlines()[0], make_tiny_vlm)


if __name__ == "__main__":
    main()
