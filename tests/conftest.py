"""Shared fixtures: the real engine on the bundled model, a live gemserve process, the tiny
random models; and the markers that split the suite into tiers.

``-m "not slow"`` (scripts/test-fast) is the fast tier: it never starts a `gemserve serve`
process nor loads a model. A test is ``slow`` when it is marked ``engine``, ``contract`` or
``live``, or uses a fixture that starts a server or loads a model (``SLOW_FIXTURES``); a test
that uses a live server is also ``live``. Helpers live in tests/support.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gemserve.engine.llama import LlamaEngine
from gemserve.store import SqlStore, database_url_for
from tests.support.llama import (
    TinyAudioLm,
    TinyVlm,
    cpu_flags,
    default_spec,
    engine_child_check,
    load_tiny_audio_lm_maker,
    load_tiny_vlm_maker,
    make_engine,
)
from tests.support.llama_cpp_server import (
    LlamaCppServer,
    start_llama_cpp_server,
    stop_llama_cpp_server,
)
from tests.support.llama_server import LlamaServer, start_llama_server, stop_llama_server
from tests.support.remote_server import bundled_twin, start_remote_server
from tests.support.server import LiveServer, start_server, stop_server

if TYPE_CHECKING:
    from tests.support.special_tokens import SpecialTokenModel

SLOW_MARKERS = ("engine", "contract", "live")
# Fixtures that start a `gemserve serve` process (a module whose own fixtures start one marks
# itself `live`, as tests/api/test_files.py does), and fixtures that load a model in the test
# process: llama.cpp, its vocabulary, Whisper, or the tiny random models made for llama.cpp.
LIVE_FIXTURES = frozenset(
    {"live_server", "embedded_server", "remote_live_server", "limited_server", "vlm_server"}
)
SLOW_FIXTURES = LIVE_FIXTURES | {
    "engine",
    "llama_server",
    "llama_cpp_server",
    "tokenizer",
    "tiny_vlm",
    "tiny_audio_lm",
    "special_token_model",
    "vlm",
    "hearing",
    "vocab",
    "transcriber",
}


def _is_slow(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & SLOW_FIXTURES) or any(
        item.get_closest_marker(name) is not None for name in SLOW_MARKERS
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Before ``-m`` selects: mark the slow tier (and the live one) from markers and fixtures."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & LIVE_FIXTURES and item.get_closest_marker("live") is None:
            item.add_marker(pytest.mark.live)
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before any selected test decodes (in this process or a server it starts): a build that
    dies on this CPU ends the run with the signal and the CPU's flags, not with pytest killed
    mid-test. The fast tier loads no model, and skips the check."""
    if not any(item.get_closest_marker("slow") for item in session.items):
        return
    result = engine_child_check()
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        pytest.exit(
            f"the installed llama.cpp died by {name} decoding one batch on this CPU; rebuild "
            f"it (scripts/setup probes the CPU). CPU flags: {cpu_flags()}\n{result.stderr}",
            returncode=3,
        )


@pytest.fixture(scope="session")
async def engine() -> AsyncIterator[LlamaEngine]:
    """The real llama.cpp engine on SmolLM2-135M, 4 slots, shared by the engine tests."""
    llama_engine = make_engine()
    await llama_engine.start()
    yield llama_engine
    await llama_engine.close()


@pytest.fixture(scope="session")
async def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database file migrated to the newest schema once per session. Tests that
    need a fresh store start one on a copy (nothing left to migrate: half the set-up time of
    an in-process app); tests/store runs the migrations themselves."""
    directory = tmp_path_factory.mktemp("migrated")
    store = SqlStore(database_url_for(None, directory))
    await store.start()
    await store.close()
    (database,) = directory.glob("*.db")
    return database


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real `gemserve serve` process on a free loopback port, with the default model."""
    server = start_server(tmp_path_factory.mktemp("live"))
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def live_server(embedded_server: LiveServer) -> LiveServer:
    """The embedded server; a module that runs on both engines overrides this name
    (tests/support/engines.py)."""
    return embedded_server


@pytest.fixture(scope="session")
def remote_live_server(
    llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A `gemserve serve` whose default model is remote: the bundled model's entry, served by
    the session's llama-server (the same GGUF, so answers compare with `embedded_server`)."""
    server = start_remote_server(
        tmp_path_factory.mktemp("remote-live"),
        bundled_twin(llama_server.url, timeouts={"health_interval": 1}),
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama.cpp's own server on the bundled model (built once, cached in bench/out): the
    real OpenAI-compatible upstream of the remote engine's tests."""
    server = start_llama_server(tmp_path_factory.mktemp("llama-server"))
    yield server
    stop_llama_server(server)


@pytest.fixture(scope="session")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    """llama-cpp-python's own OpenAI-compatible server on the bundled model: the second real
    upstream of the remote engine's tests, another implementation than llama-server."""
    server = start_llama_cpp_server(tmp_path_factory.mktemp("llama-cpp-python"))
    yield server
    stop_llama_cpp_server(server)


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> TinyVlm:
    """Written once per session (milliseconds); its answers are noise, its plumbing is real."""
    gguf, mmproj = load_tiny_vlm_maker()(tmp_path_factory.mktemp("tiny-vlm"), seed=0)
    return TinyVlm(gguf, mmproj)


@pytest.fixture(scope="session")
def special_token_model(tmp_path_factory: pytest.TempPathFactory) -> SpecialTokenModel:
    """The bundled model with tool-call markers and thought tags as special tokens, written
    once per session (about a second)."""
    from tests.support.special_tokens import write_special_token_model  # imports gguf

    target = tmp_path_factory.mktemp("special-tokens") / "special.gguf"
    return write_special_token_model(default_spec().gguf_path(), target)


@pytest.fixture(scope="session")
def tiny_audio_lm(tmp_path_factory: pytest.TempPathFactory) -> TinyAudioLm:
    gguf, mmproj = load_tiny_audio_lm_maker()(tmp_path_factory.mktemp("tiny-audio"), seed=0)
    return TinyAudioLm(gguf, mmproj)
