"""The load-progress reporter (gemserve/progress.py) on a fake clock: nothing for a load done
within a second; after that a bar on a terminal, log lines at 25% steps elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from gemserve.progress import LoadProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def feed(progress: LoadProgress, clock: FakeClock, steps: list[tuple[float, float]]) -> None:
    """``steps``: (seconds since the load began, fraction)."""
    start = clock.now
    for seconds, fraction in steps:
        clock.now = start + seconds
        progress(fraction)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gemserve.progress"]


def test_a_fast_load_shows_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock, terminal, pipe = FakeClock(), Terminal(), Pipe()
    with caplog.at_level(logging.INFO, logger="gemserve.progress"):
        for stream in (terminal, pipe):
            progress = LoadProgress("loading m", stream=stream, clock=clock)
            feed(progress, clock, [(0.0, 0.0), (0.3, 0.5), (0.9, 0.99), (0.95, 1.0)])
    assert terminal.getvalue() == ""
    assert lines(caplog) == []


def test_a_slow_load_logs_each_step_once_when_stderr_is_not_a_terminal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, pipe = FakeClock(), Pipe()
    progress = LoadProgress("loading m", stream=pipe, clock=clock)
    steps = [(0.0, 0.0), (0.5, 0.3), (1.2, 0.6), (1.3, 0.61), (2.0, 0.74), (2.5, 0.75)]
    with caplog.at_level(logging.INFO, logger="gemserve.progress"):
        feed(progress, clock, [*steps, (3.0, 0.9), (3.5, 1.0)])
    # 25% was crossed before the first second: nothing then; 50% is the first line.
    assert lines(caplog) == ["loading m: 50%", "loading m: 75%", "loading m: 100%"]
    assert pipe.getvalue() == ""  # lines go to the log, never raw to the stream


def test_a_slow_load_draws_a_bar_on_a_terminal_and_clears_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, terminal = FakeClock(), Terminal()
    progress = LoadProgress("loading m", stream=terminal, clock=clock)
    with caplog.at_level(logging.INFO, logger="gemserve.progress"):
        feed(progress, clock, [(0.0, 0.0), (0.5, 0.2)])
        assert terminal.getvalue() == ""  # within the first second
        feed(progress, clock, [(1.5, 0.4)])
        drawn = terminal.getvalue()
        assert "loading m:  40%|" in drawn
        feed(progress, clock, [(2.0, 0.8), (2.5, 1.0)])
    assert lines(caplog) == []  # a bar instead of log lines
    assert terminal.getvalue().endswith("\r")  # tqdm's leave=False clears the line
    assert progress._bar is None


def test_the_next_load_starts_its_own_clock(caplog: pytest.LogCaptureFixture) -> None:
    clock, pipe = FakeClock(), Pipe()
    progress = LoadProgress("loading m", stream=pipe, clock=clock)
    with caplog.at_level(logging.INFO, logger="gemserve.progress"):
        feed(progress, clock, [(0.0, 0.0), (2.0, 1.0)])
        assert lines(caplog) == ["loading m: 100%"]
        caplog.clear()
        feed(progress, clock, [(0.0, 0.0), (0.5, 1.0)])  # quick this time
    assert lines(caplog) == []


def test_fractions_out_of_range_are_clamped(caplog: pytest.LogCaptureFixture) -> None:
    clock, pipe = FakeClock(), Pipe()
    progress = LoadProgress("loading m", stream=pipe, clock=clock)
    with caplog.at_level(logging.INFO, logger="gemserve.progress"):
        feed(progress, clock, [(0.0, -0.5), (1.5, 0.5), (2.0, 1.7)])
    assert lines(caplog) == ["loading m: 50%", "loading m: 100%"]
