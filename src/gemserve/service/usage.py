"""Input token accounting by modality: image positions reported by the engine, and the text
the server derived from media (transcripts, document text), counted when it was made."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from gemserve.engine import Finished


@dataclass(frozen=True)
class InputAccounting:
    media_modalities: tuple[str, ...] = ()  # the modality of each image, in prompt order
    derived_tokens: tuple[tuple[str, int], ...] = ()  # (modality, tokens) of derived text

    def by_modality(self, finished: Finished) -> dict[str, int]:
        """Prompt tokens per modality; what is not media is text."""
        return self.split(finished.prompt_tokens, finished.media_tokens)

    def split(self, prompt_tokens: int, media_tokens: Sequence[int]) -> dict[str, int]:
        """``prompt_tokens`` per modality, given the positions each image or sound took."""
        counts: Counter[str] = Counter()
        for modality, tokens in zip(self.media_modalities, media_tokens, strict=False):
            counts[modality] += tokens
        for modality, tokens in self.derived_tokens:
            counts[modality] += tokens
        media = sum(counts.values())
        out = {"text": max(prompt_tokens - media, 0)}
        out.update((modality, n) for modality, n in counts.items() if n)
        return out
