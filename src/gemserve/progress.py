"""Progress of a long load at start (a model's weights): a tqdm bar on stderr when it is a
terminal, the bar `gemserve models pull` shows, and log lines at 25% steps otherwise; nothing
at all for a load done within a second, which the start-up line ("loaded in N s") covers.

llama.cpp calls the reporter from its loader for every tensor, hundreds of times a load: a call
reads the clock and compares, and draws only when a step is crossed or tqdm's own throttle
(ten redraws a second) lets it.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

log = logging.getLogger("gemserve.progress")

# Progress is shown once a load has run this long; a log line is written per step crossed.
DELAY_SECONDS = 1.0
LOG_STEP_PERCENT = 25


class LoadProgress:
    """Takes fractions from 0.0 to 1.0 for one load at a time: the first call starts the
    clock, 1.0 ends the load (the bar is cleared; a later call starts another load)."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        delay: float = DELAY_SECONDS,
        step_percent: int = LOG_STEP_PERCENT,
    ) -> None:
        self.label = label
        self._stream = stream
        self._clock = clock
        self._delay = delay
        self._step = step_percent
        self._started: float | None = None
        self._tty = False
        self._bar: Any = None  # tqdm, made once the delay has passed
        self._logged = 0  # the last step logged, in percent

    def __call__(self, fraction: float) -> None:
        now = self._clock()
        if self._started is None:
            self._started = now
            stream = self._stream or sys.stderr
            self._tty = stream.isatty()
            self._logged = 0
        percent = min(100, max(0, math.floor(fraction * 100 + 1e-6)))
        if self._bar is not None or now - self._started >= self._delay:
            if self._tty:
                self._draw(percent)
            else:
                self._log(percent)
        if percent >= 100:
            self.close()

    def close(self) -> None:
        """End the load: clear the bar, if one is shown; the next call starts a new load."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._started = None

    def _draw(self, percent: int) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]

            self._bar = tqdm(
                total=100,
                initial=percent,
                desc=self.label,
                unit="%",
                file=self._stream or sys.stderr,
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
            )
        elif percent > self._bar.n:
            self._bar.update(percent - self._bar.n)

    def _log(self, percent: int) -> None:
        reached = percent - percent % self._step
        if reached > self._logged:
            self._logged = reached
            log.info("%s: %d%%", self.label, reached)
