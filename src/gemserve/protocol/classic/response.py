"""Response bodies of the classic surface: ``GenerateContentResponse`` (whole, or one stream
chunk), its ``usageMetadata``, and ``countTokens``. camelCase, as both SDKs parse them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gemserve.engine import TokenLogprob

FINISH_STOP = "STOP"
FINISH_MAX_TOKENS = "MAX_TOKENS"


def text_part(text: str, *, thought: bool = False, signature: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"text": text}
    if thought:
        part["thought"] = True
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def candidate(
    parts: list[dict[str, Any]],
    *,
    finish_reason: str | None = None,
    index: int = 0,
    logprobs: Sequence[TokenLogprob] | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {"role": "model"}
    if parts:
        content["parts"] = parts
    out: dict[str, Any] = {"content": content, "index": index}
    if finish_reason is not None:
        out["finishReason"] = finish_reason
    if logprobs:
        out["avgLogprobs"] = sum(t.logprob for t in logprobs) / len(logprobs)
        out["logprobsResult"] = logprobs_result(logprobs)
    return out


def logprobs_result(logprobs: Sequence[TokenLogprob]) -> dict[str, Any]:
    """``logprobsResult``: the chosen token per step, and the top candidates at each."""
    return {
        "topCandidates": [
            {"candidates": [{"token": t, "logProbability": p} for t, p in token.top]}
            for token in logprobs
        ],
        "chosenCandidates": [
            {"token": token.token, "logProbability": token.logprob} for token in logprobs
        ],
        "logProbabilitySum": sum(t.logprob for t in logprobs),
    }


def generate_content_response(
    candidates: list[dict[str, Any]],
    *,
    model_version: str,
    response_id: str,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "candidates": candidates,
        "modelVersion": model_version,
        "responseId": response_id,
    }
    if usage is not None:
        out["usageMetadata"] = usage
    return out


def usage_metadata(
    prompt_tokens: int,
    candidates_tokens: int,
    thought_tokens: int = 0,
    *,
    cached: int = 0,
    prompt_by_modality: Mapping[str, int] | None = None,
    estimated: bool = False,
) -> dict[str, Any]:
    """``estimated``: the counts are gemserve's estimate (an upstream that cannot count),
    written as ``"estimated": true`` only then; the Python SDK drops fields it does not
    know, so unary responses also carry the ``X-Gemserve-Usage-Estimated`` header."""
    by_modality = prompt_by_modality or {"text": prompt_tokens}
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidates_tokens,
        "totalTokenCount": prompt_tokens + candidates_tokens + thought_tokens,
        "promptTokensDetails": modality_counts(by_modality),
    }
    if thought_tokens:
        usage["thoughtsTokenCount"] = thought_tokens
    if cached:
        usage["cachedContentTokenCount"] = cached
    if estimated:
        usage["estimated"] = True
    return usage


def modality_counts(by_modality: Mapping[str, int]) -> list[dict[str, Any]]:
    """``[{modality: "TEXT", tokenCount}]``: the classic surface writes modalities upper-case."""
    return [
        {"modality": modality.upper(), "tokenCount": tokens}
        for modality, tokens in by_modality.items()
        if tokens
    ]


def count_tokens_response(
    total: int, by_modality: Mapping[str, int], *, estimated: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "totalTokens": total,
        "promptTokensDetails": modality_counts(by_modality),
    }
    if estimated:
        out["estimated"] = True
    return out
