#!/usr/bin/env python3
"""Write a tiny, randomly initialised Ultravox-style audio model pair for tests.

The output is two GGUF files that llama.cpp (via llama-cpp-python) and its multimodal
library libmtmd load like a real Ultravox (Whisper encoder + stacking MLP projector):

* ``tiny-audio-text.gguf``: the text model of ``make_tiny_vlm.py`` (imported from it, not
  duplicated): a 2-layer Llama decoder (hidden 64) with a 420-token SentencePiece-style
  vocabulary, ChatML controls and a ChatML ``tokenizer.chat_template``; EOS is
  ``<|im_end|>``. For the same seed it is byte-identical to ``tiny-vlm-text.gguf`` (its
  ``general.name`` therefore still reads ``tiny-random-smolvlm``). Ultravox needs no
  audio marker tokens in the vocabulary: libmtmd puts the audio embeddings in place of
  the media marker with nothing around them.
* ``tiny-audio-mmproj.gguf``: a ``clip`` file with ``clip.has_audio_encoder = true`` and
  ``clip.projector_type = ultravox``: a 2-layer Whisper-style encoder (128 mel bins,
  two conv1d layers, the second with stride 2, hidden 32, 1500 learned positions)
  followed by Ultravox's frame stacking (stack factor 30) and its RMSNorm-SwiGLU-RMSNorm
  MLP projection to the text width.

libmtmd computes the log-mel spectrogram itself (16 kHz mono float PCM; 25 ms Hann
window, 10 ms hop; the mel filterbank is built in code, not stored in the GGUF) and cuts
it into 30 s windows of 3000 frames, always padding the end with 30 s of silence. Each
window is one audio chunk of 3000 / 2 / 30 = 50 audio tokens; a clip shorter than 30 s
is one chunk, a clip of 30 s to 60 s two chunks, and so on.

Weights are random (seeded, so the files are byte-identical for a given seed); the model
produces gibberish, but every llama.cpp / libmtmd audio code path runs, in milliseconds.
Only the standard library, numpy and the ``gguf`` package are needed (no torch).

Usage::

    python scripts/make_tiny_audio_lm.py OUT_DIR [--seed N]
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import gguf
import numpy as np


def _load_tiny_vlm() -> ModuleType:
    """Import the sibling script ``make_tiny_vlm.py`` (``scripts/`` is not a package)."""
    name = "make_tiny_vlm"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name}.py next to {__file__}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_vlm = _load_tiny_vlm()

TEXT_FILENAME = "tiny-audio-text.gguf"
MMPROJ_FILENAME = "tiny-audio-mmproj.gguf"

TEXT_HIDDEN: int = _vlm.TEXT_HIDDEN  # the projector's output width must match it

# --- audio encoder (Whisper-like) + Ultravox projector ------------------------------------
SAMPLE_RATE = 16000  # fixed by libmtmd for ultravox (not a GGUF key)
N_MEL = 128  # Whisper large-v3 (Ultravox v0.5) uses 128; libmtmd accepts 1..256
AUDIO_HIDDEN = 32
AUDIO_LAYERS = 2
AUDIO_HEADS = 4
AUDIO_FF = 64
CONV_KERNEL = 3
# libmtmd always encodes 3000-frame (30 s) windows; the stride-2 conv halves them, so the
# encoder needs 1500 learned positions (clip.cpp asserts position_embd has >= 1500 rows).
N_POSITIONS = 1500
# Frames stacked per audio token. It must divide 1500: clip.cpp computes the token count as
# 3000 / stack / 2 (rounded down) but the graph yields ceil(1500 / stack) rows, and when the
# two differ mtmd_encode_chunk aborts the process (GGML_ABORT "Invalid number of output
# tokens"; e.g. Ultravox's usual 8 gives 187 vs 188). 30 gives 50 tokens per 30 s window.
STACK_FACTOR = 30
PROJ_FF = 32  # SwiGLU width of the Ultravox MLP (mm.a.mlp.1 outputs 2 * PROJ_FF)

_normal = _vlm._normal
_linear = _vlm._linear
_flush = _vlm._flush


def _conv(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    """A Conv1d weight: torch [n_out, n_in, k] (ggml ne [k, n_in, n_out]) in f16."""
    std = 1.0 / np.sqrt(n_in * CONV_KERNEL)
    return _normal(rng, (n_out, n_in, CONV_KERNEL), std).astype(np.float16)


def _write_mmproj(path: Path, rng: np.random.Generator) -> None:
    stacked = AUDIO_HIDDEN * STACK_FACTOR  # width of the stacked frames

    w = gguf.GGUFWriter(str(path), arch="clip")
    w.add_string("general.name", "tiny-random-ultravox-mmproj")
    w.add_uint32("general.file_type", int(gguf.LlamaFileType.MOSTLY_F16))
    w.add_bool("clip.has_vision_encoder", False)
    w.add_bool("clip.has_audio_encoder", True)
    w.add_string("clip.projector_type", "ultravox")
    w.add_uint32("clip.audio.num_mel_bins", N_MEL)
    w.add_uint32("clip.audio.embedding_length", AUDIO_HIDDEN)
    w.add_uint32("clip.audio.feed_forward_length", AUDIO_FF)
    w.add_uint32("clip.audio.block_count", AUDIO_LAYERS)
    w.add_uint32("clip.audio.attention.head_count", AUDIO_HEADS)
    w.add_float32("clip.audio.attention.layer_norm_epsilon", 1e-5)
    w.add_uint32("clip.audio.projection_dim", TEXT_HIDDEN)
    w.add_uint32("clip.audio.projector.stack_factor", STACK_FACTOR)  # required for ultravox

    # Conv front-end: weights F16 like convert_hf_to_gguf stores them (ggml's conv_1d
    # im2col path works in F16); biases [out, 1] (ggml ne [1, out]) broadcast over frames.
    w.add_tensor("a.conv1d.1.weight", _conv(rng, AUDIO_HIDDEN, N_MEL))
    w.add_tensor("a.conv1d.1.bias", np.zeros((AUDIO_HIDDEN, 1), dtype=np.float32))
    w.add_tensor("a.conv1d.2.weight", _conv(rng, AUDIO_HIDDEN, AUDIO_HIDDEN))
    w.add_tensor("a.conv1d.2.bias", np.zeros((AUDIO_HIDDEN, 1), dtype=np.float32))
    w.add_tensor("a.position_embd.weight", _normal(rng, (N_POSITIONS, AUDIO_HIDDEN), 0.02))

    # Whisper encoder layers: pre-LN, q/v/out with bias, k WITHOUT bias (clip.cpp asserts
    # it), GELU (erf) MLP with biases.
    for i in range(AUDIO_LAYERS):
        p = f"a.blk.{i}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{p}.{name}.weight", _linear(rng, AUDIO_HIDDEN, AUDIO_HIDDEN))
            if name != "attn_k":
                w.add_tensor(f"{p}.{name}.bias", np.zeros(AUDIO_HIDDEN, dtype=np.float32))
        for name in ("ln1", "ln2"):
            w.add_tensor(f"{p}.{name}.weight", np.ones(AUDIO_HIDDEN, dtype=np.float32))
            w.add_tensor(f"{p}.{name}.bias", np.zeros(AUDIO_HIDDEN, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_up.weight", _linear(rng, AUDIO_FF, AUDIO_HIDDEN))
        w.add_tensor(f"{p}.ffn_up.bias", np.zeros(AUDIO_FF, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_down.weight", _linear(rng, AUDIO_HIDDEN, AUDIO_FF))
        w.add_tensor(f"{p}.ffn_down.bias", np.zeros(AUDIO_HIDDEN, dtype=np.float32))
    w.add_tensor("a.post_ln.weight", np.ones(AUDIO_HIDDEN, dtype=np.float32))
    w.add_tensor("a.post_ln.bias", np.zeros(AUDIO_HIDDEN, dtype=np.float32))

    # Ultravox projector (no biases): RMSNorm(stacked) -> mlp.1 -> SwiGLU (silu on the
    # second half) -> RMSNorm -> mlp.2 to the text width.
    w.add_tensor("mm.a.norm_pre.weight", np.ones(stacked, dtype=np.float32))
    w.add_tensor("mm.a.mlp.1.weight", _linear(rng, 2 * PROJ_FF, stacked))
    w.add_tensor("mm.a.norm_mid.weight", np.ones(PROJ_FF, dtype=np.float32))
    w.add_tensor("mm.a.mlp.2.weight", _linear(rng, TEXT_HIDDEN, PROJ_FF))
    _flush(w)


def make_tiny_audio_lm(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the tiny text GGUF and audio mmproj GGUF into ``out_dir``.

    Returns ``(text_gguf_path, mmproj_gguf_path)``. Output is deterministic for ``seed``.
    """
    return _vlm.write_pair(out_dir, seed, (TEXT_FILENAME, MMPROJ_FILENAME), _write_mmproj)


def main() -> None:
    _vlm.run_cli(__doc__.splitlines()[0], make_tiny_audio_lm)


if __name__ == "__main__":
    main()
