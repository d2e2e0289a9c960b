"""Interactions requests as turn input: steps become messages and thoughts, each part named by
its path in the request (``input[1].content[0]``), and the stored chain of a conversation
becomes the history in front of them, named by the interaction it came from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gemserve.errors import InvalidArgument
from gemserve.protocol.interactions import (
    CreateInteraction,
    FunctionCallStep,
    FunctionResultStep,
    GenerationConfig,
    InputStep,
    ModelOutputStep,
    TextContent,
    ThoughtStep,
    UserInputStep,
    parse_input,
)
from gemserve.service.interactions.tools import read_tools
from gemserve.service.turn_input import (
    ConversationItem,
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
from gemserve.store import InteractionRecord


def turn_input(
    request: CreateInteraction, steps: Sequence[InputStep], history: Sequence[ConversationItem]
) -> TurnInput:
    assert request.model is not None  # CreateInteraction.parse requires it
    config = request.generation_config or GenerationConfig()
    knobs = GenerationKnobs(
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        max_output_tokens=config.max_output_tokens,
        stop_sequences=tuple(config.stop_sequences or ()),
        seed=config.seed,
        presence_penalty=config.presence_penalty,
        frequency_penalty=config.frequency_penalty,
    )
    thinking = ThinkingRequest(config.thinking_level, config.thinking_summaries != "none")
    return TurnInput(
        model=request.model,
        conversation=(*history, *conversation_items(steps)),
        system=request.system_instruction,
        knobs=knobs,
        thinking=thinking,
        output=json_output(request),
        tools=read_tools(request.tools, config.tool_choice),
        history_items=len(history),
    )


_OUTPUT_TYPES = frozenset({"text", "image", "audio", "video"})


def json_output(request: CreateInteraction) -> JsonOutput | None:
    """``response_format`` in its two forms. Typed: ``{"type": "text", "mime_type":
    "application/json", "schema": {...}}`` or a list of such items. Legacy: the raw JSON
    Schema, with ``response_mime_type: application/json``. A raw schema has a ``type`` too
    (``"object"``): the typed form's is one of text, image, audio, video."""
    value = request.response_format
    json_mime = request.response_mime_type == "application/json"
    if value is None:
        return JsonOutput({}, "response_mime_type") if json_mime else None
    items = value if isinstance(value, list) else [value]
    if isinstance(value, dict) and value.get("type") not in _OUTPUT_TYPES:
        if not json_mime:
            raise InvalidArgument(
                "Invalid value at 'response_format': a JSON Schema needs response_mime_type "
                'application/json (or use the typed form: {"type": "text", '
                '"mime_type": "application/json", "schema": …}).'
            )
        return JsonOutput(value, "response_format")
    found: JsonOutput | None = None
    for i, item in enumerate(items):
        where = "response_format" if isinstance(value, dict) else f"response_format[{i}]"
        if not isinstance(item, dict) or item.get("type") not in _OUTPUT_TYPES:
            raise InvalidArgument(
                f"Invalid value at '{where}.type': expected one of text, image, audio, video."
            )
        unknown = sorted(set(item) - {"type", "mime_type", "schema"})
        if unknown:
            raise InvalidArgument(f"Unknown name {unknown[0]!r} at '{where}': Cannot find field.")
        if item["type"] != "text":
            raise InvalidArgument(
                f"Invalid value at '{where}.type': {item['type']} output is not supported; "
                "this server writes text."
            )
        mime = item.get("mime_type")
        if mime in (None, "text/plain") and "schema" not in item and not json_mime:
            continue
        if mime not in (None, "application/json"):
            raise InvalidArgument(
                f"Invalid value at '{where}.mime_type': text/plain or application/json."
            )
        if found is None:
            schema = item.get("schema", {})
            found = JsonOutput(schema, f"{where}.schema")
    return found


def conversation_items(
    steps: Sequence[InputStep], *, path: str = "input", stored: bool = False
) -> list[ConversationItem]:
    items: list[ConversationItem] = []
    for i, step in enumerate(steps):
        where = f"{path}[{i}]"
        if isinstance(step, ThoughtStep):
            items.append(Thought(where, step.signature, _summary_text(step), stored))
            continue
        if isinstance(step, FunctionCallStep):
            call = FunctionCallPart(step.id, step.name, step.arguments, where)
            items.append(Message("model", (call,)))
            continue
        if isinstance(step, FunctionResultStep):
            result = FunctionResultPart(
                step.call_id, step.name, _result_value(step.result), where, bool(step.is_error)
            )
            items.append(Message("user", (result,)))
            continue
        role: Role = "user" if isinstance(step, UserInputStep) else "model"
        parts = tuple(
            _part(content, f"{where}.content[{j}]") for j, content in enumerate(step.content)
        )
        items.append(Message(role, parts))
    return items


def history_items(chain: Sequence[InteractionRecord]) -> list[ConversationItem]:
    """Earlier inputs, thoughts and model outputs, in order (system instructions are not
    inherited). A part is named by the stored interaction it belongs to."""
    items: list[ConversationItem] = []
    for record in chain:
        steps = parse_input(record.input, max_parts=1_000_000)
        items.extend(conversation_items(steps, path=f"{record.id}.input", stored=True))
        items.extend(
            conversation_items(_output_steps(record.steps), path=f"{record.id}.steps", stored=True)
        )
    return items


def _output_steps(raw: list[dict[str, Any]]) -> list[InputStep]:
    out: list[InputStep] = []
    for step in raw:
        if step.get("type") == "model_output" and step.get("content"):
            out.append(ModelOutputStep.model_validate(step))
        elif step.get("type") == "function_call":
            out.append(FunctionCallStep.model_validate(step))
        elif step.get("type") == "thought" and step.get("signature"):
            out.append(ThoughtStep.model_validate(step))
    return out


def _part(content: Any, where: str) -> Part:
    if isinstance(content, TextContent):
        return TextPart(content.text)
    return MediaPart(content.type, where, content.data, content.uri, content.mime_type)


def _result_value(result: Any) -> Any:
    """A result given as content items reads as their text; a string or an object as is."""
    if isinstance(result, list) and all(
        isinstance(item, dict) and item.get("type") == "text" for item in result
    ):
        return "\n".join(str(item.get("text", "")) for item in result)
    return result


def _summary_text(step: ThoughtStep) -> str | None:
    texts = [part.text for part in step.summary or () if isinstance(part, TextContent)]
    return "\n".join(texts) or None
