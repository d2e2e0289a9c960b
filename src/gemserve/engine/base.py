"""The one Engine interface that the service layer sees.

An engine serves one model. ``generate`` validates and admits a request (errors such as a
prompt longer than the context surface here, before any response is sent), then returns a
:class:`GenerationStream`: an async iterator of :data:`EngineEvent` that ends with exactly one
:class:`Finished`. Closing or cancelling the stream frees the request's resources.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # numpy is not needed to import the engine package (scripts/setup does)
    import numpy as np
    import numpy.typing as npt


Role = Literal["system", "user", "assistant", "tool"]

# Where an image or a sound sits in a message's text. Callers remove it from any text they
# did not write.
MEDIA_PLACEHOLDER = "<|gemserve:media|>"


def without_media_placeholder(text: str) -> str:
    """Text from a client or a decoder: it must not be able to place an image."""
    return text.replace(MEDIA_PLACEHOLDER, "")


@dataclass(frozen=True, slots=True)
class ImageInput:
    """Decoded pixels for a vision model."""

    width: int
    height: int
    rgb: bytes  # width * height * 3, row-major
    digest: str  # identifies the pixels (prompt caching)


@dataclass(frozen=True, slots=True)
class AudioInput:
    """Decoded sound for a model with an audio projector."""

    samples: bytes  # mono float32 (native byte order) at ``sample_rate``
    sample_rate: int
    digest: str  # identifies the samples (prompt caching)


MediaInput = ImageInput | AudioInput


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made earlier in the conversation. ``arguments``: a JSON object's text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    text: str
    # One per MEDIA_PLACEHOLDER in ``text``, in order.
    media: tuple[MediaInput, ...] = ()
    # An assistant message's calls, after its text.
    tool_calls: tuple[ToolCall, ...] = ()
    # A "tool" message answers one call: ``text`` is the result (JSON text).
    tool_call_id: str | None = None
    tool_name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call. ``parameters``: a JSON Schema (as JSON text) for the
    arguments object, already checked by the service."""

    name: str
    description: str = ""
    parameters: str = '{"type": "object"}'


ToolMode = Literal["auto", "any", "none", "validated"]


@dataclass(frozen=True, slots=True)
class ToolUse:
    """The request's tools and how the model may use them. ``auto`` and ``validated``: the
    model chooses between text and calls, and a call is held to its schema from the moment
    it starts; ``any``: the output is one or more calls; ``none``: no call (the tools stay out
    of the prompt). ``allowed``: the names that ``any``/``auto`` may call (None: all)."""

    tools: tuple[ToolSpec, ...]
    mode: ToolMode = "auto"
    allowed: tuple[str, ...] | None = None
    parallel: bool = True  # False: at most one call per turn

    def callable(self) -> tuple[ToolSpec, ...]:
        if self.mode == "none":
            return ()
        if self.allowed is None:
            return self.tools
        return tuple(t for t in self.tools if t.name in self.allowed)


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float
    top_p: float
    top_k: int
    max_output_tokens: int
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # llama.cpp's multiplicative repeat penalty over recent tokens (1.0 = off); a model default.
    repeat_penalty: float = 1.0
    stop_sequences: tuple[str, ...] = ()
    # Report each answer token's log probability (None: off), with this many alternatives.
    logprobs: int | None = None
    # The end of generation is not sampled before this many output tokens (vLLM's min_tokens).
    min_output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningControl:
    """A native reasoning model: its thought tags, and the thinking budget in tokens.

    With ``budget`` 0 the model is told not to think. When a thought reaches the budget the
    engine writes the closing tag itself, so the model goes on to the answer.
    """

    open_tag: str = "<think>"
    close_tag: str = "</think>"
    budget: int = 1024
    # The thought is not closed by the model before this many tokens (s1-style budget
    # forcing): where the closing tag is one token, it and the end of generation are banned.
    floor: int = 0


ConstraintScope = Literal["output", "answer"]
ConstraintSyntax = Literal["gbnf", "json_schema", "lark"]


@dataclass(frozen=True, slots=True)
class Constraint:
    """What the sampler must keep the output to, carried per request.

    ``grammar`` is GBNF text (rule ``root``). ``scope`` says where it applies: ``output`` from
    the first generated token (a model-level grammar that also shapes the thought), ``answer``
    from the first token after a native thought closes (JSON mode on a reasoning model). With
    ``triggers`` the constraint is lazy: it switches on where one of them first appears in its
    scope, and the grammar matches from the trigger text on (a tool-call opening tag). Frozen
    and hashable: engines cache what they compile from it.
    """

    grammar: str
    scope: ConstraintScope = "answer"
    triggers: tuple[str, ...] = ()
    # What ``grammar`` holds: GBNF text, a JSON Schema as JSON text (JSON output), or an
    # llguidance Lark grammar (tool calls; rule ``start``).
    syntax: ConstraintSyntax = "gbnf"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    request_id: str = ""
    reasoning: ReasoningControl | None = None
    constraint: Constraint | None = None
    tools: ToolUse | None = None
    # Names the conversation this turn continues: an engine with several replicas sends the
    # turns of one conversation to the same one (its prefix cache). None: no preference.
    affinity: str | None = None


@dataclass(frozen=True, slots=True)
class ModelCapabilities:
    model_id: str
    context_length: int
    output_token_limit: int
    input_modalities: frozenset[str] = frozenset({"text"})
    instruction_tuned: bool = True
    # Size of the vectors ``embed`` returns (the model's hidden size); None: it cannot embed.
    embedding_dimensions: int | None = None


class FinishReason(StrEnum):
    STOP = "stop"  # end-of-generation token or a stop sequence
    MAX_TOKENS = "max_tokens"  # max_output_tokens reached
    CONTEXT = "context"  # the sequence filled the model's context
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ThoughtDelta:
    """Text of the model's thought (native reasoning models)."""

    text: str


@dataclass(slots=True)
class Finished:
    reason: FinishReason
    prompt_tokens: int
    output_tokens: int
    error: str | None = None
    # Prompt tokens whose KV state was reused from an earlier request instead of prefilled.
    cached_tokens: int = 0
    # Prompt positions taken by each image or sound, in order (part of prompt_tokens).
    media_tokens: tuple[int, ...] = ()
    # Of output_tokens, those spent thinking (native reasoning), closing tags included.
    thought_tokens: int = 0
    # The counts are gemserve's estimate, not the engine's: an upstream that sent no usage.
    estimated: bool = False


@dataclass(slots=True)
class TokenLogprob:
    """A generated answer token's log probability under the model (before temperature,
    penalties and constraints), and the most likely alternatives at its position. Emitted
    before the events of that token's text."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True)
class ToolCallStart:
    """The model began its ``index``-th call (0-based in this output), to ``name``."""

    index: int
    name: str


@dataclass(slots=True)
class ToolCallArguments:
    """The next piece of the ``index``-th call's arguments, as JSON text: the pieces join to
    the arguments object."""

    index: int
    text: str


@dataclass(slots=True)
class ToolCallEnd:
    """The ``index``-th call is complete; ``arguments`` is its arguments object's JSON text."""

    index: int
    name: str
    arguments: str


ToolCallEvent = ToolCallStart | ToolCallArguments | ToolCallEnd
EngineEvent = (
    TextDelta
    | ThoughtDelta
    | TokenLogprob
    | ToolCallStart
    | ToolCallArguments
    | ToolCallEnd
    | Finished
)


@dataclass(frozen=True, slots=True)
class PromptCount:
    """A request's prompt as ``generate`` would prefill it: ``tokens`` positions, of which
    each image or sound took ``media_tokens`` (in order)."""

    tokens: int
    media_tokens: tuple[int, ...] = ()
    # An estimate: the engine (an upstream) has no tokenizer endpoint for its own template.
    estimated: bool = False


# A text to embed, or its token ids (OpenAI's ``input`` may be tokens).
EmbeddingInput = str | Sequence[int]


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One unit-length (L2) float32 vector per input, as the rows of ``vectors``, and the
    tokens each input took."""

    vectors: npt.NDArray[np.float32]
    tokens: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class EngineStats:
    slots: int
    active: int
    queued: int
    decode_steps: int
    tokens_generated: int
    requests_finished: int = 0
    requests_cancelled: int = 0
    images_encoded: int = 0  # image (and audio) chunks through the projector
    peak_active: int = 0  # the most sequences ever decoded in one step
    extra: dict[str, float] = field(default_factory=dict)


class GenerationStream(Protocol):
    """One admitted request. Iterate for events; ``cancel`` stops it within one decode step."""

    prompt_tokens: int

    def __aiter__(self) -> AsyncIterator[EngineEvent]: ...

    def cancel(self) -> None: ...


class Engine(Protocol):
    @property
    def ready(self) -> bool: ...

    def capabilities(self) -> ModelCapabilities: ...

    async def tokenize(self, text: str) -> list[int]: ...

    async def generate(self, request: GenerationRequest) -> GenerationStream: ...

    async def count_prompt(self, request: GenerationRequest) -> PromptCount:
        """The prompt ``generate(request)`` would prefill (template, tools and media
        included), counted without admitting anything; a prompt over the context is
        counted too."""
        ...

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> Embeddings:
        """Pooled, L2-normalised embeddings of ``inputs`` (an input that cannot be embedded
        raises ``InvalidEmbeddingInput`` with its index)."""
        ...

    def stats(self) -> EngineStats: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
