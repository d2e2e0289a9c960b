"""Loading the bundled model reports its progress through llama.cpp's callback: fractions that
only grow, ending at 1.0; a reporter that fails never stops the load."""

from __future__ import annotations

import itertools
import logging

import pytest

from gemserve.engine.llama import LlamaEngine
from gemserve.engine.llama.native import LoadedModel
from tests.support.llama import default_spec

pytestmark = pytest.mark.engine


def assert_a_whole_load(fractions: list[float]) -> None:
    assert fractions[0] == 0.0
    assert fractions[-1] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(fractions)), fractions
    assert len(set(fractions)) > 3  # tensor by tensor, not only the ends
    assert fractions.count(1.0) == 1


def test_loading_reports_growing_fractions_ending_at_one() -> None:
    fractions: list[float] = []
    model = LoadedModel(default_spec().gguf_path(), progress=fractions.append)
    try:
        assert_a_whole_load(fractions)
        assert model.n_vocab > 0
    finally:
        model.free()


def test_a_failing_reporter_never_stops_the_load(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    def broken(fraction: float) -> None:
        calls.append(fraction)
        raise RuntimeError("the terminal went away")

    with caplog.at_level(logging.ERROR, logger="gemserve.llama"):
        model = LoadedModel(default_spec().gguf_path(), progress=broken)
    try:
        assert model.n_vocab > 0
        assert calls == [0.0]  # not called again once it failed
        (record,) = [r for r in caplog.records if "load progress" in r.getMessage()]
        assert record.exc_info is not None
    finally:
        model.free()


async def test_the_engine_hands_its_reporter_to_the_load() -> None:
    spec = default_spec()
    fractions: list[float] = []
    engine = LlamaEngine(
        model_id=spec.id,
        gguf_path=spec.gguf_path(),
        context_length=256,
        output_token_limit=64,
        slots=1,
        batch_tokens=64,
        threads=2,
        max_queued=4,
        load_progress=fractions.append,
    )
    try:
        await engine.start()
        assert engine.ready
    finally:
        await engine.close()
    assert_a_whole_load(fractions)
