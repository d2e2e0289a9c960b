"""What one model turn asks for, in no API surface's shape.

Each surface (Interactions, generateContent, OpenAI) parses its own wire format and builds a
:class:`TurnInput`; the turn pipeline (``turn.py``) takes it from there. Every part carries the
path that names it in its own request (``where``), so an error points at the field the client
sent, whichever surface it came through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gemserve.config.models import ThinkingLevel

Role = Literal["user", "model"]
MediaKind = Literal["image", "audio", "video", "document"]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class MediaPart:
    """Inline base64 ``data`` or a ``uri`` (a Files-API file, or a URL the server may fetch)."""

    kind: MediaKind | None  # None: a file's own MIME type says
    where: str  # e.g. "input[0].content[1]"
    data: str | None = None
    uri: str | None = None
    mime_type: str | None = None
    uri_field: str = "uri"  # the uri's name on this surface's wire ("file_uri" on the classic one)


@dataclass(frozen=True, slots=True)
class FunctionCallPart:
    """A call the model made (sent back in a stateless history, or stored)."""

    id: str | None  # None: a classic client that dropped it (results then match by name)
    name: str
    arguments: dict[str, Any]
    where: str


@dataclass(frozen=True, slots=True)
class FunctionResultPart:
    """The client's answer to a call; ``result`` is any JSON value (text, an object, parts)."""

    call_id: str | None  # None: matched to the call by ``name``
    name: str | None
    result: Any
    where: str
    is_error: bool = False


Part = TextPart | MediaPart | FunctionCallPart | FunctionResultPart


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Thought:
    """A thought sent back (or stored) before the model turn that followed it.

    Its ``signature`` carries the thought text; ``stored`` thoughts come from the server's own
    history and are trusted, and one whose signature no longer opens falls back to ``summary``.
    """

    where: str  # e.g. "input[2]"
    signature: str | None = None
    summary: str | None = None
    stored: bool = False
    signature_field: str = "signature"  # its name on this surface's wire


ConversationItem = Message | Thought


@dataclass(frozen=True, slots=True)
class GenerationKnobs:
    """Sampling settings as the client sent them; None means the model's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None
    stop_sequences: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # Report each answer token's log probability, with this many alternatives (None: off).
    logprobs: int | None = None


@dataclass(frozen=True, slots=True)
class ThinkingRequest:
    level: ThinkingLevel | None = None  # None: the model's default
    summaries: bool = True  # return the thought text, not only its signature
    budget: int | None = None  # thinking tokens, overriding the level's budget (0: off)


@dataclass(frozen=True, slots=True)
class JsonOutput:
    """The answer is JSON matching ``schema`` (JSON Schema; ``{}`` is any JSON value).
    ``where`` names the schema in the request, for errors."""

    schema: dict[str, Any]
    where: str


@dataclass(frozen=True, slots=True)
class EnumOutput:
    """The answer is exactly one of ``values`` (``text/x.enum``)."""

    values: tuple[str, ...]
    where: str


@dataclass(frozen=True, slots=True)
class FunctionDeclaration:
    """A declared function; ``parameters`` is a JSON Schema (None: no arguments)."""

    name: str
    where: str  # e.g. "tools[0]"
    description: str = ""
    parameters: dict[str, Any] | None = None
    parameters_field: str = "parameters"  # its name on this surface's wire


ToolMode = Literal["auto", "any", "none", "validated"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ToolMode = "auto"
    allowed: tuple[str, ...] | None = None  # None: every declared function
    where: str = "tool_choice"  # for errors about ``allowed`` (the list's path)


@dataclass(frozen=True, slots=True)
class Tools:
    functions: tuple[FunctionDeclaration, ...]
    choice: ToolChoice = field(default_factory=ToolChoice)
    parallel: bool = True  # the model may make several calls in one turn


@dataclass(frozen=True, slots=True)
class TurnInput:
    model: str  # the name the client asked for (an id or an alias)
    conversation: tuple[ConversationItem, ...]
    system: str | None = None
    knobs: GenerationKnobs = field(default_factory=GenerationKnobs)
    thinking: ThinkingRequest = field(default_factory=ThinkingRequest)
    # The output constraint: none (text), JSON, or one of a list of values.
    output: JsonOutput | EnumOutput | None = None
    tools: Tools | None = None
    # Leading conversation items that came from the server's store: a prompt too long for
    # the context says the history counts toward it.
    history_items: int = 0
    # Where the knobs sit in this surface's request, for error messages: under
    # ``config_path``, or at a path of their own (OpenAI's ``max_tokens``, ``stop``).
    config_path: str = "generation_config"
    knob_paths: tuple[tuple[str, str], ...] = ()

    def knob_path(self, knob: str) -> str:
        return dict(self.knob_paths).get(knob, f"{self.config_path}.{knob}")
