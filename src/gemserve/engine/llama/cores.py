"""How many threads the next decode step uses: the cores nobody else is using.

llama.cpp's CPU backend ends every operation of a graph at a barrier where all its threads
meet, and its OpenMP threads spin there. When another busy thread shares the cores, one of
ours is off its core at most barriers and the others spin through the time it needed:
measured on 2 cores (bench/bench_shared_cores.py), one busy loop at nice 19 took a 2-thread
decode from 67 tok/s to under 1, and llama-server likewise; one thread on the free core kept
30-40. So the engine watches, twice a second, how much CPU time something other than its
compute threads took on the cores it may run on, and gives up one thread per core taken:
between 1 and the configured count. A quiet machine keeps every thread.

"Its compute threads" are the native thread and the OpenMP workers it created, which inherit
its name (``gemserve-native``). Others include gemserve's own CPU work in other threads
(Whisper, PDF rendering, hashing), so the engine makes room for that too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("gemserve.engine")

COMPUTE_THREAD_NAME = "gemserve-native"  # at most 15 bytes: the kernel's limit
_PR_SET_NAME = 15


def name_this_thread(name: str = COMPUTE_THREAD_NAME) -> None:
    """Set the OS name of the calling thread; threads it creates (OpenMP's) inherit it."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative seconds at one instant: busy time of our CPUs, and of our compute threads."""

    at: float
    busy: float
    ours: float


def _ticks_per_second() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError):
        return 100


class ProcCpuTimes:
    """Reads /proc: per-CPU busy time (user, nice, system, irq, softirq; not idle, iowait or
    steal) of the CPUs this process may run on, and the run time of the threads named
    ``COMPUTE_THREAD_NAME`` (schedstat, nanoseconds)."""

    def __init__(self, cpus: frozenset[int] | None = None, proc: Path = Path("/proc")) -> None:
        self._cpus = cpus if cpus is not None else frozenset(os.sched_getaffinity(0))
        self._proc = proc
        self._tick = 1.0 / _ticks_per_second()

    @property
    def cores(self) -> int:
        return len(self._cpus)

    def __call__(self) -> CpuTimes | None:
        try:
            return CpuTimes(time.monotonic(), self._busy(), self._ours())
        except (OSError, ValueError):
            return None

    def _busy(self) -> float:
        total = 0
        for line in (self._proc / "stat").read_text().splitlines():
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *fields = line.split()
            if not name[3:].isdigit() or int(name[3:]) not in self._cpus:
                continue
            user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
            total += user + nice + system + irq + softirq
        return total * self._tick

    def _ours(self) -> float:
        total = 0
        for task in (self._proc / "self" / "task").iterdir():
            try:
                if (task / "comm").read_text().strip() != COMPUTE_THREAD_NAME:
                    continue
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # the thread ended between the listing and the read
        return total / 1e9


class ThreadGovernor:
    """Decides the thread count of each decode step; call :meth:`threads` before each.

    Every ``interval`` seconds it compares two readings: the cores other work used meanwhile
    (``others``) is the busy time of our CPUs less our compute threads' run time, over the
    interval. Past ``tolerance`` the engine uses ``cores - round(others)`` threads, within
    [1, maximum]. A reading that fails (no /proc) leaves the count where it is.
    """

    def __init__(
        self,
        maximum: int,
        *,
        read: Callable[[], CpuTimes | None] | None = None,
        cores: int | None = None,
        interval: float = 0.5,
        tolerance: float = 0.5,
        resume_interval: float = 0.1,
    ) -> None:
        if read is None:
            proc = ProcCpuTimes()
            read = proc
            cores = proc.cores if cores is None else cores
        self.maximum = maximum
        self._read = read
        self._cores = cores if cores is not None else maximum
        self._interval = interval
        self._resume_interval = resume_interval
        self._window = interval
        self._tolerance = tolerance
        self._last: CpuTimes | None = None
        self._resumed = False
        self.current = maximum
        self.others = 0.0  # cores other work used over the last interval

    def idle(self) -> None:
        """The engine has nothing to decode: the next reading starts afresh. (A slow step is
        not idleness: a collapsed one can take seconds, and must still be measured.)"""
        self._resumed = True

    def threads(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        last = self._last
        if last is not None and now - last.at < self._window:
            return self.current
        sample = self._read()
        if sample is None:
            return self.current
        if last is not None:
            span = sample.at - last.at
            if span > 0:
                used = (sample.busy - last.busy) - (sample.ours - last.ours)
                self.others = max(0.0, used / span)
                self._decide()
        # After idling, the decision rests on what ran while the engine slept: right when a
        # neighbour started meanwhile (deciding only after a step at full threads cost seconds:
        # a collapsed step is that long), stale when it has just stopped (a benchmark's other
        # servers between its rounds). So the next reading comes sooner.
        self._window = self._resume_interval if self._resumed else self._interval
        self._resumed = False
        self._last = sample
        return self.current

    def _decide(self) -> None:
        # Above the tolerance (the server's own event loop stays below it), round to cores.
        taken = math.floor(self.others + 0.5) if self.others > self._tolerance else 0
        wanted = max(1, min(self.maximum, self._cores - taken))
        if wanted != self.current:
            log.debug(
                "decode threads %d -> %d (other work used %.2f of %d cores)",
                self.current,
                wanted,
                self.others,
                self._cores,
            )
            self.current = wanted
