"""Wire models for ``POST /v1beta/openai/chat/completions`` (what the ``openai`` SDKs send)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from gemserve.errors import InvalidArgument
from gemserve.protocol.common import ProtoFloat, ProtoInt, refuse_unserved, validate_body


class OpenAIModel(BaseModel):
    """snake_case only, as OpenAI's API; unknown keys are errors, never silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageUrl(OpenAIModel):
    url: StrictStr
    detail: StrictStr | None = None


class InputAudio(OpenAIModel):
    data: StrictStr
    format: StrictStr


class FileRef(OpenAIModel):
    file_data: StrictStr | None = None  # a data: URL
    file_id: StrictStr | None = None  # a Files-API name or uri
    filename: StrictStr | None = None


class ContentPart(OpenAIModel):
    type: Literal["text", "image_url", "input_audio", "file"]
    text: StrictStr | None = None
    image_url: ImageUrl | None = None
    input_audio: InputAudio | None = None
    file: FileRef | None = None


class FunctionCall(OpenAIModel):
    name: StrictStr
    arguments: StrictStr  # a JSON object's text


class ToolCall(OpenAIModel):
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    reasoning_content: StrictStr | None = None  # an earlier answer's thought; not prompt
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None
    refusal: StrictStr | None = None


class StreamOptions(OpenAIModel):
    include_usage: StrictBool | None = None


class GoogleThinkingConfig(OpenAIModel):
    """``extra_body.google.thinking_config``, as Gemini's OpenAI compatibility documents it."""

    include_thoughts: StrictBool | None = None
    thinking_budget: ProtoInt | None = Field(default=None, ge=-1)
    thinking_level: StrictStr | None = None


class GoogleExtras(OpenAIModel):
    thinking_config: GoogleThinkingConfig | None = None
    cached_content: StrictStr | None = None  # "cachedContents/{id}" (service/classic/caches.py)


class ExtraBody(OpenAIModel):
    google: GoogleExtras | None = None


class ChatCompletionRequest(OpenAIModel):
    model: StrictStr
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    temperature: ProtoFloat | None = Field(default=None, ge=0.0, le=2.0)
    top_p: ProtoFloat | None = Field(default=None, ge=0.0, le=1.0)
    top_k: ProtoInt | None = Field(default=None, ge=1, le=1000)
    max_tokens: ProtoInt | None = Field(default=None, ge=1)
    max_completion_tokens: ProtoInt | None = Field(default=None, ge=1)
    n: ProtoInt | None = Field(default=None, ge=1)
    seed: ProtoInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    presence_penalty: ProtoFloat | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: ProtoFloat | None = Field(default=None, ge=-2.0, le=2.0)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    user: StrictStr | None = None
    metadata: dict[StrictStr, StrictStr] | None = None
    store: StrictBool | None = None
    service_tier: StrictStr | None = None
    extra_body: ExtraBody | None = None
    tools: list[Any] | None = None  # read by service/openai/tools.py
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None
    response_format: Any = None
    # Not served yet: refused by ``reject_unserved``.
    logprobs: StrictBool | None = None
    top_logprobs: ProtoInt | None = None
    logit_bias: dict[str, Any] | None = None
    modalities: list[StrictStr] | None = None
    audio: Any = None
    prediction: Any = None

    @classmethod
    def parse(cls, body: Any) -> ChatCompletionRequest:
        request = validate_body(cls, body)
        reject_unserved(request)
        return request


NOT_SERVED = (
    "logit_bias",
    "audio",
    "prediction",
)


def reject_unserved(request: ChatCompletionRequest) -> None:
    refuse_unserved(request, NOT_SERVED)
    if request.modalities not in (None, ["text"]):
        raise InvalidArgument("Invalid value at 'modalities': only text output is supported.")
    for i, message in enumerate(request.messages):
        if message.role == "tool" and message.tool_call_id is None:
            raise InvalidArgument(f"Missing required field 'messages[{i}].tool_call_id'.")
        if message.role != "tool" and message.tool_call_id is not None:
            raise InvalidArgument(
                f"Invalid value at 'messages[{i}].tool_call_id': only tool messages answer a call."
            )
        if message.role != "assistant" and message.tool_calls:
            raise InvalidArgument(
                f"Invalid value at 'messages[{i}].tool_calls': only assistant messages make calls."
            )
