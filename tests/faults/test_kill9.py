"""kill -9 under load, then restart, three times, on SQLite and on PostgreSQL: interrupted
interactions are ``failed`` ("stopped"), finished ones byte-identical, the store whole
(tests/support/faults.py; bench/bench_faults.py runs twenty)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.faults import kill_cycles
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.live


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_kill_9_under_load_three_times(tmp_path: Path, store: str) -> None:
    if store == "postgres":
        with fresh_database() as url:
            report = kill_cycles(tmp_path, 3, database_url=url, seed=3)
    else:
        report = kill_cycles(tmp_path, 3, seed=3)
    assert report.kills == 3
    assert not report.problems, "\n".join(report.problems)
    # The load did run: something finished and something was cut short across the kills.
    assert report.counts["finished: byte-identical"] > 0, report.counts
