"""The installed engine decodes a batch in a child process: a build that traps on this CPU
fails here with the signal's name and the CPU's flags, instead of killing pytest.

(tests/conftest.py runs the same check once before the slow tier's tests load a model.)
"""

from __future__ import annotations

import signal

import pytest

from gemserve.engine.llama.selfcheck import FAULT_ENV
from tests.support.llama import cpu_flags, engine_child_check

# Each test loads the bundled model and decodes with it, in a child process.
pytestmark = pytest.mark.engine


def test_the_installed_engine_decodes_a_batch_in_a_child_process() -> None:
    result = engine_child_check()
    if result.returncode < 0:
        pytest.fail(
            f"the installed llama.cpp died by {signal.Signals(-result.returncode).name} "
            f"decoding one batch on this CPU; CPU flags: {cpu_flags()}\n{result.stderr}"
        )
    assert result.returncode == 0, result.stderr
    assert "4 sequences" in result.stdout


def test_a_child_that_dies_by_a_signal_is_named_with_its_stacks() -> None:
    # As a trapping kernel would: SIGILL on the native thread during the start-up decode.
    result = engine_child_check("SIGILL")
    assert result.returncode == -signal.SIGILL
    # faulthandler wrote the Python stacks of every thread, the native thread's included.
    assert "Fatal Python error: Illegal instruction" in result.stderr
    assert "native_thread.py" in result.stderr


def test_a_start_up_decode_error_fails_the_check() -> None:
    result = engine_child_check("error")
    assert result.returncode == 1
    assert f"forced by {FAULT_ENV}=error" in result.stderr
