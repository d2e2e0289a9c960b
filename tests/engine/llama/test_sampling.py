"""The greedy fast path picks exactly the token llama.cpp's penalties + greedy chain picks."""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Iterator
from typing import Any

import llama_cpp as llama
import numpy as np
import pytest

from gemserve.engine.base import SamplingParams
from gemserve.engine.llama import LlamaEngine, scheduler
from gemserve.engine.llama.sampling import (
    PENALTY_WINDOW,
    ChainSampler,
    Grammar,
    GreedySampler,
    make_sampler,
)
from tests.support.generation import GREEDY, QUESTIONS, request, run
from tests.support.llama import default_spec

N_VOCAB = 2000
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


def chain_pick(chain: Any, logits: np.ndarray[Any, Any]) -> int:
    """llama.cpp's own answer: apply the chain to the full candidate array."""
    data = np.zeros(len(logits), dtype=TOKEN_DATA)
    data["id"] = np.arange(len(logits))
    data["logit"] = logits
    array = llama.llama_token_data_array(
        data.ctypes.data_as(ctypes.POINTER(llama.llama_token_data)), len(logits), -1, False
    )
    llama.llama_sampler_apply(chain, ctypes.byref(array))
    return int(data["id"][array.selected])


def make_chain(repeat: float, frequency: float, presence: float) -> Any:
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    llama.llama_sampler_chain_add(
        chain,
        llama.llama_sampler_init_penalties(N_VOCAB, PENALTY_WINDOW, repeat, frequency, presence),
    )
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
    return chain


@pytest.mark.parametrize(
    ("repeat", "frequency", "presence"),
    [(1.15, 0.0, 0.0), (1.0, 0.5, 0.0), (1.0, 0.0, 0.7), (1.3, 0.25, 0.4), (1.0, 0.0, 0.0)],
)
def test_greedy_fast_path_matches_the_llama_cpp_chain(
    repeat: float, frequency: float, presence: float
) -> None:
    rng = np.random.default_rng(7)
    chain = make_chain(repeat, frequency, presence)
    fast = GreedySampler(N_VOCAB, repeat=repeat, frequency=frequency, presence=presence)
    disagreements = 0
    penalty_decided = 0
    try:
        # 600 steps: the 256-token window fills and slides. Tokens come from a narrow range so
        # they repeat, and the logits are rounded so ties occur (the first maximum wins).
        for _ in range(600):
            logits = np.round(rng.normal(0, 2, N_VOCAB), 1).astype(np.float32)
            hot = rng.integers(0, 60, 8)
            logits[hot] += 6  # recent tokens compete for the maximum, as in real text
            expected = chain_pick(chain, logits)
            got = fast.pick(logits.copy())
            disagreements += got != expected
            penalty_decided += expected != int(logits.argmax())
            token = int(rng.integers(0, 60)) if rng.random() < 0.5 else expected
            llama.llama_sampler_accept(chain, token)
            fast.accept(token)
    finally:
        llama.llama_sampler_free(chain)
    assert disagreements == 0
    if (repeat, frequency, presence) != (1.0, 0.0, 0.0):
        assert penalty_decided > 20  # the penalties really changed the choice, often


def test_only_plain_greedy_takes_the_fast_path(vocab: Any) -> None:
    def params(**changes: Any) -> SamplingParams:
        base: dict[str, Any] = {
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": 0,
            "max_output_tokens": 8,
            "repeat_penalty": 1.15,
        }
        return SamplingParams(**{**base, **changes})

    assert isinstance(make_sampler(params(), None, None, N_VOCAB), GreedySampler)
    for sampler in (
        make_sampler(params(temperature=0.7), None, None, N_VOCAB),
        make_sampler(params(), Grammar('root ::= "yes"'), vocab, N_VOCAB),
    ):
        assert isinstance(sampler, ChainSampler)
        sampler.free()


@pytest.fixture
def vocab() -> Iterator[Any]:
    """The bundled model's vocabulary alone (a grammar sampler needs one)."""
    params = llama.llama_model_default_params()
    params.vocab_only = True
    model = llama.llama_model_load_from_file(str(default_spec().gguf_path()).encode(), params)
    assert model
    yield llama.llama_model_get_vocab(model)
    llama.llama_model_free(model)


@pytest.mark.engine
async def test_real_model_greedy_text_is_the_chains_text(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the real model, with repeat and presence/frequency penalties, over 64 tokens."""
    samplings = [
        GREEDY,
        dataclasses.replace(GREEDY, presence_penalty=0.6, frequency_penalty=0.3),
    ]
    questions = [q for q, _ in QUESTIONS[:3]] + ["Write a long story about a dragon."]
    fast = [[await run(engine, request(q, s)) for q in questions] for s in samplings]
    monkeypatch.setattr(
        scheduler,
        "make_sampler",
        lambda sampling, grammar, vocab, n, history=(), **_: ChainSampler(
            sampling, grammar, vocab, n, history
        ),
    )
    chain = [[await run(engine, request(q, s)) for q in questions] for s in samplings]
    assert [[t for t, _ in row] for row in fast] == [[t for t, _ in row] for row in chain]
    assert sum(f.output_tokens for row in fast for _, f in row) > 150
