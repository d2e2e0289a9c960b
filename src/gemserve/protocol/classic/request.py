"""Wire models for ``models/{model}:generateContent`` and ``:streamGenerateContent``,
validated once with pydantic.

The body is camelCase, but the Python SDK writes snake_case keys inside some camelCase
objects (``thinkingConfig.include_thoughts``) and ``topK`` as a float: every model accepts
both casings at every depth, and proto3 numbers.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool, StrictStr, field_validator

from gemserve.errors import InvalidArgument
from gemserve.protocol.common import (
    ProtoFloat,
    ProtoInt,
    WireModel,
    refuse_unserved,
    validate_body,
)


class Blob(WireModel):
    mime_type: StrictStr | None = None
    data: StrictStr | None = None
    display_name: StrictStr | None = None


class FileData(WireModel):
    mime_type: StrictStr | None = None
    file_uri: StrictStr | None = None
    display_name: StrictStr | None = None


class Part(WireModel):
    text: StrictStr | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    thought: StrictBool | None = None
    thought_signature: StrictStr | None = None
    # A hint for the media's token budget (Gemini 3); accepted, and decoding uses its own caps.
    media_resolution: Any = None
    # Read by service/classic/turns.py (either casing inside).
    function_call: Any = None
    function_response: Any = None
    # In the schema, not served yet: refused by ``reject_unserved``.
    executable_code: Any = None
    code_execution_result: Any = None
    video_metadata: Any = None


class Content(WireModel):
    role: StrictStr | None = None
    parts: list[Part] = Field(default_factory=list)


class ThinkingConfig(WireModel):
    include_thoughts: StrictBool | None = None
    thinking_budget: ProtoInt | None = Field(default=None, ge=-1)
    thinking_level: StrictStr | None = None


class GenerationConfig(WireModel):
    temperature: ProtoFloat | None = Field(default=None, ge=0.0, le=2.0)
    top_p: ProtoFloat | None = Field(default=None, ge=0.0, le=1.0)
    # The Python SDK sends topK as a float (20.0).
    top_k: ProtoFloat | None = Field(default=None, ge=1, le=1000)
    candidate_count: ProtoInt | None = Field(default=None, ge=1)
    max_output_tokens: ProtoInt | None = Field(default=None, ge=1)
    stop_sequences: list[StrictStr] | None = None
    seed: ProtoInt | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    presence_penalty: ProtoFloat | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: ProtoFloat | None = Field(default=None, ge=-2.0, le=2.0)
    response_mime_type: StrictStr | None = None
    response_modalities: list[StrictStr] | None = None
    thinking_config: ThinkingConfig | None = None
    # A hint for media token budgets; accepted, decoding uses its own caps.
    media_resolution: StrictStr | None = None
    response_schema: Any = None
    response_json_schema: Any = None
    response_logprobs: StrictBool | None = None
    logprobs: ProtoInt | None = None
    # In the schema, not served yet: refused by ``reject_unserved``.
    routing_config: Any = None
    model_selection_config: Any = None
    speech_config: Any = None
    audio_timestamp: StrictBool | None = None
    enable_enhanced_civic_answers: StrictBool | None = None
    image_config: Any = None

    @field_validator("top_k")
    @classmethod
    def _whole_top_k(cls, value: float | None) -> float | None:
        if value is not None and value != int(value):
            raise ValueError("must be a whole number")
        return value

    @field_validator("stop_sequences")
    @classmethod
    def _non_empty_stops(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(s == "" for s in value):
            raise ValueError("stop sequences must not be empty strings")
        return value


class SafetySetting(WireModel):
    """Accepted and not enforced (documented): gemserve runs no safety classifier."""

    category: StrictStr | None = None
    threshold: StrictStr | None = None
    method: StrictStr | None = None


class GenerateContentRequest(WireModel):
    """The body of ``:generateContent`` and ``:streamGenerateContent``."""

    model: StrictStr | None = None  # some clients repeat the path's model here
    contents: list[Content] | None = None
    system_instruction: Content | None = None
    generation_config: GenerationConfig | None = None
    safety_settings: list[SafetySetting] | None = None
    labels: dict[StrictStr, StrictStr] | None = None
    # Read by service/classic/tools.py.
    tools: list[Any] | None = None
    tool_config: Any = None
    # "cachedContents/{id}": service/classic/caches.py puts the cache in front.
    cached_content: StrictStr | None = None

    @classmethod
    def parse(cls, body: Any) -> GenerateContentRequest:
        request = validate_body(cls, body)
        if not request.contents:
            raise InvalidArgument("Missing required field 'contents'.")
        reject_unserved(request)
        return request


CONFIG_NOT_SERVED = (
    "routing_config",
    "model_selection_config",
    "speech_config",
    "audio_timestamp",
    "image_config",
)
PART_NOT_SERVED = (
    "executable_code",
    "code_execution_result",
    "video_metadata",
)


def reject_unserved(request: GenerateContentRequest) -> None:
    """What the schema has and this server does not do yet: a 400 naming the field."""
    config = request.generation_config
    if config is not None:
        refuse_unserved(config, CONFIG_NOT_SERVED, "generation_config")
        if config.response_mime_type not in (
            None,
            "text/plain",
            "application/json",
            "text/x.enum",
        ):
            raise InvalidArgument(
                "Invalid value at 'generation_config.response_mime_type': text/plain, "
                "application/json or text/x.enum."
            )
        if config.response_modalities not in (None, ["TEXT"], ["text"]):
            raise InvalidArgument(
                "Invalid value at 'generation_config.response_modalities': only TEXT output is "
                "supported."
            )
    for i, content in enumerate(request.contents or ()):
        for j, part in enumerate(content.parts):
            refuse_unserved(part, PART_NOT_SERVED, f"contents[{i}].parts[{j}]")
