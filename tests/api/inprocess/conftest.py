"""The fast API tier: the app in-process over scripted engines (tests/support/inprocess.py).
``api`` is one app with the default settings; ``make_api`` builds apps with settings of a
test's own (limits, models, keys), each in a data directory of its own. ``records`` collects
gemserve's log records during a test."""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gemserve.logs import RequestContextFilter
from tests.support.inprocess import (
    InProcessApi,
    MakeApi,
    ScriptedTranscriber,
    scripted_settings,
    serve_in_process,
)
from tests.support.scripted import ScriptedEngine

DATABASE = "gemserve.db"  # what database_url_for names the SQLite file in a data directory


@pytest.fixture
async def make_api(tmp_path: Path, migrated_database: Path) -> AsyncIterator[MakeApi]:
    counter = itertools.count()
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            *,
            engines: Mapping[str, ScriptedEngine] | None = None,
            transcriber: ScriptedTranscriber | None = None,
            data_dir: Path | None = None,
            **settings: Any,
        ) -> InProcessApi:
            directory = data_dir or tmp_path / f"data-{next(counter)}"
            if not (directory / DATABASE).exists():
                # A copy of the session's migrated database: nothing to migrate at start.
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                shutil.copy2(migrated_database, directory / DATABASE)
            config = scripted_settings(directory, **settings)
            return await stack.enter_async_context(
                serve_in_process(config, engines, transcriber=transcriber)
            )

        yield make


@pytest.fixture
async def api(make_api: MakeApi) -> InProcessApi:
    return await make_api()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """The test's records of gemserve's loggers, through the filter the CLI puts on its
    handler (so each carries the request id and trace context)."""
    handler = Collect()
    handler.addFilter(RequestContextFilter())
    logger = logging.getLogger("gemserve")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
