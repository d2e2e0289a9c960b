"""Fixtures of the contract suite: a tokenizer of the served model, for checking usage counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gemserve.engine.llama.native import LoadedModel
from tests.support.llama import default_spec
from tests.support.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> Iterator[Tokenizer]:
    model = LoadedModel(default_spec().gguf_path())
    yield Tokenizer(model)
    model.free()
