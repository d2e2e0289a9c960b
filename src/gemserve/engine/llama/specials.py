"""Special tokens whose text a sequence's output must read: format markers and thought tags.

The engine renders a generated token as llama.cpp's piece without special text, so an
end-of-turn or other control token adds nothing to the answer. But in many GGUFs a tool-call
marker (``[TOOL_CALLS]``, ``[ARGS]``, ``<|python_tag|>``) or a thought tag (``</think>``) is
one control token, and then the stages that read the output need its text: the call parser
to find the call, a lazy grammar's trigger to fire, the thinking parser to close the thought
(llama.cpp's server does the same with its "preserved tokens"). The parsers consume the
markers, so none reaches the answer text. The other direction too: text already generated,
replayed into a grammar that switched on mid-sequence, is tokenized with these markers as
their tokens, because the grammar names them by id (``tools/lark.Markers``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from gemserve.engine.llama.native import LoadedModel


@dataclass(frozen=True, slots=True)
class ShownTokens:
    """One sequence's special tokens that are read as their text."""

    tokens: Mapping[str, int] = field(default_factory=dict)  # text → token
    pieces: Mapping[int, bytes] = field(default_factory=dict)  # token → the text's bytes
    _split: re.Pattern[str] | None = None

    @classmethod
    def of(cls, tokens: Mapping[str, int]) -> ShownTokens:
        if not tokens:
            return NOTHING_SHOWN
        # Longest first: a marker that starts another (<tool_call> in </tool_call>) loses.
        texts = sorted(tokens, key=len, reverse=True)
        split = re.compile("(" + "|".join(re.escape(t) for t in texts) + ")")
        return cls(dict(tokens), {token: text.encode() for text, token in tokens.items()}, split)

    def tokenize(self, model: LoadedModel, text: str) -> list[int]:
        """Generated text as tokens: each marker as its token, the rest as ordinary text (as
        the model writes it, not parsed for specials)."""
        if self._split is None:
            return model.tokenize(text, add_special=False, parse_special=False)
        out: list[int] = []
        for i, part in enumerate(self._split.split(text)):
            if i % 2:
                out.append(self.tokens[part])
            elif part:
                out += model.tokenize(part, add_special=False, parse_special=False)
        return out


NOTHING_SHOWN = ShownTokens()


def special_tokens(model: LoadedModel, texts: tuple[str, ...]) -> dict[str, int]:
    """Which of ``texts`` the vocabulary has as one special token, and that token."""
    found = {text: model.special_token(text) for text in texts if text}
    return {text: token for text, token in found.items() if token is not None}
