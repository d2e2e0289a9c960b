"""One native thread for every llama.cpp computation: its loop, and two real models on it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import llama_cpp
import pytest

from gemserve.engine.llama import LlamaEngine
from gemserve.engine.llama.native_thread import NativeThread
from tests.support.generation import QUESTIONS, request, run
from tests.support.llama import default_spec


class CountingScheduler:
    """Wants ``steps`` steps, records the thread of each, then stops."""

    def __init__(self, native: NativeThread, steps: int) -> None:
        self._native = native
        self.left = steps
        self.threads: list[int] = []
        self.stopped = threading.Event()

    def wants_step(self) -> bool:
        return self.left > 0

    def step(self) -> bool:
        self.threads.append(threading.get_ident())
        self.left -= 1
        if self.left == 0:
            self.stopped.set()
            return False
        return True


async def test_calls_and_steps_run_on_one_thread_in_turn() -> None:
    native = NativeThread()
    try:
        where = await native.run(threading.get_ident)
        assert where != threading.get_ident()
        first, second = CountingScheduler(native, 3), CountingScheduler(native, 5)
        native.attach(first)
        native.attach(second)
        assert await asyncio.to_thread(first.stopped.wait, 10)
        assert await asyncio.to_thread(second.stopped.wait, 10)
        assert set(first.threads) == set(second.threads) == {where}
        with pytest.raises(ZeroDivisionError):
            await native.run(lambda: 1 / 0)
        assert await native.run(lambda: 42) == 42  # still running after a failed call
    finally:
        await asyncio.to_thread(native.close)


async def test_close_ends_the_thread_and_refuses_new_calls() -> None:
    native = NativeThread(name="native-under-test")
    await native.run(lambda: None)
    assert any(t.name == "native-under-test" for t in threading.enumerate())
    await asyncio.to_thread(native.close)
    assert not any(t.name == "native-under-test" for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="closed"):
        native.submit(lambda: None)


def engine_on(native: NativeThread, slots: int = 2) -> LlamaEngine:
    spec = default_spec()
    return LlamaEngine(
        model_id=spec.id,
        gguf_path=spec.gguf_path(),
        context_length=512,
        output_token_limit=512,
        slots=slots,
        batch_tokens=256,
        threads=2,
        max_queued=4,
        native=native,
    )


@pytest.mark.engine
async def test_two_models_load_and_decode_on_the_same_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With OpenMP, a second thread that decodes gives the process a second thread pool and
    slows every model down for good; so loads and decodes of all models share one thread."""
    threads: dict[str, set[int]] = {"init": set(), "decode": set()}
    init, decode = llama_cpp.llama_init_from_model, llama_cpp.llama_decode

    def recording_init(*args: Any) -> Any:
        threads["init"].add(threading.get_ident())
        return init(*args)

    def recording_decode(*args: Any) -> int:
        threads["decode"].add(threading.get_ident())
        return int(decode(*args))

    monkeypatch.setattr(llama_cpp, "llama_init_from_model", recording_init)
    monkeypatch.setattr(llama_cpp, "llama_decode", recording_decode)
    native = NativeThread()
    first, second = engine_on(native), engine_on(native, slots=1)
    try:
        await asyncio.gather(first.start(), second.start())
        results = await asyncio.gather(
            *(run(engine, request(q)) for engine in (first, second) for q, _ in QUESTIONS[:2])
        )
        for (question, words), (text, _) in zip(QUESTIONS[:2] * 2, results, strict=True):
            assert any(word in text.lower() for word in words), (question, text)
        await second.close()  # the other model keeps working without it
        text, _ = await run(first, request(QUESTIONS[0][0]))
        assert "paris" in text.lower()
    finally:
        await first.close()
        await second.close()
        await asyncio.to_thread(native.close)
    assert len(threads["init"]) == 1
    assert threads["decode"] == threads["init"]
    assert threading.get_ident() not in threads["decode"]
