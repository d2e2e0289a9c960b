"""The thread governor: one decode thread given back per core that other work uses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from gemserve.engine.base import ChatMessage, GenerationRequest, SamplingParams
from gemserve.engine.llama import LlamaEngine
from gemserve.engine.llama.cores import (
    COMPUTE_THREAD_NAME,
    CpuTimes,
    ProcCpuTimes,
    ThreadGovernor,
    name_this_thread,
)
from gemserve.engine.llama.native_thread import NativeThread
from tests.support.generation import run
from tests.support.llama import default_spec


class Readings:
    """CPU times a test scripts: each call returns the next."""

    def __init__(self, *samples: tuple[float, float, float]) -> None:
        self.samples = [CpuTimes(*s) for s in samples]

    def __call__(self) -> CpuTimes | None:
        return self.samples.pop(0) if self.samples else None


def governor(*samples: tuple[float, float, float], maximum: int = 2) -> ThreadGovernor:
    return ThreadGovernor(maximum, read=Readings(*samples), cores=2, interval=0.5)


def test_a_quiet_machine_keeps_every_thread() -> None:
    # Our threads used both cores for the whole second; nothing else ran.
    gov = governor((0.0, 0.0, 0.0), (1.0, 2.0, 1.9))
    assert gov.threads(now=0.0) == 2
    assert gov.threads(now=1.0) == 2
    assert gov.others == pytest.approx(0.1)


def test_a_busy_neighbour_takes_one_thread_and_gives_it_back_when_it_stops() -> None:
    gov = governor(
        (0.0, 0.0, 0.0),
        (1.0, 2.0, 1.0),  # something else used a whole core
        (2.0, 4.0, 2.0),  # still there: our one thread has its core, the neighbour its own
        (3.0, 5.1, 3.0),  # gone: our one thread and a little of the event loop
    )
    assert [gov.threads(now=t) for t in (0.0, 1.0, 2.0, 3.0)] == [2, 1, 1, 2]


def test_after_idle_the_decision_uses_the_idle_time_and_is_revised_sooner() -> None:
    gov = governor(
        (0.0, 0.0, 0.0),
        (10.0, 20.0, 0.0),  # idle 10 s while other work kept both cores busy
        (10.11, 20.02, 0.1),  # the other work has stopped: our one thread alone
        (10.6, 21.02, 1.1),  # and so on, at the usual interval
    )
    assert gov.threads(now=0.0) == 2
    gov.idle()
    assert gov.threads(now=10.0) == 1  # a neighbour was busy: no step at full threads first
    assert gov.threads(now=10.05) == 1  # within the short window after idling
    assert gov.threads(now=10.11) == 2  # revised after 0.1 s, not 0.5 s
    assert gov.threads(now=10.3) == 2  # the usual interval again: no reading yet
    assert gov.threads(now=10.6) == 2


def test_a_slow_step_is_measured_not_taken_for_idleness() -> None:
    # A collapsed step took 3 s, and other work had most of the cores meanwhile.
    gov = governor((0.0, 0.0, 0.0), (3.0, 6.0, 2.5))
    gov.threads(now=0.0)
    assert gov.threads(now=3.0) == 1


def test_never_below_one_thread_nor_above_the_maximum() -> None:
    gov = ThreadGovernor(4, read=Readings((0.0, 0.0, 0.0), (1.0, 8.0, 0.5)), cores=8, interval=0.5)
    gov.threads(now=0.0)
    assert gov.threads(now=1.0) == 1  # 7.5 cores of other work on 8
    gov = ThreadGovernor(4, read=Readings((0.0, 0.0, 0.0), (1.0, 4.0, 4.0)), cores=8)
    gov.threads(now=0.0)
    assert gov.threads(now=1.0) == 4


def test_between_readings_the_count_stands_and_a_failed_read_changes_nothing() -> None:
    gov = governor((0.0, 0.0, 0.0), (1.0, 2.0, 1.0))
    assert gov.threads(now=0.0) == 2
    assert gov.threads(now=0.2) == 2  # within the interval: no reading taken
    assert gov.threads(now=1.0) == 1
    assert gov.threads(now=2.0) == 1  # the reader has nothing more (no /proc): unchanged


def test_proc_reader_sees_a_busy_process_as_other_work() -> None:
    """Real /proc readings: a child spinning for a second shows up as about one core."""
    reader = ProcCpuTimes()
    before = reader()
    assert before is not None
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass",
        ]
    )
    child.wait()
    after = reader()
    assert after is not None
    others = (after.busy - after.ours) - (before.busy - before.ours)
    assert others >= 0.6  # one second of a core, in clock ticks, less start-up


def test_proc_reader_counts_the_named_compute_threads_as_ours() -> None:
    reader = ProcCpuTimes()
    named = threading.Event()
    done = threading.Event()

    def compute() -> None:
        name_this_thread(COMPUTE_THREAD_NAME)
        named.set()
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            pass
        done.set()

    before = reader()
    assert before is not None
    worker = threading.Thread(target=compute)
    worker.start()
    assert named.wait(10)

    # Poll, for as long as it computes, until the reader has counted some of its time (read
    # while it runs: a finished thread leaves /proc/self/task).
    seen = 0.0
    while seen <= 0.05 and not done.is_set():
        during = reader()
        assert during is not None
        if not done.is_set():  # so this reading was taken while it ran
            seen = during.ours - before.ours
        time.sleep(0.01)
    worker.join()
    assert seen > 0.05, "the reader never counted the named thread's time while it ran"


async def quiet_for_one_reading(cores: int, interval: float = 0.5, seconds: float = 10) -> None:
    """Wait until, over one governor interval, other work took less than the governor's
    tolerance of our CPUs (the spinner is gone); give up quietly after ``seconds``."""
    reader = ProcCpuTimes()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = reader()
        await asyncio.sleep(interval)
        after = reader()
        if before is None or after is None:
            return
        others = (after.busy - after.ours) - (before.busy - before.ours)
        if others / (after.at - before.at) < 0.5:
            return


@pytest.mark.engine
async def test_the_engine_gives_a_thread_to_a_busy_neighbour_and_takes_it_back() -> None:
    """The real engine on all cores, beside a process that spins on one of them."""
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("needs two cores")
    spec = default_spec()
    native = NativeThread(governor=ThreadGovernor(cores))
    engine = LlamaEngine(
        model_id=spec.id, gguf_path=spec.gguf_path(), context_length=512,
        output_token_limit=512, slots=1, batch_tokens=256, threads=cores, max_queued=1,
        native=native,
    )  # fmt: skip
    await engine.start()
    spinner = await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
    try:
        long_answer = GenerationRequest(
            (ChatMessage("user", "Write a long story about a ship."),),
            SamplingParams(temperature=0.0, top_p=1.0, top_k=1, max_output_tokens=96),
        )
        await run(engine, long_answer)
        assert engine.stats().extra["decode_threads"] == cores - 1
    finally:
        spinner.kill()
        await spinner.wait()
    try:
        # A reading's worth of quiet (what the governor's next reading will see), unless this
        # machine is busy with something else: then the assertion below allows for it.
        await quiet_for_one_reading(cores)
        await run(engine, long_answer)
        # Back to every core, unless something else on this machine is busy meanwhile.
        governor = native.governor
        assert governor is not None
        assert engine.stats().extra["decode_threads"] == cores or governor.others > 0.5
    finally:
        await engine.close()
        await asyncio.to_thread(native.close)
