"""The real llama.cpp engine on the bundled model, the child-process self-check, and the tiny
random vision and audio models (scripts/make_tiny_vlm.py, scripts/make_tiny_audio_lm.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gemserve.config import ModelRegistry, ModelSpec
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.engine.llama import LlamaEngine
from gemserve.engine.llama.embedding import Pooling
from tests.support.paths import ROOT


def engine_child_check(fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed llama.cpp decoding one batch of the bundled model, in a child process;
    ``fault`` forces a failure (GEMSERVE_SELFCHECK_FAULT)."""
    env = {k: v for k, v in os.environ.items() if k != "GEMSERVE_SELFCHECK_FAULT"}
    if fault is not None:
        env["GEMSERVE_SELFCHECK_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "gemserve.engine.llama"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return line.split(":", 1)[1].strip()
    return "(unknown)"


def default_spec() -> ModelSpec:
    """The bundled model's spec, as the built-in registry has it."""
    return ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID).resolve(DEFAULT_MODEL_ID).spec


def make_engine(
    *,
    slots: int = 4,
    context_length: int = 512,
    max_queued: int = 16,
    embedding_pooling: Pooling = "mean",
) -> LlamaEngine:
    """A real llama.cpp engine on the bundled model (not started)."""
    spec = default_spec()
    return LlamaEngine(
        model_id=spec.id,
        gguf_path=spec.gguf_path(),
        context_length=context_length,
        output_token_limit=context_length,
        slots=slots,
        batch_tokens=256,
        threads=2,
        max_queued=max_queued,
        embedding_pooling=embedding_pooling,
    )


@dataclass(frozen=True)
class TinyVlm:
    """A random Idefics3/SmolVLM pair: one image becomes 32 image tokens (2 chunks of 16)."""

    gguf: Path
    mmproj: Path
    tokens_per_image: int = 32
    chunks_per_image: int = 2


@dataclass(frozen=True)
class TinyAudioLm:
    """A random Ultravox pair: each 30 s window of sound becomes one chunk of 50 tokens."""

    gguf: Path
    mmproj: Path
    tokens_per_window: int = 50


def _script_function(script: str, name: str) -> Callable[..., tuple[Path, Path]]:
    """``name`` from scripts/``script`` (not a package), loaded by file path."""
    path = ROOT / "scripts" / script
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    maker: Callable[..., tuple[Path, Path]] = getattr(module, name)
    return maker


def load_tiny_vlm_maker() -> Callable[..., tuple[Path, Path]]:
    """``make_tiny_vlm`` from scripts/make_tiny_vlm.py."""
    return _script_function("make_tiny_vlm.py", "make_tiny_vlm")


def load_tiny_audio_lm_maker() -> Callable[..., tuple[Path, Path]]:
    """``make_tiny_audio_lm`` from scripts/make_tiny_audio_lm.py."""
    return _script_function("make_tiny_audio_lm.py", "make_tiny_audio_lm")
