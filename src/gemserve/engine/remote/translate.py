"""A :class:`GenerationRequest` as an OpenAI chat-completions body.

The body is built in two steps: :func:`chat_body` writes what every OpenAI-compatible
engine takes (messages with images as data URLs and sound as ``input_audio``, tools,
``response_format``, sampling, ``stream_options``), and :func:`for_upstream` adds what only
some upstream kinds take (a GBNF grammar, a thinking budget, ``top_k``…), or refuses the
request with a 400 naming what that upstream cannot do.
"""

from __future__ import annotations

import base64
import io
import json
import re
import wave
from typing import Any

import numpy as np

from gemserve.config.remote import UpstreamKind
from gemserve.engine.base import (
    MEDIA_PLACEHOLDER,
    AudioInput,
    ChatMessage,
    Constraint,
    GenerationRequest,
    ImageInput,
    ToolUse,
)
from gemserve.errors import InvalidArgument

Json = dict[str, Any]

# A one-of-these-strings Lark grammar, as the turn pipeline writes text/x.enum.
_ENUM_LARK = re.compile(r'^start:\s*("(?:[^"\\]|\\.)*"(?:\s*\|\s*"(?:[^"\\]|\\.)*")*)\s*$')
_LARK_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')

# Knobs each kind understands beyond the OpenAI set (others drop or reject them).
_TAKES_TOP_K = frozenset({"llama-server", "llama-cpp-python", "vllm", "sglang", "ollama"})
_TAKES_REPEAT_PENALTY = frozenset({"llama-server", "vllm", "sglang"})
_TAKES_TEMPLATE_KWARGS = frozenset({"llama-server", "vllm", "sglang"})
# A minimum output length (a thinking level's floor on the reasoning pass): both name it so.
_TAKES_MIN_TOKENS = frozenset({"vllm", "sglang"})


def chat_body(request: GenerationRequest, model: str, modalities: frozenset[str]) -> Json:
    """The OpenAI part of the body. Raises ``InvalidArgument`` for media the model cannot
    take (the capability is named)."""
    sampling = request.sampling
    body: Json = {
        "model": model,
        "messages": [_message(m, modalities) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_output_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop_sequences:
        body["stop"] = list(sampling.stop_sequences)
    if sampling.presence_penalty:
        body["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        body["frequency_penalty"] = sampling.frequency_penalty
    if request.tools is not None:
        body.update(_tools(request.tools))
    constraint = request.constraint
    if constraint is not None and constraint.syntax == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": json.loads(constraint.grammar)},
        }
    return body


def for_upstream(
    body: Json,
    request: GenerationRequest,
    kind: UpstreamKind,
    model: str,
    *,
    model_id: str,
) -> Json:
    """``body`` for an upstream of ``kind``: its extensions added, or a 400 for a request it
    cannot serve."""
    out = dict(body)
    out["model"] = model
    sampling = request.sampling
    if sampling.top_k > 0 and kind in _TAKES_TOP_K:
        out["top_k"] = sampling.top_k
    if sampling.repeat_penalty != 1.0 and kind in _TAKES_REPEAT_PENALTY:
        out["repetition_penalty" if kind in ("vllm", "sglang") else "repeat_penalty"] = (
            sampling.repeat_penalty
        )
    if sampling.min_output_tokens > 0 and kind in _TAKES_MIN_TOKENS:
        out["min_tokens"] = sampling.min_output_tokens
    if kind == "llama-cpp-python":
        # Its default is 1.1, not off: always say which.
        out["repeat_penalty"] = sampling.repeat_penalty
        response_format = out.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            # It takes a schema as {"type": "json_object", "schema": …} and answers
            # "json_schema" with a 422.
            out["response_format"] = {
                "type": "json_object",
                "schema": response_format["json_schema"]["schema"],
            }
    control = request.reasoning
    if control is not None:
        thinking = control.budget > 0
        if kind in _TAKES_TEMPLATE_KWARGS:
            out["chat_template_kwargs"] = {"enable_thinking": thinking}
        if kind == "llama-server" and thinking:
            # The server writes the closing tag itself at the budget, as the llama engine does.
            out["thinking_budget_tokens"] = control.budget
        elif kind == "ollama":
            out["reasoning_effort"] = "medium" if thinking else "none"
    if kind == "llama-server" and isinstance(out.get("tool_choice"), dict):
        # llama-server takes the strings only; the tools offered are already the one named.
        out["tool_choice"] = "required"
    constraint = request.constraint
    if constraint is not None and constraint.syntax != "json_schema":
        out.update(_grammar(constraint, kind, model_id, tools=request.tools is not None))
    return out


# ----- messages ------------------------------------------------------------------------------


def _message(message: ChatMessage, modalities: frozenset[str]) -> Json:
    if message.role == "tool":
        out: Json = {"role": "tool", "content": message.text}
        if message.tool_call_id is not None:
            out["tool_call_id"] = message.tool_call_id
        if message.tool_name is not None:
            out["name"] = message.tool_name
        return out
    content: str | list[Json] | None = (
        _parts(message, modalities) if message.media else message.text
    )
    out = {"role": message.role, "content": content}
    if message.tool_calls:
        if not message.text:
            out["content"] = None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return out


def _parts(message: ChatMessage, modalities: frozenset[str]) -> list[Json]:
    """Text split at the media placeholders, each medium in its place."""
    pieces = message.text.split(MEDIA_PLACEHOLDER)
    if len(pieces) != len(message.media) + 1:
        raise InvalidArgument("A message's media parts and its placeholders do not match.")
    parts: list[Json] = []
    for i, piece in enumerate(pieces):
        if piece:
            parts.append({"type": "text", "text": piece})
        if i < len(message.media):
            parts.append(_medium(message.media[i], modalities))
    return parts


def _medium(item: ImageInput | AudioInput, modalities: frozenset[str]) -> Json:
    if isinstance(item, ImageInput):
        if "image" not in modalities:
            raise InvalidArgument("This model's upstream does not take images (image input).")
        return {"type": "image_url", "image_url": {"url": image_data_url(item)}}
    if "audio" not in modalities:
        raise InvalidArgument("This model's upstream does not take sound (audio input).")
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(wav_bytes(item)).decode(), "format": "wav"},
    }


def image_data_url(image: ImageInput) -> str:
    """The pixels as a PNG data URL (lossless: the upstream sees what gemserve decoded)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise InvalidArgument(
            "Images cannot be sent to this model's upstream: Pillow is not installed."
        ) from None
    picture = Image.frombytes("RGB", (image.width, image.height), image.rgb)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def wav_bytes(audio: AudioInput) -> bytes:
    """Mono float32 samples as a 16-bit PCM WAV file."""
    samples = np.frombuffer(audio.samples, dtype=np.float32)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio.sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


# ----- tools and grammars --------------------------------------------------------------------


def _tools(tools: ToolUse) -> Json:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls``. ``allowed`` narrows the tools
    offered (OpenAI has no "auto among these")."""
    if tools.mode == "none":
        offered = tools.tools
        choice: str | Json = "none"
    else:
        offered = tools.callable()
        if tools.mode == "any":
            choice = (
                {"type": "function", "function": {"name": offered[0].name}}
                if len(offered) == 1
                else "required"
            )
        else:
            choice = "auto"
    if not offered:
        return {}
    out: Json = {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": json.loads(tool.parameters),
                },
            }
            for tool in offered
        ],
        "tool_choice": choice,
    }
    if tools.mode != "none":
        out["parallel_tool_calls"] = tools.parallel
    return out


def enum_choices(grammar: str) -> list[str] | None:
    """The strings of a ``start: "a" | "b"`` Lark grammar (text/x.enum), else None."""
    match = _ENUM_LARK.match(grammar.strip())
    if match is None:
        return None
    try:
        return [json.loads(s) for s in _LARK_STRING.findall(match.group(1))]
    except json.JSONDecodeError:
        return None


def _gbnf_literal(text: str) -> str:
    escaped = "".join(
        c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" if ord(c) < 0x100 else c
        for c in text
    )
    return f'"{escaped}"'


def _grammar(constraint: Constraint, kind: UpstreamKind, model_id: str, *, tools: bool) -> Json:
    if tools:
        raise InvalidArgument(
            f"Model {model_id!r} has a grammar of its own (its configuration), so its output "
            "cannot be held to tool calls as well."
        )
    if constraint.syntax == "lark":
        choices = enum_choices(constraint.grammar)
        if choices is None or kind not in ("llama-server", "llama-cpp-python", "vllm", "sglang"):
            raise InvalidArgument(
                f"Model {model_id!r} is served by an upstream ({kind}) that cannot hold its "
                "output to a grammar of this kind (enum output, text/x.enum); use JSON output "
                "with an enum schema instead."
            )
        if kind == "vllm":
            return {"structured_outputs": {"choice": choices}}
        gbnf = "root ::= " + " | ".join(_gbnf_literal(c) for c in choices)
        return {"ebnf": gbnf} if kind == "sglang" else {"grammar": gbnf}
    # GBNF (a model-level grammar).
    if kind in ("llama-server", "llama-cpp-python"):
        return {"grammar": constraint.grammar}
    if kind == "vllm":
        return {"structured_outputs": {"grammar": constraint.grammar}}
    if kind == "sglang":
        return {"ebnf": constraint.grammar}
    raise InvalidArgument(
        f"Model {model_id!r} has a GBNF grammar, which its upstream ({kind}) cannot enforce "
        "(llama-server, llama-cpp-python, vLLM and SGLang can)."
    )
