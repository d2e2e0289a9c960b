"""``python -m tests.support.scripted_server --port N --data-dir D``: the real app (HTTP
layer, validation, store, files) over scripted engines, as a server process for tools that
need a URL (the fuzzer). Never evidence that generation works: tests/engine runs the real one."""

from __future__ import annotations

import argparse
from pathlib import Path
from unittest import mock

import uvicorn

from gemserve.api.header_deadline import header_deadline_protocol
from gemserve.app import create_app
from gemserve.config import ModelSpec, Settings
from gemserve.engine import Engine
from tests.support.inprocess import scripted_settings
from tests.support.scripted import ScriptedEngine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    settings = scripted_settings(args.data_dir, port=args.port)
    engines: dict[str, ScriptedEngine] = {}

    def factory(spec: ModelSpec, _settings: Settings) -> Engine:
        return engines.setdefault(
            spec.id, ScriptedEngine(model_id=spec.id, context_length=spec.context_length)
        )

    with mock.patch("gemserve.app.make_transcriber", return_value=None):
        app = create_app(settings, engine_factory=factory)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        http=header_deadline_protocol(settings.limits.header_read_timeout_seconds),
    )


if __name__ == "__main__":
    main()
