"""Wire models for ``POST /{version}/interactions`` requests, validated once with pydantic."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr, ValidationError, field_validator

from gemserve.config.models import ThinkingLevel
from gemserve.errors import InvalidArgument
from gemserve.protocol.common import (
    ProtoFloat,
    ProtoInt,
    WireModel,
    invalid_argument,
    refuse_unserved,
    validate_body,
)

ThinkingSummaries = Literal["auto", "none"]


class GenerationConfig(WireModel):
    temperature: ProtoFloat | None = Field(default=None, ge=0.0, le=2.0)
    top_p: ProtoFloat | None = Field(default=None, ge=0.0, le=1.0)
    top_k: ProtoInt | None = Field(default=None, ge=1, le=1000)
    max_output_tokens: ProtoInt | None = Field(default=None, ge=1)
    stop_sequences: list[StrictStr] | None = None
    seed: ProtoInt | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    presence_penalty: ProtoFloat | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: ProtoFloat | None = Field(default=None, ge=-2.0, le=2.0)
    thinking_level: ThinkingLevel | None = None
    thinking_summaries: ThinkingSummaries | None = None
    tool_choice: Any = None  # checked by ``tool_choice`` below
    # In the schema, not served yet: rejected by ``reject_unserved`` when set.
    image_config: Any = None
    speech_config: Any = None
    transcription_config: Any = None
    video_config: Any = None

    @field_validator("stop_sequences")
    @classmethod
    def _non_empty_stops(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(s == "" for s in value):
            raise ValueError("stop sequences must not be empty strings")
        return value


class TextContent(WireModel):
    type: Literal["text"]
    text: StrictStr
    annotations: list[Any] | None = None


class MediaContent(WireModel):
    type: Literal["image", "audio", "video", "document"]
    data: StrictStr | None = None
    uri: StrictStr | None = None
    mime_type: StrictStr | None = None
    resolution: str | None = None
    sample_rate: ProtoInt | None = None
    channels: ProtoInt | None = None
    processing: Any = None
    name: str | None = None


Content = Annotated[TextContent | MediaContent, Field(discriminator="type")]


class UserInputStep(WireModel):
    type: Literal["user_input"]
    content: list[Content]


class ModelOutputStep(WireModel):
    type: Literal["model_output"]
    content: list[Content]
    error: Any = None


class ThoughtStep(WireModel):
    """A thought sent back in a stateless history; its signature restores the thought."""

    type: Literal["thought"]
    signature: StrictStr | None = None
    summary: list[Content] | None = None


class FunctionCallStep(WireModel):
    """A call the model made, sent back in a stateless history."""

    type: Literal["function_call"]
    id: StrictStr
    name: StrictStr
    arguments: dict[str, Any]
    signature: StrictStr | None = None


class FunctionResultStep(WireModel):
    type: Literal["function_result"]
    call_id: StrictStr
    result: Any
    name: StrictStr | None = None
    is_error: StrictBool | None = None
    signature: StrictStr | None = None

    @field_validator("result")
    @classmethod
    def _present(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("a function result needs a result (a string, an object or content)")
        return value


InputStep = UserInputStep | ModelOutputStep | ThoughtStep | FunctionCallStep | FunctionResultStep

STEP_TYPES = frozenset(
    {
        "user_input",
        "model_output",
        "thought",
        "function_call",
        "function_result",
        "code_execution_call",
        "code_execution_result",
        "google_search_call",
        "google_search_result",
        "url_context_call",
        "url_context_result",
        "file_search_call",
        "file_search_result",
        "google_maps_call",
        "google_maps_result",
        "mcp_server_tool_call",
        "mcp_server_tool_result",
        "retrieval_call",
        "retrieval_result",
        "processing_call",
        "processing_result",
    }
)
SUPPORTED_STEP_TYPES = frozenset(
    {"user_input", "model_output", "thought", "function_call", "function_result"}
)


class CreateInteraction(WireModel):
    """The body of ``POST /{version}/interactions`` (schema ``CreateModelInteraction``)."""

    model: StrictStr | None = None
    input: Any = None
    system_instruction: StrictStr | None = None
    generation_config: GenerationConfig | None = None
    stream: StrictBool = False
    store: StrictBool = True
    background: StrictBool = False
    previous_interaction_id: StrictStr | None = None
    response_format: Any = None
    response_mime_type: StrictStr | None = None
    response_modalities: list[StrictStr] | None = None
    tools: list[Any] | None = None
    safety_settings: list[Any] | None = None
    service_tier: Literal["flex", "standard", "priority", "deferred"] | None = None
    labels: dict[StrictStr, StrictStr] | None = None
    continuation_token: StrictStr | None = None
    cached_content: StrictStr | None = None
    environment: Any = None
    webhook_config: Any = None
    agent: Any = None
    agent_config: Any = None

    @classmethod
    def parse(cls, body: Any) -> CreateInteraction:
        """Validate the body, and refuse what this server does not serve (a clear 400, never
        a silent drop)."""
        request = validate_body(cls, body)
        if request.model is None:
            raise InvalidArgument("Missing required field 'model'.")
        reject_unserved(request)
        return request


# Fields of the schema that this server does not serve yet, at the top level and in
# generation_config: one list each, checked in one place.
NOT_SERVED = (
    "continuation_token",
    "cached_content",
    "environment",
    "webhook_config",
    "agent",
    "agent_config",
)
CONFIG_NOT_SERVED = (
    "image_config",
    "speech_config",
    "transcription_config",
    "video_config",
)


def reject_unserved(request: CreateInteraction) -> None:
    refuse_unserved(request, NOT_SERVED)
    if request.generation_config is not None:
        refuse_unserved(request.generation_config, CONFIG_NOT_SERVED, "generation_config")
    if request.response_mime_type not in (None, "text/plain", "application/json"):
        raise InvalidArgument(
            "Invalid value at 'response_mime_type': text/plain or application/json."
        )
    if request.response_modalities not in (None, ["text"], ["TEXT"]):
        raise InvalidArgument(
            "Invalid value at 'response_modalities': only text output is supported."
        )
    if not request.store and request.previous_interaction_id is not None:
        raise InvalidArgument(
            "Invalid value at 'store': previous_interaction_id needs stored interactions; "
            "with store=false send the history as input steps."
        )
    if not request.store and request.background:
        raise InvalidArgument("Invalid value at 'store': background interactions must be stored.")


def parse_input(raw: Any, *, max_parts: int) -> list[InputStep]:
    """Normalise every accepted ``input`` shape to a list of steps.

    Shapes: a string, one content object, a list of content objects (JS sends these bare),
    a list of steps (Python wraps content lists into one ``user_input`` step), or legacy
    ``{"role", "content"}`` turns.
    """
    if raw is None:
        raise InvalidArgument("Missing required field 'input'.")
    if isinstance(raw, str):
        if not raw.strip():
            raise InvalidArgument("Invalid value at 'input': the input text is empty.")
        return [UserInputStep(type="user_input", content=[TextContent(type="text", text=raw)])]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise InvalidArgument("Invalid value at 'input': the list is empty.")
    if not all(isinstance(item, dict) for item in items):
        raise InvalidArgument(
            "Invalid value at 'input': expected a string, an object or a list of objects."
        )
    if all("role" in item and "type" not in item for item in items):
        items = [_legacy_turn(item, i) for i, item in enumerate(items)]
    kinds = {item.get("type") for item in items}
    if kinds & STEP_TYPES:
        if not kinds <= STEP_TYPES:
            raise InvalidArgument(
                "Invalid value at 'input': a list mixes steps and content blocks."
            )
        unsupported = sorted(str(k) for k in kinds - SUPPORTED_STEP_TYPES)
        if unsupported:
            raise InvalidArgument(
                f"Invalid value at 'input': step type {unsupported[0]!r} is not supported yet."
            )
        steps = [_validate_step(item, i) for i, item in enumerate(items)]
    else:
        content = [_validate_content(item, f"input[{i}]") for i, item in enumerate(items)]
        steps = [UserInputStep(type="user_input", content=content)]
    parts = sum(
        len(step.content) for step in steps if isinstance(step, UserInputStep | ModelOutputStep)
    )
    if parts > max_parts:
        raise InvalidArgument(f"The input has {parts} parts; the limit is {max_parts}.")
    if not any(isinstance(step, UserInputStep | FunctionResultStep) for step in steps):
        raise InvalidArgument(
            "Invalid value at 'input': there is no user_input or function_result step."
        )
    return steps


def _legacy_turn(item: dict[str, Any], index: int) -> dict[str, Any]:
    role = item.get("role")
    step_type = {"user": "user_input", "model": "model_output"}.get(str(role))
    if step_type is None:
        raise InvalidArgument(
            f"Invalid value at 'input[{index}].role': expected 'user' or 'model'."
        )
    content = item.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    elif isinstance(content, dict):
        content = [content]
    extra = sorted(set(item) - {"role", "content"})
    if extra:
        raise InvalidArgument(f"Unknown name {extra[0]!r} at 'input[{index}]': Cannot find field.")
    return {"type": step_type, "content": content}


_STEP_MODELS: dict[str, type[InputStep]] = {
    "user_input": UserInputStep,
    "model_output": ModelOutputStep,
    "thought": ThoughtStep,
    "function_call": FunctionCallStep,
    "function_result": FunctionResultStep,
}


def _validate_step(item: dict[str, Any], index: int) -> InputStep:
    model = _STEP_MODELS[item["type"]]
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        raise invalid_argument(exc, f"input[{index}]") from None


_CONTENT_TYPES: dict[str, type[TextContent] | type[MediaContent]] = {
    "text": TextContent,
    "image": MediaContent,
    "audio": MediaContent,
    "video": MediaContent,
    "document": MediaContent,
}


def _validate_content(item: dict[str, Any], where: str) -> TextContent | MediaContent:
    if "type" not in item and "text" in item:
        item = {"type": "text", **item}
    model = _CONTENT_TYPES.get(str(item.get("type")))
    if model is None:
        raise InvalidArgument(
            f"Invalid value at '{where}.type': unknown content type {item.get('type')!r}."
        )
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        raise invalid_argument(exc, where) from None
