"""Chat completion requests as turn input: system and developer messages become the system
text, user and assistant messages the conversation, each part named by its path
(``messages[1].content[0]``); data URLs become inline media, other URLs and Files-API names
go through the media pipeline's uri rules."""

from __future__ import annotations

import json
import re
from typing import Any

from gemserve.config.models import THINKING_LEVELS, ThinkingLevel
from gemserve.errors import InvalidArgument
from gemserve.protocol.openai.request import ChatCompletionRequest, ContentPart, GoogleExtras
from gemserve.service.media import kind_of_mime
from gemserve.service.openai.tools import read_tools
from gemserve.service.turn_input import (
    ConversationItem,
    FunctionCallPart,
    FunctionResultPart,
    GenerationKnobs,
    JsonOutput,
    MediaPart,
    Message,
    Part,
    TextPart,
    ThinkingRequest,
    TurnInput,
)

_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]+)(?:;[^,]*)?;base64,(?P<data>.*)$", re.DOTALL)
# OpenAI's efforts onto Gemini's levels ("none" switches thinking off).
_EFFORT_LEVELS: dict[str, ThinkingLevel] = {
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
}
_AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg"}


def turn_input(request: ChatCompletionRequest) -> TurnInput:
    system: list[str] = []
    items: list[ConversationItem] = []
    for i, message in enumerate(request.messages):
        where = f"messages[{i}]"
        parts = _parts(message.content, where)
        if message.role == "tool":
            assert message.tool_call_id is not None  # checked when parsed
            text = "\n".join(p.text for p in parts if isinstance(p, TextPart))
            if len(parts) != sum(isinstance(p, TextPart) for p in parts):
                raise InvalidArgument(f"Invalid value at '{where}.content': a tool result is text.")
            result = FunctionResultPart(message.tool_call_id, message.name, text, where)
            items.append(Message("user", (result,)))
            continue
        if message.role == "assistant" and message.tool_calls:
            parts += [
                FunctionCallPart(
                    call.id,
                    call.function.name,
                    _arguments(call.function.arguments, f"{where}.tool_calls[{j}]"),
                    f"{where}.tool_calls[{j}]",
                )
                for j, call in enumerate(message.tool_calls)
            ]
        if message.role in ("system", "developer"):
            texts = [p.text for p in parts if isinstance(p, TextPart)]
            if len(texts) != len(parts):
                raise InvalidArgument(
                    f"Invalid value at '{where}.content': a {message.role} message is text."
                )
            system.extend(texts)
        else:
            items.append(Message("user" if message.role == "user" else "model", tuple(parts)))
    stops = request.stop
    knobs = GenerationKnobs(
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        max_output_tokens=request.max_completion_tokens or request.max_tokens,
        stop_sequences=(stops,) if isinstance(stops, str) else tuple(stops or ()),
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        logprobs=_logprobs(request),
    )
    google = request.extra_body.google if request.extra_body else None
    return TurnInput(
        model=request.model,
        conversation=tuple(items),
        system="\n".join(system) or None,
        knobs=knobs,
        thinking=_thinking(request.reasoning_effort, google),
        output=json_output(request.response_format),
        tools=read_tools(request.tools, request.tool_choice, request.parallel_tool_calls),
        config_path="request",
        knob_paths=(
            (
                "max_output_tokens",
                "max_completion_tokens" if request.max_completion_tokens else "max_tokens",
            ),
            ("stop_sequences", "stop"),
            ("logprobs", "top_logprobs"),
        ),
    )


def _logprobs(request: ChatCompletionRequest) -> int | None:
    if not request.logprobs:
        if request.top_logprobs is not None:
            raise InvalidArgument("Invalid value at 'top_logprobs': it needs logprobs: true.")
        return None
    return request.top_logprobs or 0


def _arguments(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidArgument(
            f"Invalid value at '{where}.function.arguments': a JSON object's text."
        )
    return value


def _parts(content: str | list[ContentPart] | None, where: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[Part] = []
    for j, item in enumerate(content):
        at = f"{where}.content[{j}]"
        if item.type == "text":
            if item.text is None:
                raise InvalidArgument(f"Missing required field '{at}.text'.")
            parts.append(TextPart(item.text))
        elif item.type == "image_url":
            if item.image_url is None:
                raise InvalidArgument(f"Missing required field '{at}.image_url'.")
            parts.append(_url_part(item.image_url.url, f"{at}.image_url", "url"))
        elif item.type == "input_audio":
            if item.input_audio is None:
                raise InvalidArgument(f"Missing required field '{at}.input_audio'.")
            mime = _AUDIO_FORMATS.get(item.input_audio.format)
            if mime is None:
                raise InvalidArgument(
                    f"Invalid value at '{at}.input_audio.format': expected wav or mp3."
                )
            parts.append(
                MediaPart("audio", f"{at}.input_audio", data=item.input_audio.data, mime_type=mime)
            )
        else:
            ref = item.file
            if ref is None or (ref.file_data is None) == (ref.file_id is None):
                raise InvalidArgument(
                    f"Invalid value at '{at}.file': send exactly one of file_data or file_id."
                )
            if ref.file_data is not None:
                parts.append(_url_part(ref.file_data, f"{at}.file", "file_data"))
            else:
                assert ref.file_id is not None
                name = ref.file_id if "/" in ref.file_id else f"files/{ref.file_id}"
                parts.append(MediaPart(None, f"{at}.file", uri=name, uri_field="file_id"))
    return parts


def _url_part(url: str, where: str, field: str) -> MediaPart:
    match = _DATA_URL.match(url)
    if match is not None:
        mime = match.group("mime").strip().lower()
        return MediaPart(kind_of_mime(mime), where, data=match.group("data"), mime_type=mime)
    if url.startswith("data:"):
        raise InvalidArgument(f"Invalid value at '{where}.{field}': a data URL must be base64.")
    return MediaPart("image" if field == "url" else None, where, uri=url, uri_field=field)


def _thinking(effort: str | None, google: GoogleExtras | None) -> ThinkingRequest:
    config = google.thinking_config if google is not None else None
    summaries = (
        True if config is None or config.include_thoughts is None else config.include_thoughts
    )
    level: ThinkingLevel | None = None
    budget: int | None = None
    if effort == "none":
        budget = 0
    elif effort is not None:
        level = _EFFORT_LEVELS[effort]
    if config is not None:
        if effort is not None and (config.thinking_budget is not None or config.thinking_level):
            raise InvalidArgument(
                "Invalid value at 'reasoning_effort': set reasoning_effort or "
                "extra_body.google.thinking_config, not both."
            )
        if config.thinking_level is not None:
            name = config.thinking_level.lower()
            if name not in THINKING_LEVELS:
                raise InvalidArgument(
                    "Invalid value at 'extra_body.google.thinking_config.thinking_level': "
                    f"{config.thinking_level!r} is not a thinking level."
                )
            level = next(lv for lv in THINKING_LEVELS if lv == name)
        if config.thinking_budget is not None and config.thinking_budget >= 0:
            budget = config.thinking_budget
    return ThinkingRequest(level=level, summaries=summaries, budget=budget)


def json_output(value: Any) -> JsonOutput | None:
    """``response_format``: ``text``, ``json_object`` (any JSON object) or ``json_schema``
    (``{"json_schema": {"name", "schema", "strict"}}``, what ``chat.completions.parse``
    sends)."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return JsonOutput({"type": "object"}, "response_format")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidArgument("Missing required field 'response_format.json_schema'.")
        unknown = sorted(set(spec) - {"name", "schema", "strict", "description"})
        if unknown:
            raise InvalidArgument(
                f"Unknown name {unknown[0]!r} at 'response_format.json_schema': Cannot find field."
            )
        return JsonOutput(spec.get("schema", {}), "response_format.json_schema.schema")
    raise InvalidArgument(
        "Invalid value at 'response_format.type': expected text, json_object or json_schema."
    )
