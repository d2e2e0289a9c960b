"""Turning interaction steps into the chat messages an engine renders with its template."""

from __future__ import annotations

from collections.abc import Sequence

from gemserve.config import Limits
from gemserve.engine import ChatMessage, ModelCapabilities
from gemserve.engine.base import Role
from gemserve.errors import InvalidArgument
from gemserve.protocol.interactions import MediaContent, ModelOutputStep, TextContent, UserInputStep


def build_messages(
    steps: Sequence[UserInputStep | ModelOutputStep],
    system_instruction: str | None,
    capabilities: ModelCapabilities,
    limits: Limits,
) -> tuple[ChatMessage, ...]:
    messages: list[ChatMessage] = []
    if system_instruction:
        messages.append(ChatMessage("system", system_instruction))
    total_chars = len(system_instruction or "")
    for i, step in enumerate(steps):
        texts: list[str] = []
        for j, part in enumerate(step.content):
            if isinstance(part, MediaContent):
                raise _unsupported_media(part, f"input[{i}].content[{j}]", capabilities)
            assert isinstance(part, TextContent)
            texts.append(part.text)
        text = "\n".join(texts)
        total_chars += len(text)
        role: Role = "user" if isinstance(step, UserInputStep) else "assistant"
        if messages and messages[-1].role == role:
            # Consecutive steps of one role form a single turn, as the templates expect.
            messages[-1] = ChatMessage(role, messages[-1].text + "\n" + text)
        else:
            messages.append(ChatMessage(role, text))
    if total_chars > limits.max_text_chars:
        raise InvalidArgument(
            f"The input has {total_chars} characters of text; the limit is {limits.max_text_chars}."
        )
    if not any(m.role == "user" and m.text.strip() for m in messages):
        raise InvalidArgument("Invalid value at 'input': the input has no text.")
    return tuple(messages)


def _unsupported_media(part: MediaContent, where: str, caps: ModelCapabilities) -> InvalidArgument:
    accepted = ", ".join(sorted(caps.input_modalities))
    return InvalidArgument(
        f"Invalid value at '{where}': model {caps.model_id!r} cannot take {part.type} input "
        f"(it accepts: {accepted}), and no configured model accepts {part.type} input yet."
    )
