"""Response builders of the Interactions surface: plain dicts, snake_case, as the SDKs parse
them. The hot streaming path encodes one dict per token, so nothing here validates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from gemserve.protocol.common import iso_utc
from gemserve.protocol.interactions.status import TERMINAL_STATUSES


class StoredInteraction(Protocol):
    """What a view reads of a stored interaction (the store's record has these fields)."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def input(self) -> list[dict[str, Any]]: ...
    @property
    def system_instruction(self) -> str | None: ...
    @property
    def generation_config(self) -> dict[str, Any] | None: ...
    @property
    def previous_interaction_id(self) -> str | None: ...
    @property
    def steps(self) -> list[dict[str, Any]]: ...
    @property
    def usage(self) -> dict[str, Any] | None: ...
    @property
    def error(self) -> dict[str, Any] | None: ...


def interaction_header(record: StoredInteraction) -> dict[str, Any]:
    """The fields every view and event of an interaction starts with."""
    created = iso_utc(record.created_at)
    header: dict[str, Any] = {
        "id": record.id,
        "name": record.id,
        "object": "interaction",
        "model": record.model,
        "created": created,
        "updated": created,
    }
    if record.previous_interaction_id is not None:
        header["previous_interaction_id"] = record.previous_interaction_id
    return header


def interaction_view(
    record: StoredInteraction,
    running: Mapping[str, Any] | None = None,
    *,
    include_input: bool = False,
) -> dict[str, Any]:
    """The full timeline of an interaction: its input steps, then its output so far.

    ``running`` is the fold of a run still in progress (its status, steps and usage win over
    the row's, which is only written at the end).
    """
    out = interaction_header(record)
    if running is not None:
        status, output, usage = running["status"], running["steps"], running.get("usage")
        out["updated"] = running.get("updated", out["updated"])
    else:
        status, output, usage = record.status, record.steps, record.usage
        out["updated"] = iso_utc(record.updated_at)
    out["status"] = status
    out["steps"] = [*record.input, *output]
    if usage is not None:
        out["usage"] = usage
    if record.system_instruction is not None:
        out["system_instruction"] = record.system_instruction
    if record.generation_config is not None:
        out["generation_config"] = record.generation_config
    if record.error is not None and status in TERMINAL_STATUSES:
        out["errors"] = [record.error]
    if include_input:
        out["input"] = record.input
    return out


PREVIEW_CHARS = 200


def conversation_item(record: StoredInteraction) -> dict[str, Any]:
    """One entry of ``GET /interactions`` (a gemserve extension: the playground's list of
    conversations): the header and status of a conversation's last turn, and the start of
    that turn's input text as ``input_preview``."""
    out = interaction_header(record)
    out["updated"] = iso_utc(record.updated_at)
    out["status"] = record.status
    texts: list[str] = []
    for step in record.input:
        if step.get("type") == "function_result":
            texts.append(f"[result of {step.get('name') or step.get('call_id')}]")
        for part in step.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
    out["input_preview"] = " ".join(texts)[:PREVIEW_CHARS]
    return out


def usage_dict(
    input_tokens: int,
    output_tokens: int,
    thought_tokens: int = 0,
    *,
    cached: int = 0,
    input_by_modality: Mapping[str, int] | None = None,
    estimated: bool = False,
) -> dict[str, Any]:
    """``estimated``: the counts are gemserve's estimate (an upstream that cannot count);
    written as ``"estimated": true`` only then, an extra field the SDKs keep."""
    by_modality = input_by_modality or {"text": input_tokens}
    usage: dict[str, Any] = {
        "total_input_tokens": input_tokens,
        "total_output_tokens": output_tokens,
        "total_thought_tokens": thought_tokens,
        "total_cached_tokens": cached,
        "total_tool_use_tokens": 0,
        "total_tokens": input_tokens + output_tokens + thought_tokens,
        "input_tokens_by_modality": [
            {"modality": modality, "tokens": tokens} for modality, tokens in by_modality.items()
        ],
        "output_tokens_by_modality": [{"modality": "text", "tokens": output_tokens}],
    }
    if cached:
        usage["cached_tokens_by_modality"] = [{"modality": "text", "tokens": cached}]
    if estimated:
        usage["estimated"] = True
    return usage
