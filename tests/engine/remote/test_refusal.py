"""Which upstream errors are the request's fault (``engine/remote/refusal.py``): each
upstream's own words for a request over its context, its in-band error objects, and the 400
gemserve writes for them. llama-cpp-python's messages come from its installed server code; the
others are their servers' format strings, filled in."""

from __future__ import annotations

import re

import pytest
from llama_cpp.server.errors import ErrorResponseFormatters
from llama_cpp.server.types import CreateChatCompletionRequest

from gemserve.engine.remote.refusal import (
    ContextOverflow,
    context_overflow,
    is_client_error,
    refused,
)
from gemserve.engine.remote.stream import ChunkDecoder, StreamBroken

LLAMA_SERVER = (
    "request (5000 tokens) exceeds the available context size (4096 tokens), try increasing it"
)
VLLM_PROMPT = (
    "This model's maximum context length is 4096 tokens. However, your request has 5000 input "
    "tokens. Please reduce the length of the input messages."
)
VLLM_OUTPUT = (
    "'max_tokens' or 'max_completion_tokens' is too large: 1024. This model's maximum context "
    "length is 4096 tokens and your request has 3500 input tokens (1024 > 4096 - 3500)."
)
SGLANG_OUTPUT = (
    "Requested token count exceeds the model's maximum context length of 4096 tokens. You "
    "requested a total of 4524 tokens: 3500 tokens from the input messages and 1024 tokens for "
    "the completion. Please reduce the number of tokens in the input messages or the completion "
    "to fit within the limit."
)
SGLANG_PROMPT = "The input (5000 tokens) is longer than the model's context length (4096 tokens)."


def llama_cpp_python_message(prompt: int, context: int, max_tokens: int) -> str:
    """The 400 message llama-cpp-python's server writes for its Llama's context error."""
    raised = f"Requested tokens ({prompt}) exceed context window of {context}"
    match = re.search(r"Requested tokens \((\d+)\) exceed context window of (\d+)", raised)
    request = CreateChatCompletionRequest(
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=max_tokens,
    )
    _, error = ErrorResponseFormatters.context_length_exceeded(request, match)
    return error["message"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (LLAMA_SERVER, ContextOverflow(5000, 4096)),
        ("Requested tokens (5000) exceed context window of 4096", ContextOverflow(5000, 4096)),
        (llama_cpp_python_message(5000, 4096, 1), ContextOverflow(5000, 4096, 1)),
        (VLLM_PROMPT, ContextOverflow(5000, 4096)),
        (VLLM_OUTPUT, ContextOverflow(3500, 4096, 1024)),
        (SGLANG_OUTPUT, ContextOverflow(3500, 4096, 1024)),
        (SGLANG_PROMPT, ContextOverflow(5000, 4096)),
    ],
    ids=[
        "llama-server",
        "llama-cpp-python-raised",
        "llama-cpp-python-server",
        "vllm-prompt",
        "vllm-output",
        "sglang-output",
        "sglang-prompt",
    ],
)
def test_each_upstreams_context_overflow_is_read_with_its_counts(
    message: str, expected: ContextOverflow
) -> None:
    assert context_overflow(message) == expected
    assert is_client_error(message)
    assert is_client_error({"message": message})


@pytest.mark.parametrize(
    "message",
    [
        "context shift is disabled",
        "Internal server error",
        "the model is loading",
        "request (5000 tokens) was slow",
    ],
)
def test_other_messages_are_no_context_overflow(message: str) -> None:
    assert context_overflow(message) is None
    assert not is_client_error(message)
    assert not is_client_error({"message": message})


def test_a_numeric_code_decides_before_the_wording() -> None:
    # llama-server's in-band error objects carry the HTTP status they would have had.
    assert is_client_error(
        {"code": 400, "message": LLAMA_SERVER, "type": "exceed_context_size_error"}
    )
    assert not is_client_error({"code": 500, "message": "boom", "type": "server_error"})
    # A server error is the upstream's even where its words look like the request's.
    assert not is_client_error({"code": 500, "message": LLAMA_SERVER})
    assert not is_client_error({"code": 429, "message": "slow down"})
    assert not is_client_error({"code": 503, "message": "loading"})
    assert is_client_error({"status": 422, "message": "bad field"})


def test_client_error_names_count_without_a_numeric_code() -> None:
    assert is_client_error({"type": "invalid_request_error", "message": "bad"})
    assert is_client_error({"code": "context_length_exceeded", "message": "too long"})
    assert is_client_error({"type": "BadRequestError", "message": "bad"})  # vLLM
    assert not is_client_error({"type": "server_error", "message": "bad"})
    assert not is_client_error({"message": "overloaded"})
    assert not is_client_error(None)
    assert not is_client_error(42)


def test_a_prompt_over_the_context_is_refused_in_the_embedded_engines_words() -> None:
    error = refused("pool", LLAMA_SERVER)
    assert error.message == (
        "The input is 5000 tokens long, but model 'pool' has a context of 4096 tokens (prompt "
        "and output together)."
    )


def test_a_prompt_that_fits_with_too_much_output_says_how_much_output_fits() -> None:
    error = refused("pool", VLLM_OUTPUT)
    assert "3500 tokens long" in error.message
    assert "max_output_tokens (1024) must be at most 596" in error.message


def test_any_other_refusal_keeps_the_upstreams_message() -> None:
    error = refused("pool", "'temperature' must be at most 2")
    assert error.message == "Model 'pool' refused the request: 'temperature' must be at most 2"


def test_an_in_band_client_error_is_a_refusal_and_a_server_error_is_not() -> None:
    decoder = ChunkDecoder(None, max_output_tokens=16, context_length=4096)
    with pytest.raises(StreamBroken) as caught:
        decoder.feed({"error": {"code": 400, "message": VLLM_PROMPT, "type": "BadRequestError"}})
    assert caught.value.refusal == VLLM_PROMPT
    with pytest.raises(StreamBroken) as caught:
        decoder.feed({"error": {"code": 500, "message": "overloaded"}})
    assert caught.value.refusal is None
