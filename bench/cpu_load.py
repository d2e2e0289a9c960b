"""A CPU load beside the engine, run until killed: ``python bench/cpu_load.py KIND``.

KIND is ``spin`` (one pure-Python busy loop; start it under ``nice`` for a niced load),
``whisper`` (gemserve's Transcriber on the speech fixture, over and over, with the threads
gemserve gives it) or ``pdf`` (gemserve's PDF decoder rendering the recipe fixture's pages,
as it does for a vision model). Each prints one line per unit of work to stderr.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEDIA = REPO / "tests" / "fixtures" / "media"


def spin() -> None:
    while True:
        pass


async def whisper(threads: int) -> None:
    from gemserve.media.audio import decode_audio
    from gemserve.media.transcribe import Transcriber, whisper_model_dir

    transcriber = Transcriber(whisper_model_dir("tiny.en", Path("/tmp")), threads=threads)
    await transcriber.start()
    samples = decode_audio((MEDIA / "speech.wav").read_bytes(), max_seconds=600).samples
    while True:
        t0 = time.perf_counter()
        await transcriber.transcribe(samples)
        print(f"whisper {time.perf_counter() - t0:.2f}s", file=sys.stderr, flush=True)


def pdf() -> None:
    from gemserve.media.document import PDF, decode_document

    data = (MEDIA / "recipe.pdf").read_bytes()
    while True:
        t0 = time.perf_counter()
        for _ in range(20):
            decode_document(
                data, PDF, max_pages=10, max_chars=100_000, render_pages=True, max_side=1536
            )
        print(f"pdf x20 {time.perf_counter() - t0:.2f}s", file=sys.stderr, flush=True)


def main() -> None:
    kind = sys.argv[1]
    threads = int(os.environ.get("LOAD_THREADS", os.cpu_count() or 1))
    if kind == "spin":
        spin()
    elif kind == "whisper":
        asyncio.run(whisper(threads))
    elif kind == "pdf":
        pdf()
    else:
        raise SystemExit(f"unknown load {kind!r}")


if __name__ == "__main__":
    main()
