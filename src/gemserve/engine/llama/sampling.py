"""Token samplers for the scheduler: llama.cpp's sampler chain, and a greedy fast path.

At temperature 0 the chain is penalties + greedy. llama.cpp's penalties sampler looks up
every logit of the vocabulary in a hash map: about 0.3 ms per sequence per step for
SmolLM2's 49,152 tokens, which at 8 sequences is several percent of a decode step. Only the
tokens in the penalty window can change, so :class:`GreedySampler` adjusts those few logits
in place, with the same float32 arithmetic, and takes the first maximum as llama.cpp does.
It picks the same token as the chain (``tests/engine/llama/test_sampling.py`` checks this
against the chain itself); anything that is not plain greedy uses the chain.

A sequence's sampler is rebuilt when its constraint's grammar switches on or off mid-sequence
(``output.Gate``): the new one takes the recent tokens (``history``) into its penalties, so the
switch changes nothing but the grammar, and plain greedy decoding keeps the fast path whenever
no grammar is on.
"""

from __future__ import annotations

import ctypes
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import llama_cpp as llama
import numpy as np

from gemserve.engine.base import SamplingParams

# Tokens of the answer so far that the penalties look at (llama.cpp's penalty_last_n).
PENALTY_WINDOW = 256


@dataclass(frozen=True, slots=True)
class Grammar:
    """GBNF text and the rule the grammar starts from (llama.cpp's grammar sampler), or an
    llguidance grammar (``syntax="llguidance"``: JSON Schemas, which llama.cpp's converter
    would enforce only in part)."""

    text: str
    root: str = "root"
    syntax: Literal["gbnf", "llguidance"] = "gbnf"


class TokenSampler(Protocol):
    def sample(self, ctx: ctypes.c_void_p, batch_index: int) -> int:
        """The next token from the logits of batch entry ``batch_index``."""
        ...

    def accept(self, token: int) -> None:
        """Record a token the engine wrote itself (it was not sampled)."""
        ...

    def allows(self, token: int) -> bool:
        """Whether the grammar, if any, accepts ``token`` next."""
        ...

    def replay(self, tokens: Sequence[int]) -> bool:
        """The grammar takes text generated before it switched on (``tokens`` spell it; the
        penalties saw the real tokens). False at the first token it rejects."""
        ...

    def free(self) -> None: ...


def make_sampler(
    sampling: SamplingParams,
    grammar: Grammar | None,
    vocab: Any,
    n_vocab: int,
    history: Sequence[int] = (),
    guidance: Callable[[], Any] | None = None,
) -> TokenSampler:
    """``history``: the tokens generated so far (the last ``PENALTY_WINDOW`` count), for a
    sampler that replaces another mid-sequence. ``guidance`` gives the model's llguidance
    tokenizer, for an llguidance grammar."""
    if grammar is not None and grammar.syntax == "llguidance":
        from gemserve.engine.llama.guidance import GuidedSampler

        if guidance is None:
            raise ValueError("an llguidance grammar needs the model's llguidance tokenizer")
        inner = make_sampler(sampling, None, vocab, n_vocab, history)
        return GuidedSampler(inner, guidance(), grammar.text, n_vocab)
    if sampling.temperature <= 0.0 and grammar is None:
        sampler = GreedySampler(
            n_vocab,
            repeat=sampling.repeat_penalty,
            frequency=sampling.frequency_penalty,
            presence=sampling.presence_penalty,
        )
        for token in history[-PENALTY_WINDOW:]:
            sampler.accept(token)
        return sampler
    return ChainSampler(sampling, grammar, vocab, n_vocab, history)


class GreedySampler:
    """llama.cpp's ``penalties`` then ``greedy``, on the few logits the penalties touch."""

    def __init__(
        self,
        n_vocab: int,
        *,
        repeat: float = 1.0,
        frequency: float = 0.0,
        presence: float = 0.0,
        window: int = PENALTY_WINDOW,
    ) -> None:
        self._n_vocab = n_vocab
        self._repeat = np.float32(repeat)
        self._frequency = np.float32(frequency)
        self._presence = np.float32(presence)
        self._penalised = window > 0 and (repeat != 1.0 or frequency != 0.0 or presence != 0.0)
        self._window: deque[int] = deque(maxlen=window if window > 0 else 1)
        self._counts: dict[int, int] = {}

    def sample(self, ctx: ctypes.c_void_p, batch_index: int) -> int:
        pointer = llama.llama_get_logits_ith(ctx, batch_index)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        token = self.pick(logits)
        self.accept(token)
        return token

    def pick(self, logits: np.ndarray[Any, np.dtype[np.float32]]) -> int:
        """The greedy token after the penalties. Changes the penalised entries of ``logits``
        (llama.cpp's own output buffer, which nothing reads after sampling)."""
        if self._penalised and self._counts:
            ids = np.fromiter(self._counts, dtype=np.intp, count=len(self._counts))
            values = logits[ids]
            values = np.where(values <= 0, values * self._repeat, values / self._repeat)
            if self._frequency or self._presence:
                counts = np.fromiter(
                    self._counts.values(), dtype=np.float32, count=len(self._counts)
                )
                # float(count) * freq + float(count > 0) * present, and every count is > 0
                values = values - (counts * self._frequency + self._presence)
            logits[ids] = values
        return int(logits.argmax())  # the first maximum, as llama.cpp's greedy sampler

    def accept(self, token: int) -> None:
        if not self._penalised:
            return
        window = self._window
        if len(window) == window.maxlen:
            oldest = window[0]
            left = self._counts[oldest] - 1
            if left:
                self._counts[oldest] = left
            else:
                del self._counts[oldest]
        window.append(token)
        self._counts[token] = self._counts.get(token, 0) + 1

    def allows(self, token: int) -> bool:
        return True

    def replay(self, tokens: Sequence[int]) -> bool:
        return True

    def free(self) -> None:
        pass


class ChainSampler:
    """A llama.cpp sampler chain: [grammar,] [penalties,] then greedy or top-k/top-p/temp/dist."""

    def __init__(
        self,
        sampling: SamplingParams,
        grammar: Grammar | None,
        vocab: Any,
        n_vocab: int,
        history: Sequence[int] = (),
    ) -> None:
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        self._chain: ctypes.c_void_p | None = chain
        self._grammar: ctypes.c_void_p | None = None
        if grammar is not None:
            sampler = llama.llama_sampler_init_grammar(
                vocab, grammar.text.encode(), grammar.root.encode()
            )
            if not sampler:  # validated before admission; a bug if it happens here
                llama.llama_sampler_free(chain)
                raise ValueError("invalid grammar")
            llama.llama_sampler_chain_add(chain, sampler)
            self._grammar = llama.llama_sampler_chain_get(chain, 0)
        if sampling.presence_penalty or sampling.frequency_penalty or sampling.repeat_penalty != 1:
            penalties = llama.llama_sampler_init_penalties(
                n_vocab,
                PENALTY_WINDOW,
                sampling.repeat_penalty,
                sampling.frequency_penalty,
                sampling.presence_penalty,
            )
            llama.llama_sampler_chain_add(chain, penalties)
            for token in history[-PENALTY_WINDOW:]:
                llama.llama_sampler_accept(penalties, token)
        if sampling.temperature <= 0.0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
            return
        if sampling.top_k > 0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_k(sampling.top_k))
        if sampling.top_p < 1.0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(sampling.top_p, 1))
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(sampling.temperature))
        # A sampler that replaces another mid-sequence does not replay the same random draws.
        seed = (
            llama.LLAMA_DEFAULT_SEED
            if sampling.seed is None
            else (sampling.seed + len(history)) & 0xFFFFFFFF
        )
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed))

    def sample(self, ctx: ctypes.c_void_p, batch_index: int) -> int:
        token: int = llama.llama_sampler_sample(self._chain, ctx, batch_index)
        return token

    def accept(self, token: int) -> None:
        llama.llama_sampler_accept(self._chain, token)

    def allows(self, token: int) -> bool:
        if self._grammar is None:
            return True
        candidate = (llama.llama_token_data * 1)(llama.llama_token_data(token, 0.0, 0.0))
        array = llama.llama_token_data_array(candidate, 1, -1, False)
        llama.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return bool(candidate[0].logit != float("-inf"))

    def replay(self, tokens: Sequence[int]) -> bool:
        grammar = self._grammar
        if grammar is None:
            return True
        for token in tokens:
            # llama.cpp aborts the process on accepting a token its grammar rejects: ask first.
            if not self.allows(token):
                return False
            llama.llama_sampler_accept(grammar, token)
        return True

    def free(self) -> None:
        if self._chain is not None:
            llama.llama_sampler_free(self._chain)
            self._chain = None
            self._grammar = None
