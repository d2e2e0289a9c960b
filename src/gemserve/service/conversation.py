"""Turning rendered input steps into the chat messages an engine renders with its template."""

from __future__ import annotations

from gemserve.config import Limits
from gemserve.engine import ChatMessage, MediaInput, without_media_placeholder
from gemserve.engine.base import Role
from gemserve.errors import InvalidArgument
from gemserve.service.media import PreparedInput


def build_messages(
    prepared: PreparedInput, system_instruction: str | None, limits: Limits
) -> tuple[ChatMessage, ...]:
    messages: list[ChatMessage] = []
    if system_instruction:
        messages.append(ChatMessage("system", without_media_placeholder(system_instruction)))
    total_chars = len(system_instruction or "")
    for step in prepared.steps:
        text = "\n".join(part.text for part in step.parts)
        media: tuple[MediaInput, ...] = tuple(m for part in step.parts for m in part.media)
        total_chars += len(text)
        role: Role = "user" if step.role == "user" else "assistant"
        if messages and messages[-1].role == role:
            # Consecutive steps of one role form a single turn, as the templates expect.
            last = messages[-1]
            messages[-1] = ChatMessage(role, last.text + "\n" + text, last.media + media)
        else:
            messages.append(ChatMessage(role, text, media))
    if total_chars > limits.max_text_chars:
        raise InvalidArgument(
            f"The input has {total_chars} characters of text; the limit is {limits.max_text_chars}."
        )
    if not any(m.role == "user" and (m.text.strip() or m.media) for m in messages):
        raise InvalidArgument("Invalid value at 'input': the input has no text.")
    return tuple(messages)
