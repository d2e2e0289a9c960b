"""Which upstream errors are the request's fault, and the 400 that says so.

A client error (a prompt over the context, a field the upstream rejects) fails the same way on
every upstream and on every retry, so it is passed on as a 400 and neither retried nor held
against the upstream (no ejection); anything else (a crash, a timeout, overload) is the
upstream's. Upstreams say which in an HTTP status before the stream, in an error object inside
it (vLLM; llama-server after its first result), or not at all: llama-cpp-python's server
checks the prompt against its context only once a stream's headers are out and then cuts the
connection (``RemoteEngine`` asks it again unstreamed to learn why).

A context overflow is recognised by each upstream's wording and reported in the embedded
engine's words, with both token counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gemserve.errors import InvalidArgument

# HTTP statuses that are the request's fault (404 is not: another upstream may serve the model).
CLIENT_STATUSES = frozenset({400, 413, 422})

# ``type`` or ``code`` of an in-band error object that is the request's fault.
_CLIENT_KINDS = frozenset(
    {
        "invalid_request_error",  # OpenAI, llama-cpp-python
        "context_length_exceeded",  # OpenAI, llama-cpp-python (as ``code``)
        "exceed_context_size_error",  # llama-server
        "BadRequestError",  # vLLM
    }
)

# One per upstream's wording of a request over its context: {P} the prompt's tokens, {C} the
# context, {O} the output asked for (where a prompt that fits is refused with its output).
_OVERFLOWS = tuple(
    re.compile(
        pattern.format(P=r"(?P<prompt>\d+)", C=r"(?P<context>\d+)", O=r"(?P<output>\d+)"), re.S
    )
    for pattern in (
        # llama-server: "request (5000 tokens) exceeds the available context size (4096
        # tokens), try increasing it"
        r"request \({P} tokens\) exceeds the available context size \({C} tokens",
        # llama-cpp-python, as its Llama raises it (a stream's error, in its log)
        r"Requested tokens \({P}\) exceed context window of {C}",
        # llama-cpp-python's server (and older vLLM): "This model's maximum context length is
        # 4096 tokens. However, you requested 5024 tokens (5000 in the messages, 24 in the
        # completion). ..."
        r"maximum context length is {C} tokens[.,].*?\({P} in the messages(?:, {O} in the)?",
        # vLLM: "This model's maximum context length is 4096 tokens. However, your request has
        # 5000 input tokens. ..."
        r"maximum context length is {C} tokens[.,].*?request has {P} input tokens",
        # vLLM, a prompt that fits: "'max_tokens' or 'max_completion_tokens' is too large:
        # 1024. This model's maximum context length is 4096 tokens and your request has 3500
        # input tokens (1024 > 4096 - 3500)."
        r"too large: {O}\. This model's maximum context length is {C} tokens and your "
        r"request has {P} input tokens",
        # SGLang: "Requested token count exceeds the model's maximum context length of 4096
        # tokens. You requested a total of 4524 tokens: 3500 tokens from the input messages
        # and 1024 tokens for the completion. ..."
        r"maximum context length of {C} tokens\. You requested a total of \d+ tokens: {P} "
        r"tokens from the input messages and {O} tokens",
        # SGLang (and services on it): "The input (5000 tokens) is longer than the model's
        # context length (4096 tokens)."
        r"input \({P} tokens\) is longer than the model's context length \({C} tokens",
    )
)


@dataclass(frozen=True)
class ContextOverflow:
    """A request that does not fit, as the upstream counted it: its prompt, the context, and
    the output it asked for (None where the upstream does not say)."""

    prompt_tokens: int
    context: int
    output_tokens: int | None = None


def context_overflow(message: str) -> ContextOverflow | None:
    """The counts in an upstream's message that a request is over its context, else None."""
    for pattern in _OVERFLOWS:
        found = pattern.search(message)
        if found is not None:
            output = found.groupdict().get("output")
            return ContextOverflow(
                int(found["prompt"]), int(found["context"]), int(output) if output else None
            )
    return None


def is_client_error(error: object) -> bool:
    """Whether an in-band error (the ``error`` of an SSE chunk: an object or a string) is the
    request's fault. A numeric ``code`` decides where there is one; else its ``type`` or
    ``code`` name, else its message's wording."""
    if isinstance(error, str):
        return context_overflow(error) is not None
    if not isinstance(error, dict):
        return False
    for key in ("code", "status"):
        value = error.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value in CLIENT_STATUSES
    if error.get("type") in _CLIENT_KINDS or error.get("code") in _CLIENT_KINDS:
        return True
    message = error.get("message")
    return isinstance(message, str) and context_overflow(message) is not None


def refused(model_id: str, message: str) -> InvalidArgument:
    """The 400 for an upstream's client error: a context overflow in the embedded engine's
    words (a prompt that fits but leaves too little room for ``max_output_tokens``, as vLLM
    and SGLang refuse it, says so), anything else with the upstream's message."""
    overflow = context_overflow(message)
    if overflow is None:
        return InvalidArgument(f"Model {model_id!r} refused the request: {message}")
    prompt, context = overflow.prompt_tokens, overflow.context
    if prompt >= context:
        return InvalidArgument(
            f"The input is {prompt} tokens long, but model {model_id!r} has a context of "
            f"{context} tokens (prompt and output together)."
        )
    asked = "" if overflow.output_tokens is None else f" ({overflow.output_tokens})"
    return InvalidArgument(
        f"The input is {prompt} tokens long and model {model_id!r} has a context of {context} "
        f"tokens (prompt and output together): max_output_tokens{asked} must be at most "
        f"{context - prompt}."
    )
