"""What a turn yields besides the engine's own text and thought deltas: the end of a thought
with its signature, and the end of the turn with its usage. Every surface folds these into
its own wire format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gemserve.engine import FinishReason, TextDelta, ThoughtDelta, TokenLogprob


@dataclass(frozen=True, slots=True)
class ThoughtEnd:
    """The thought is complete; ``signature`` carries it back in a later request."""

    signature: str


@dataclass(frozen=True, slots=True)
class CallStart:
    """The model began a function call; ``index`` counts the turn's calls from 0."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class CallArguments:
    """The next piece of the call's arguments (JSON text; the pieces join to the object)."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class CallEnd:
    index: int
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TurnUsage:
    input_tokens: int
    output_tokens: int  # the answer's tokens (thought tokens are counted apart)
    thought_tokens: int = 0
    cached_tokens: int = 0
    input_by_modality: dict[str, int] = field(default_factory=dict)
    # The counts are an estimate (an upstream that cannot count): surfaces flag it.
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class TurnDone:
    reason: FinishReason
    usage: TurnUsage
    error: str | None = None  # an engine failure, for the log; clients get a generic message


TurnEvent = (
    ThoughtDelta
    | TextDelta
    | TokenLogprob
    | ThoughtEnd
    | CallStart
    | CallArguments
    | CallEnd
    | TurnDone
)
