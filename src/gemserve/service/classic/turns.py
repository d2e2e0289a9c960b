"""generateContent requests as turn input: ``contents`` become messages, each part named by
its path (``contents[1].parts[0]``); a part's ``thoughtSignature`` brings back the thought in
front of the model turn it belongs to; ``thought: true`` parts (summaries) are not prompt."""

from __future__ import annotations

from typing import Any

from gemserve.config.models import THINKING_LEVELS, ThinkingLevel
from gemserve.errors import InvalidArgument
from gemserve.protocol.classic.request import Content, GenerateContentRequest, GenerationConfig
from gemserve.protocol.schema import openapi_to_json_schema
from gemserve.service.classic.tools import read_tools, snake
from gemserve.service.media import kind_of_mime
from gemserve.service.turn_input import (
    ConversationItem,
    EnumOutput,
    FunctionCallPart,
    FunctionResultPart,
    GenerationKnobs,
    JsonOutput,
    MediaPart,
    Message,
    Part,
    Role,
    TextPart,
    ThinkingRequest,
    Thought,
    TurnInput,
)


def turn_input(model: str, request: GenerateContentRequest) -> TurnInput:
    config = request.generation_config or GenerationConfig()
    knobs = GenerationKnobs(
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=None if config.top_k is None else int(config.top_k),
        max_output_tokens=config.max_output_tokens,
        stop_sequences=tuple(config.stop_sequences or ()),
        seed=config.seed,
        presence_penalty=config.presence_penalty,
        frequency_penalty=config.frequency_penalty,
        logprobs=_logprobs(config),
    )
    return TurnInput(
        model=model,
        conversation=tuple(conversation_items(request.contents or [])),
        system=system_text(request.system_instruction),
        knobs=knobs,
        thinking=thinking_request(config),
        output=json_output(config),
        tools=read_tools(request.tools, request.tool_config),
    )


def _logprobs(config: GenerationConfig) -> int | None:
    """``responseLogprobs`` asks for them; ``logprobs`` for that many alternatives."""
    if not config.response_logprobs:
        if config.logprobs is not None:
            raise InvalidArgument(
                "Invalid value at 'generation_config.logprobs': it needs response_logprobs."
            )
        return None
    return config.logprobs or 0


def json_output(config: GenerationConfig) -> JsonOutput | EnumOutput | None:
    """``responseMimeType: application/json`` with ``responseJsonSchema`` (JSON Schema),
    ``responseSchema`` (Google's OpenAPI subset) or neither (any JSON); ``text/x.enum`` with
    a string enum schema (the answer is one of its values, without quotes)."""
    has_schema = config.response_schema is not None or config.response_json_schema is not None
    if config.response_mime_type == "text/x.enum":
        return _enum_output(config)
    if config.response_mime_type != "application/json":
        if has_schema:
            raise InvalidArgument(
                "Invalid value at 'generation_config.response_mime_type': a response schema "
                "needs application/json."
            )
        return None
    if config.response_schema is not None and config.response_json_schema is not None:
        raise InvalidArgument(
            "Invalid value at 'generation_config': set response_schema or "
            "response_json_schema, not both."
        )
    if config.response_json_schema is not None:
        return JsonOutput(config.response_json_schema, "generation_config.response_json_schema")
    if config.response_schema is not None:
        where = "generation_config.response_schema"
        return JsonOutput(openapi_to_json_schema(config.response_schema, where), where)
    return JsonOutput({}, "generation_config.response_mime_type")


def _enum_output(config: GenerationConfig) -> EnumOutput:
    where = "generation_config.response_schema"
    if config.response_json_schema is not None:
        where = "generation_config.response_json_schema"
        schema = config.response_json_schema
    elif config.response_schema is not None:
        schema = openapi_to_json_schema(config.response_schema, where)
    else:
        raise InvalidArgument(
            "Invalid value at 'generation_config.response_mime_type': text/x.enum needs a "
            "response_schema with an enum of strings."
        )
    values = schema.get("enum") if isinstance(schema, dict) else None
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) and v for v in values)
    ):
        raise InvalidArgument(
            f"Invalid value at '{where}': text/x.enum needs an enum of non-empty strings."
        )
    return EnumOutput(tuple(values), f"{where}.enum")


def conversation_items(contents: list[Content], path: str = "contents") -> list[ConversationItem]:
    items: list[ConversationItem] = []
    for i, content in enumerate(contents):
        where = f"{path}[{i}]"
        role = _role(content.role, where)
        parts: list[Part] = []
        thought: Thought | None = None
        for j, part in enumerate(content.parts):
            at = f"{where}.parts[{j}]"
            if part.thought_signature is not None and thought is None and role == "model":
                thought = Thought(at, part.thought_signature, signature_field="thought_signature")
            if part.thought:
                continue  # a thought summary: the signature, not the summary, restores it
            fields = [f for f in _DATA_FIELDS if getattr(part, f) is not None]
            if len(fields) > 1:
                raise InvalidArgument(
                    f"Invalid value at '{at}': a part holds one of text, inline_data, "
                    f"file_data, function_call or function_response, not {' and '.join(fields)}."
                )
            if part.function_call is not None:
                parts.append(_function_call(part.function_call, f"{at}.function_call"))
            elif part.function_response is not None:
                parts.append(_function_response(part.function_response, f"{at}.function_response"))
            elif part.text is not None:
                parts.append(TextPart(part.text))
            elif part.inline_data is not None:
                blob = part.inline_data
                where_data = f"{at}.inline_data"
                if not blob.mime_type:
                    raise InvalidArgument(f"Missing required field '{where_data}.mime_type'.")
                kind = kind_of_mime(blob.mime_type)
                parts.append(
                    MediaPart(kind, where_data, data=blob.data or "", mime_type=blob.mime_type)
                )
            elif part.file_data is not None:
                ref = part.file_data
                where_file = f"{at}.file_data"
                if ref.file_uri is None:
                    raise InvalidArgument(f"Missing required field '{where_file}.file_uri'.")
                parts.append(
                    MediaPart(
                        kind_of_mime(ref.mime_type) if ref.mime_type else None,
                        where_file,
                        uri=ref.file_uri,
                        mime_type=ref.mime_type,
                        uri_field="file_uri",
                    )
                )
        if thought is not None:
            items.append(thought)
        items.append(Message(role, tuple(parts)))
    return items


_DATA_FIELDS = ("text", "inline_data", "file_data", "function_call", "function_response")


def _function_call(raw: Any, where: str) -> FunctionCallPart:
    fields = _object(raw, where)
    unknown = sorted(set(fields) - {"id", "name", "args", "partial_args", "will_continue"})
    if unknown:
        raise InvalidArgument(f"Unknown name {unknown[0]!r} at '{where}': Cannot find field.")
    name, call_id, args = fields.get("name"), fields.get("id"), fields.get("args") or {}
    if not isinstance(name, str):
        raise InvalidArgument(f"Missing required field '{where}.name'.")
    if call_id is not None and not isinstance(call_id, str):
        raise InvalidArgument(f"Invalid value at '{where}.id': expected a string.")
    if not isinstance(args, dict):
        raise InvalidArgument(f"Invalid value at '{where}.args': expected an object.")
    return FunctionCallPart(call_id or None, name, args, where)


def _function_response(raw: Any, where: str) -> FunctionResultPart:
    fields = _object(raw, where)
    allowed = {"id", "name", "response", "will_continue", "scheduling", "parts"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidArgument(f"Unknown name {unknown[0]!r} at '{where}': Cannot find field.")
    name, call_id, response = fields.get("name"), fields.get("id"), fields.get("response")
    if not isinstance(name, str):
        raise InvalidArgument(f"Missing required field '{where}.name'.")
    if call_id is not None and not isinstance(call_id, str):
        raise InvalidArgument(f"Invalid value at '{where}.id': expected a string.")
    if not isinstance(response, dict):
        raise InvalidArgument(f"Missing required field '{where}.response' (an object).")
    is_error = set(response) == {"error"}
    return FunctionResultPart(call_id or None, name, response, where, is_error=is_error)


def _object(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object.")
    return {snake(k): v for k, v in raw.items()}


def system_text(content: Content | None) -> str | None:
    if content is None:
        return None
    texts: list[str] = []
    for j, part in enumerate(content.parts):
        if part.text is None or part.inline_data is not None or part.file_data is not None:
            raise InvalidArgument(
                f"Invalid value at 'system_instruction.parts[{j}]': a system instruction is text."
            )
        texts.append(part.text)
    return "\n".join(texts) or None


def thinking_request(config: GenerationConfig) -> ThinkingRequest:
    thinking = config.thinking_config
    if thinking is None:
        return ThinkingRequest(summaries=False)
    level: ThinkingLevel | None = None
    if thinking.thinking_level is not None:
        name = thinking.thinking_level.lower()
        if name == "thinking_level_unspecified":
            name = ""
        if name and name not in THINKING_LEVELS:
            raise InvalidArgument(
                "Invalid value at 'generation_config.thinking_config.thinking_level': "
                f"{thinking.thinking_level!r} is not one of {', '.join(THINKING_LEVELS).upper()}."
            )
        level = next((lv for lv in THINKING_LEVELS if lv == name), None)
    budget = thinking.thinking_budget
    if level is not None and budget is not None:
        raise InvalidArgument(
            "Invalid value at 'generation_config.thinking_config': set thinking_level or "
            "thinking_budget, not both."
        )
    return ThinkingRequest(
        level=level,
        summaries=bool(thinking.include_thoughts),
        budget=None if budget is None or budget < 0 else budget,  # -1: the model decides
    )


def _role(raw: str | None, where: str) -> Role:
    if raw in (None, "", "user"):
        return "user"
    if raw == "model":
        return "model"
    raise InvalidArgument(f"Invalid value at '{where}.role': expected 'user' or 'model'.")
