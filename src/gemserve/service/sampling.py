"""Merging a request's generation_config with the model's defaults and the server's limits."""

from __future__ import annotations

from gemserve.config import Limits, ModelSpec
from gemserve.engine import SamplingParams
from gemserve.errors import InvalidArgument
from gemserve.protocol.interactions import GenerationConfig

_UNSERVED_CONFIG = (
    "tool_choice",
    "image_config",
    "speech_config",
    "transcription_config",
    "video_config",
)


def sampling_params(
    config: GenerationConfig | None, spec: ModelSpec, limits: Limits
) -> SamplingParams:
    config = config or GenerationConfig()
    for name in _UNSERVED_CONFIG:
        if getattr(config, name) is not None:
            raise InvalidArgument(
                f"Invalid value at 'generation_config.{name}': not supported by model {spec.id!r}."
            )
    defaults = spec.sampling
    max_tokens = config.max_output_tokens
    if max_tokens is None:
        max_tokens = min(defaults.max_output_tokens, spec.output_token_limit)
    elif max_tokens > spec.output_token_limit:
        raise InvalidArgument(
            f"Invalid value at 'generation_config.max_output_tokens': {max_tokens} exceeds the "
            f"output token limit of model {spec.id!r} ({spec.output_token_limit})."
        )
    stops = tuple(config.stop_sequences or ())
    if len(stops) > limits.max_stop_sequences:
        raise InvalidArgument(
            f"Invalid value at 'generation_config.stop_sequences': {len(stops)} sequences; "
            f"the limit is {limits.max_stop_sequences}."
        )
    if any(len(s) > limits.max_stop_sequence_chars for s in stops):
        raise InvalidArgument(
            "Invalid value at 'generation_config.stop_sequences': a sequence is longer than "
            f"{limits.max_stop_sequence_chars} characters."
        )
    return SamplingParams(
        temperature=defaults.temperature if config.temperature is None else config.temperature,
        top_p=defaults.top_p if config.top_p is None else config.top_p,
        top_k=defaults.top_k if config.top_k is None else config.top_k,
        max_output_tokens=max_tokens,
        seed=config.seed,
        presence_penalty=config.presence_penalty or 0.0,
        frequency_penalty=config.frequency_penalty or 0.0,
        repeat_penalty=defaults.repeat_penalty,
        stop_sequences=stops,
        grammar=spec.grammar,
    )
