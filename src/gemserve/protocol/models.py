"""The Model resource (camelCase, as ``client.models.list()/get()`` parse it)."""

from __future__ import annotations

from typing import Any

from gemserve.config import ModelSpec


def model_resource(name: str, spec: ModelSpec, *, alias_of: str | None = None) -> dict[str, Any]:
    description = spec.description
    if alias_of is not None:
        description = f"Alias of {alias_of}. {description}".strip()
    if not spec.instruction_tuned:
        description = f"{description} Not instruction-tuned: a base model.".strip()
    return {
        "name": f"models/{name}",
        "baseModelId": spec.id,
        "version": "1",
        "displayName": spec.display_name or spec.id,
        "description": description,
        "inputTokenLimit": spec.context_length,
        "outputTokenLimit": spec.output_token_limit,
        "supportedGenerationMethods": [
            "createInteraction",
            "generateContent",
            "streamGenerateContent",
            "countTokens",
            "embedContent",
            "batchEmbedContents",
            "asyncBatchEmbedContent",
            "createCachedContent",
            "batchGenerateContent",
        ],
        "temperature": spec.sampling.temperature,
        "maxTemperature": 2.0,
        "topP": spec.sampling.top_p,
        "topK": spec.sampling.top_k,
        "thinking": spec.thinking.mode != "off",
    }
