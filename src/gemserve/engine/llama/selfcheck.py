"""Decode one small batch before a model takes traffic, so a broken build fails at start.

A llama.cpp built for instructions that do not run here (AMX built by GCC 12) loads fine and
dies by SIGILL in its first batched matrix product: without this check, the first user's
request kills the server. Each model runs a few short greedy generations together through its real
scheduler before it reports ready.

``python -m gemserve.engine.llama`` does the same in a process of its own, for the
set-up script and the tests: a signal there kills only the child, and its parent names it.

``GEMSERVE_SELFCHECK_FAULT`` forces a failure, for the tests of what follows one:
``error`` fails the check with an exception; a signal name (``SIGILL``, ``SIGSEGV``) raises
that signal on the native thread, as a trapping kernel would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gemserve.engine.base import (
    ChatMessage,
    Finished,
    FinishReason,
    GenerationRequest,
    GenerationStream,
    SamplingParams,
)

FAULT_ENV = "GEMSERVE_SELFCHECK_FAULT"
PROMPTS = ("Say hello.", "Count to three.", "Name a colour.", "What is two plus two?")
OUTPUT_TOKENS = 4


class SelfCheckFailed(RuntimeError):
    """The model could not decode its start-up batch."""


@dataclass(frozen=True)
class SelfCheckResult:
    sequences: int
    prompt_tokens: int
    output_tokens: int
    seconds: float

    def describe(self) -> str:
        return (
            f"{self.sequences} sequences, {self.prompt_tokens} prompt and "
            f"{self.output_tokens} output tokens in {self.seconds * 1000:.0f} ms"
        )


def injected_fault() -> Callable[[], None] | None:
    """The forced failure named by ``GEMSERVE_SELFCHECK_FAULT``, to run on the native thread."""
    fault = os.environ.get(FAULT_ENV, "")
    if not fault:
        return None
    if fault == "error":

        def fail() -> None:
            raise SelfCheckFailed(f"forced by {FAULT_ENV}=error")

        return fail
    number = signal.Signals[fault]
    return lambda: signal.raise_signal(number)


async def decode_one_batch(
    generate: Callable[[GenerationRequest], Awaitable[GenerationStream]], sequences: int
) -> SelfCheckResult:
    """Run ``sequences`` short greedy generations at once and check that each finished."""
    sampling = SamplingParams(temperature=0.0, top_p=1.0, top_k=1, max_output_tokens=OUTPUT_TOKENS)
    requests = [
        GenerationRequest(
            messages=(ChatMessage(role="user", text=PROMPTS[i % len(PROMPTS)]),),
            sampling=sampling,
            request_id=f"selfcheck-{i}",
        )
        for i in range(sequences)
    ]
    started = time.perf_counter()
    streams = [await generate(request) for request in requests]
    finals = await asyncio.gather(*(_final(stream) for stream in streams))
    seconds = time.perf_counter() - started
    for final in finals:
        if final.reason is FinishReason.ERROR or final.error:
            raise SelfCheckFailed(f"a start-up sequence failed: {final.error or final.reason}")
    return SelfCheckResult(
        sequences=sequences,
        prompt_tokens=sum(f.prompt_tokens for f in finals),
        output_tokens=sum(f.output_tokens for f in finals),
        seconds=seconds,
    )


async def _final(stream: GenerationStream) -> Finished:
    async for event in stream:
        if isinstance(event, Finished):
            return event
    raise SelfCheckFailed("a start-up stream ended without finishing")


async def _check_bundled_model() -> str:
    from gemserve.config import ModelRegistry
    from gemserve.config.models import DEFAULT_MODEL_ID
    from gemserve.engine.llama.engine import LlamaEngine

    spec = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID).resolve(DEFAULT_MODEL_ID).spec
    engine = LlamaEngine(
        model_id=spec.id,
        gguf_path=spec.gguf_path(),
        context_length=512,
        output_token_limit=64,
        slots=len(PROMPTS),
        batch_tokens=256,
        threads=os.cpu_count() or 1,
        max_queued=len(PROMPTS),
    )
    await engine.start()  # runs the check
    try:
        result = engine.self_check_result
        return f"{spec.id}: {result.describe() if result else 'checked'}"
    finally:
        await engine.close()


def main() -> int:
    import faulthandler

    faulthandler.enable()
    try:
        print(asyncio.run(_check_bundled_model()))
    except SelfCheckFailed as exc:
        print(f"self-check failed: {exc}", file=sys.stderr)
        return 1
    return 0
