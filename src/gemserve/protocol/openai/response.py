"""Response bodies of the OpenAI-compatible surface: chat completions, their stream chunks,
the model list, and OpenAI's error envelope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gemserve.engine import TokenLogprob


def completion_usage(
    prompt: int, completion: int, reasoning: int = 0, cached: int = 0, *, estimated: bool = False
) -> dict[str, Any]:
    """OpenAI counts reasoning inside ``completion_tokens``. ``estimated`` (gemserve's
    estimate: an upstream that cannot count) adds ``"estimated": true``, an extra field the
    openai SDK keeps (``usage.model_extra``)."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion + reasoning,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    if estimated:
        usage["estimated"] = True
    return usage


def chat_completion(
    completion_id: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    usage: dict[str, Any],
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_calls and not content else content,
    }
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": usage,
    }


def logprobs_content(logprobs: Sequence[TokenLogprob]) -> dict[str, Any]:
    """A choice's ``logprobs``: per token, its log probability and the alternatives."""

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {
        "content": [
            {**entry(t.token, t.logprob), "top_logprobs": [entry(a, p) for a, p in t.top]}
            for t in logprobs
        ],
        "refusal": None,
    }


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chunk(
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    index: int = 0,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A stream chunk of choice ``index``; ``delta`` None makes the usage-only chunk
    (``choices: []``)."""
    out: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [
            {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}
        ],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "gemserve"}


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": code,
        }
    }
