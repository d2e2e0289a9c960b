"""Merging a turn's generation knobs with the model's defaults and the server's limits."""

from __future__ import annotations

from collections.abc import Callable

from gemserve.config import Limits, ModelSpec
from gemserve.engine import SamplingParams
from gemserve.errors import InvalidArgument
from gemserve.service.turn_input import GenerationKnobs

MAX_LOGPROBS = 20  # alternatives per token, as Gemini and OpenAI allow


def sampling_params(
    knobs: GenerationKnobs,
    spec: ModelSpec,
    limits: Limits,
    path: Callable[[str], str] = lambda knob: f"generation_config.{knob}",
) -> SamplingParams:
    """``path`` names a knob as the client's request does, for error messages."""
    defaults = spec.sampling
    max_tokens = knobs.max_output_tokens
    if max_tokens is None:
        max_tokens = min(defaults.max_output_tokens, spec.output_token_limit)
    elif max_tokens > spec.output_token_limit:
        raise InvalidArgument(
            f"Invalid value at '{path('max_output_tokens')}': {max_tokens} exceeds the "
            f"output token limit of model {spec.id!r} ({spec.output_token_limit})."
        )
    stops = knobs.stop_sequences
    if len(stops) > limits.max_stop_sequences:
        raise InvalidArgument(
            f"Invalid value at '{path('stop_sequences')}': {len(stops)} sequences; "
            f"the limit is {limits.max_stop_sequences}."
        )
    if any(len(s) > limits.max_stop_sequence_chars for s in stops):
        raise InvalidArgument(
            f"Invalid value at '{path('stop_sequences')}': a sequence is longer than "
            f"{limits.max_stop_sequence_chars} characters."
        )
    if knobs.logprobs is not None and not 0 <= knobs.logprobs <= MAX_LOGPROBS:
        raise InvalidArgument(
            f"Invalid value at '{path('logprobs')}': {knobs.logprobs}; between 0 and "
            f"{MAX_LOGPROBS} alternatives."
        )
    return SamplingParams(
        temperature=defaults.temperature if knobs.temperature is None else knobs.temperature,
        top_p=defaults.top_p if knobs.top_p is None else knobs.top_p,
        top_k=defaults.top_k if knobs.top_k is None else knobs.top_k,
        max_output_tokens=max_tokens,
        seed=knobs.seed,
        presence_penalty=knobs.presence_penalty or 0.0,
        frequency_penalty=knobs.frequency_penalty or 0.0,
        repeat_penalty=defaults.repeat_penalty,
        stop_sequences=stops,
        logprobs=knobs.logprobs,
    )
