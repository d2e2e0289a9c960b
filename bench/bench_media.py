"""Media parts: the latency an image part and 60 s of audio add to a request.

Image: a 1024x768 JPEG sent inline to a vision model, against the same one-token request
without it (p50 difference). No vision model ships on PyPI, so the model is the tiny random
Idefics3 pair from ``scripts/make_tiny_vlm.py``: the JPEG decoding, scaling, libmtmd
preprocessing and the scheduler's embedding batch are real, the projector is tiny (a real
SmolVLM or Gemma 3 projector adds its own encode time on top, about a second on 2 cores).

Audio: 60 s of speech (the test clip repeated) sent inline to the default model, against the
text-only request; each repetition changes one sample so the transcript cache cannot answer,
and a last row shows the cached case (a conversation's earlier turns). The raw row is the
same decode + Whisper tiny.en transcription in-process, without HTTP and the service.

Usage: .venv/bin/python bench/bench_media.py [--reps 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import API_KEY, REPO, Server, free_port, gemserve_argv, md_table, print_preamble

from gemserve.media.audio import decode_audio
from gemserve.media.transcribe import Transcriber, whisper_model_dir

SPEECH = REPO / "tests" / "fixtures" / "media" / "speech.wav"


def jpeg(width: int = 1024, height: int = 768) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) % 256)], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def speech_60s(variant: int) -> bytes:
    """60 s of 16 kHz speech: the clip, then silence, repeated; ``variant`` changes a sample."""
    with wave.open(str(SPEECH)) as clip:
        rate = clip.getframerate()
        samples = np.frombuffer(clip.readframes(clip.getnframes()), dtype=np.int16)
    gap = np.zeros(rate, dtype=np.int16)
    reps = int(60 * rate // (len(samples) + len(gap))) + 1
    audio = np.concatenate([np.concatenate([samples, gap])] * reps)[: 60 * rate].copy()
    audio[-1] = variant % 1000
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio.tobytes())
    return buffer.getvalue()


def post(client: httpx.Client, base_url: str, model: str, parts: list[dict[str, Any]]) -> float:
    body = {
        "model": model,
        "input": parts,
        "store": False,
        "generation_config": {"max_output_tokens": 1, "temperature": 0},
    }
    start = time.perf_counter()
    response = client.post(
        f"{base_url}/v1beta/interactions", json=body, headers={"x-goog-api-key": API_KEY}
    )
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    reps = 2 if args.quick else args.reps
    print_preamble("Media parts: added latency per request")
    question = {"type": "text", "text": "Describe it."}
    image = {
        "type": "image",
        "mime_type": "image/jpeg",
        "data": base64.b64encode(jpeg()).decode(),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="gemserve-bench-media-") as tmp:
        work = Path(tmp)
        sys.path.insert(0, str(REPO / "scripts"))
        from make_tiny_vlm import make_tiny_vlm

        text_gguf, mmproj = make_tiny_vlm(work / "vlm")
        config = work / "gemserve.toml"
        config.write_text(
            f'[[models]]\nid = "tiny-vlm"\nsource = "{text_gguf}"\nmmproj = "{mmproj}"\n'
            "context_length = 2048\noutput_token_limit = 64\n"
        )
        port = free_port()
        argv = [
            *gemserve_argv(),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(work / "data"),
            "--config",
            str(config),
            "--threads",
            "2",
            "--log-level",
            "warning",
        ]
        with (
            Server("gemserve", argv, port=port, ready_path="/readyz") as server,
            httpx.Client(timeout=600) as client,
        ):
            url = server.base_url
            post(client, url, "tiny-vlm", [question, image])  # warm-up
            plain = [post(client, url, "tiny-vlm", [question]) for _ in range(reps)]
            with_image = [post(client, url, "tiny-vlm", [question, image]) for _ in range(reps)]
            rows.append(
                [
                    "image 1024x768 JPEG (tiny VLM)",
                    f"{p50(plain) * 1000:.0f}",
                    f"{p50(with_image) * 1000:.0f}",
                    f"{(p50(with_image) - p50(plain)) * 1000:.0f}",
                ]
            )
            audio_parts = [
                {
                    "type": "audio",
                    "mime_type": "audio/wav",
                    "data": base64.b64encode(speech_60s(i)).decode(),
                }
                for i in range(reps + 1)
            ]
            model = "gemini-3-flash-preview"
            plain = [post(client, url, model, [question]) for _ in range(reps)]
            with_audio = [post(client, url, model, [question, audio_parts[i]]) for i in range(reps)]
            cached = [post(client, url, model, [question, audio_parts[0]]) for _ in range(reps)]
            rows.append(
                [
                    "60 s of audio, WAV (Whisper tiny.en)",
                    f"{p50(plain) * 1000:.0f}",
                    f"{p50(with_audio) * 1000:.0f}",
                    f"{(p50(with_audio) - p50(plain)) * 1000:.0f}",
                ]
            )
            rows.append(
                [
                    "the same audio again (transcript cached)",
                    f"{p50(plain) * 1000:.0f}",
                    f"{p50(cached) * 1000:.0f}",
                    f"{(p50(cached) - p50(plain)) * 1000:.0f}",
                ]
            )
    raw = asyncio.run(raw_transcription(speech_60s(10_000), reps))
    rows.append(["raw: decode + transcribe 60 s in-process", "", "", f"{p50(raw) * 1000:.0f}"])
    print(md_table(["part", "without p50 ms", "with p50 ms", "added ms"], rows))
    print(f"\n{reps} requests per cell, max_output_tokens 1, store false, 2 threads.")


async def raw_transcription(data: bytes, reps: int) -> list[float]:
    transcriber = Transcriber(whisper_model_dir("tiny.en", Path(tempfile.gettempdir())), threads=2)
    await transcriber.start()
    times = []
    try:
        for _ in range(reps):
            start = time.perf_counter()
            audio = decode_audio(data, max_seconds=120)
            await transcriber.transcribe(audio.samples)
            times.append(time.perf_counter() - start)
    finally:
        await transcriber.close()
    return times


if __name__ == "__main__":
    main()
