"""Turning rendered input steps into the chat messages an engine renders with its template."""

from __future__ import annotations

import json

from gemserve.config import Limits
from gemserve.engine import ChatMessage, MediaInput, ToolCall, without_media_placeholder
from gemserve.engine.base import Role
from gemserve.errors import InvalidArgument
from gemserve.service.media import PreparedInput, RenderedStep
from gemserve.service.turn_input import FunctionCallPart, FunctionResultPart


def build_messages(
    prepared: PreparedInput, system_instruction: str | None, limits: Limits
) -> tuple[ChatMessage, ...]:
    messages: list[ChatMessage] = []
    if system_instruction:
        messages.append(ChatMessage("system", without_media_placeholder(system_instruction)))
    total_chars = len(system_instruction or "")
    for step in prepared.steps:
        text = "\n".join(part.text for part in step.parts if part.call is None)
        media: tuple[MediaInput, ...] = tuple(m for part in step.parts for m in part.media)
        calls = tuple(
            _tool_call(p.call) for p in step.parts if isinstance(p.call, FunctionCallPart)
        )
        results = _results(step)
        total_chars += len(text) + sum(len(c.arguments) for c in calls)
        total_chars += sum(len(r.text) for r in results)
        messages.extend(results)
        if results and not text and not media:
            continue
        role: Role = "user" if step.role == "user" else "assistant"
        if messages and messages[-1].role == role:
            # Consecutive steps of one role form a single turn, as the templates expect.
            last = messages[-1]
            joined = last.text + "\n" + text if last.text and text else last.text + text
            messages[-1] = ChatMessage(
                role, joined, last.media + media, tool_calls=last.tool_calls + calls
            )
        else:
            messages.append(ChatMessage(role, text, media, tool_calls=calls))
    if total_chars > limits.max_text_chars:
        raise InvalidArgument(
            f"The input has {total_chars} characters of text; the limit is {limits.max_text_chars}."
        )
    if not any(
        (m.role == "user" and (m.text.strip() or m.media)) or m.role == "tool" for m in messages
    ):
        raise InvalidArgument("Invalid value at 'input': the input has no text.")
    return tuple(messages)


def _tool_call(part: FunctionCallPart) -> ToolCall:
    return ToolCall(part.id or "", part.name, json.dumps(part.arguments, ensure_ascii=False))


def _results(step: RenderedStep) -> list[ChatMessage]:
    out = []
    for part in step.parts:
        result = part.call
        if not isinstance(result, FunctionResultPart):
            continue
        value = result.result
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if result.is_error:
            text = json.dumps({"error": value}, ensure_ascii=False)
        out.append(ChatMessage("tool", text, tool_call_id=result.call_id, tool_name=result.name))
    return out
