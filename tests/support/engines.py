"""One contract suite on both ``Engine`` implementations: a module opts in with
``live_server = on_both_engines()``, and its tests run against the session's gemserve on the
embedded llama.cpp engine and against the one whose default model is remote (llama-server on
the same bundled model), as ``test_x[embedded]`` and ``test_x[remote]``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.server import LiveServer

ENGINES = ("embedded", "remote")
# The session fixtures (tests/conftest.py) behind each parameter.
SERVER_FIXTURES = {"embedded": "embedded_server", "remote": "remote_live_server"}


def on_both_engines() -> Any:
    """A module-level ``live_server`` parametrized over the two engines (module scope, so a
    module's own fixtures built on it run once per engine)."""

    @pytest.fixture(name="live_server", scope="module", params=ENGINES)
    def live_server(request: pytest.FixtureRequest) -> LiveServer:
        server: LiveServer = request.getfixturevalue(SERVER_FIXTURES[request.param])
        return server

    return live_server


def skip_on_remote(request: pytest.FixtureRequest, reason: str) -> None:
    """Skip this test's ``remote`` run, saying why: only for what the upstream cannot do."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("live_server") == "remote":
        pytest.skip(f"remote engine (llama-server): {reason}")
