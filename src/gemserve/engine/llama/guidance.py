"""Constrained sampling with llguidance: JSON Schemas enforced token by token.

llguidance compiles a schema into a matcher over the model's vocabulary and computes the set
of tokens that keep the output valid in about 20 µs for SmolLM2's 49,152 tokens (a decode
step is 6-15 ms). :class:`GuidedSampler` wraps the sampler the request would use anyway
(greedy or llama.cpp's chain): it first lets that sampler pick freely and keeps the token if
the matcher accepts it (the common case: a model writing JSON mostly writes valid JSON), and
only on a rejection masks the disallowed logits to -inf and picks again, as llama.cpp does
with its own grammars. Unsupported schema keywords are named by llguidance when the grammar is
validated, before admission.
"""

from __future__ import annotations

import ctypes
import json
import warnings
from collections.abc import Sequence
from typing import Any

import llama_cpp as llama
import llguidance
import numpy as np

from gemserve.engine.llama.sampling import GreedySampler, TokenSampler


class GuidedSampler:
    def __init__(self, inner: TokenSampler, tokenizer: Any, grammar: str, n_vocab: int) -> None:
        self._inner = inner
        self._matcher = llguidance.LLMatcher(tokenizer, grammar)
        if self._matcher.is_error():  # validated before admission; a bug if it happens here
            raise ValueError(self._matcher.get_error())
        self._n_vocab = n_vocab
        self._mask = np.full((n_vocab + 31) // 32, -1, dtype=np.int32)
        self.rejections = 0  # tokens the unconstrained pick got wrong (for measurements)

    def sample(self, ctx: ctypes.c_void_p, batch_index: int) -> int:
        pointer = llama.llama_get_logits_ith(ctx, batch_index)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        inner = self._inner
        if isinstance(inner, GreedySampler):
            # Greedy: pick, check, and mask only when the pick breaks the grammar.
            token = inner.pick(logits)
            if self._matcher.validate_tokens([token]) != 1:
                self.rejections += 1
                self._apply_mask(logits)
                token = int(logits.argmax())
            inner.accept(token)
        else:
            # The chain's draws and penalties advance as it samples: mask first, sample once.
            self._apply_mask(logits)
            token = inner.sample(ctx, batch_index)
        self._consume(token)
        return token

    def _apply_mask(self, logits: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        self._matcher.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        allowed = np.unpackbits(self._mask.view(np.uint8), bitorder="little")[: self._n_vocab]
        np.putmask(logits, allowed == 0, np.float32(-np.inf))

    def _consume(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise ValueError(f"llguidance refused token {token}: {self._matcher.get_error()}")

    def accept(self, token: int) -> None:
        self._inner.accept(token)
        self._consume(token)

    def allows(self, token: int) -> bool:
        return bool(self._matcher.validate_tokens([token]) == 1)

    def replay(self, tokens: Sequence[int]) -> bool:
        for token in tokens:
            if not self.allows(token):
                return False
            self._consume(token)
        return True

    def free(self) -> None:
        self._inner.free()


def validate(tokenizer: Any, grammar: str) -> str | None:
    """None if llguidance compiles ``grammar`` for this vocabulary, else its error."""
    error: str = llguidance.LLMatcher.validate_grammar(grammar, tokenizer)
    return error.strip() or None


def json_grammar(
    schema: str,
    *,
    leading_whitespace: bool,
    opening_tag: str | None,
    opening_token: int | None = None,
) -> str:
    """An llguidance grammar for a JSON Schema (as JSON text), optionally after whitespace,
    and optionally as the alternative to opening a thought (``opening_tag``, or
    ``opening_token`` where the tag is one special token, which no literal matches)."""
    body = f"%json {_compact(schema)}"
    if opening_tag is not None:
        literal = opening_tag.replace("\\", "\\\\").replace('"', '\\"')
        tag = f'"{literal}"' if opening_token is None else f"<[{opening_token}]>"
        lark = f"start: /[ \\t\\n\\r]*/ ({tag} | answer)\nanswer: {body}"
    elif leading_whitespace:
        lark = f"start: /[ \\t\\n\\r]*/ {body}"
    else:
        lark = f"start: {body}"
    grammar: str = llguidance.LLMatcher.grammar_from_lark(lark)
    return grammar


# JSON written on one line, with the separators json.dumps uses. With free whitespace a
# small model sampled at temperature 0.8 spent its whole budget on blank lines inside the
# object (the grammar allows them, so nothing stops it).
_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def _compact(schema: str) -> str:
    parsed = json.loads(schema)
    if isinstance(parsed, dict):
        guidance = parsed.get("x-guidance")
        parsed["x-guidance"] = {**_LAYOUT, **(guidance if isinstance(guidance, dict) else {})}
    return json.dumps(parsed)


def tokenizer_for(vocab: Any) -> Any:
    """The llguidance view of a llama.cpp vocabulary (about 0.2 s: build once per model)."""
    import llguidance.llamacpp

    with warnings.catch_warnings():
        # Its loop calls llama_token_get_attr, which llama-cpp-python marks deprecated, once
        # per token of the vocabulary.
        warnings.simplefilter("ignore", DeprecationWarning)
        return llguidance.llamacpp.lltokenizer_from_vocab(vocab)
