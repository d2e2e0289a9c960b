"""`gemserve models list`: the configured models, as `serve` reads them, with what their GGUF
headers say (quantization, trained context) and what they can do."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gemserve.config import ModelRegistry, ModelSpec, Settings
from gemserve.config.gguf import GGUFError, cpu_batching_warning, read_header
from gemserve.config.models import GEMINI_EMBEDDING_MODEL_NAMES, GEMINI_MODEL_NAMES


@dataclass
class ModelRow:
    id: str
    default: bool
    engine: str
    path: str | None
    exists: bool | None
    size_bytes: int | None
    quantization: str | None
    weight_type: str | None
    context_length: int
    trained_context_length: int | None
    modalities: list[str]
    thinking: str
    tool_format: str | None
    embedding: str | None
    aliases: list[str]
    gemini_names: int
    upstreams: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def describe(settings: Settings) -> list[ModelRow]:
    """One row per configured model, the default first."""
    registry = ModelRegistry.from_config(settings.models, settings.aliases, settings.default_model)
    aliases = registry.aliases
    gemini = set(GEMINI_MODEL_NAMES + GEMINI_EMBEDDING_MODEL_NAMES) - set(settings.aliases)
    rows = []
    for spec in sorted(registry.specs, key=lambda s: s.id != registry.default_id):
        named = sorted(a for a, target in aliases.items() if target == spec.id and a not in gemini)
        implicit = sum(1 for a, target in aliases.items() if target == spec.id and a in gemini)
        row = _llama_row(spec) if spec.engine == "llama" else _remote_row(spec)
        row.default = spec.id == registry.default_id
        row.aliases = named
        row.gemini_names = implicit
        rows.append(row)
    return rows


def _llama_row(spec: ModelSpec) -> ModelRow:
    from gemserve.engine.tools.formats import detect

    path = spec.gguf_path()
    row = ModelRow(
        id=spec.id,
        default=False,
        engine=spec.engine,
        path=str(path),
        exists=path.is_file(),
        size_bytes=path.stat().st_size if path.is_file() else None,
        quantization=None,
        weight_type=None,
        context_length=spec.context_length,
        trained_context_length=None,
        modalities=["text"],
        thinking=spec.thinking.mode,
        tool_format=spec.tool_format,
        embedding=spec.embedding_pooling,
        aliases=[],
        gemini_names=0,
    )
    if not row.exists:
        row.warnings.append(f"file not found: {path}")
        return row
    try:
        header = read_header(path)
    except (GGUFError, OSError) as exc:
        row.warnings.append(f"unreadable GGUF header: {exc}")
        return row
    row.quantization = header.quantization
    row.weight_type = header.weight_type
    row.trained_context_length = header.context_length
    if header.context_length is not None:
        # The engine caps the configured context at the trained one, as here.
        row.context_length = min(spec.context_length, header.context_length)
    if spec.tool_format is None:
        from gemserve.engine.chat_template import CHATML_TEMPLATE

        template = spec.chat_template or header.chat_template or CHATML_TEMPLATE
        row.tool_format = detect(template).name
    if header.batches_badly_on_cpu and header.weight_type is not None:
        row.warnings.append(cpu_batching_warning(header.weight_type))
    mmproj = spec.mmproj_path()
    if mmproj is not None:
        row.modalities += _projector_modalities(mmproj, row.warnings)
    return row


def _projector_modalities(path: Path, warnings: list[str]) -> list[str]:
    try:
        header = read_header(path)
    except (GGUFError, OSError) as exc:
        warnings.append(f"unreadable mmproj {path}: {exc}")
        return []
    found = [m for m in ("image", "audio") if header.has(f"clip.has_{_ENCODERS[m]}_encoder")]
    # Older projectors predate the flags: vision only.
    return found or ["image"]


_ENCODERS = {"image": "vision", "audio": "audio"}


def _remote_row(spec: ModelSpec) -> ModelRow:
    return ModelRow(
        id=spec.id,
        default=False,
        engine=spec.engine,
        path=None,
        exists=None,
        size_bytes=None,
        quantization=None,
        weight_type=None,
        context_length=spec.context_length,
        trained_context_length=None,
        modalities=list(spec.modalities or ["text"]),
        thinking=spec.thinking.mode,
        tool_format=None,
        embedding=(
            f"{spec.embedding_dimensions} dimensions" if spec.embedding_dimensions else None
        ),
        aliases=[],
        gemini_names=0,
        upstreams=[u.url for u in spec.upstreams],
    )


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def print_rows(rows: list[ModelRow], out: TextIO) -> None:
    for row in rows:
        print(f"{row.id}{'  (default)' if row.default else ''}", file=out)
        fields: list[tuple[str, str]] = []
        if row.engine == "llama":
            fields.append(("file", row.path or ""))
            fields.append(("quantization", row.quantization or "unknown"))
            if row.size_bytes is not None:
                fields.append(("size", human_size(row.size_bytes)))
        else:
            fields.append(("engine", "openai (remote)"))
            fields.append(("upstreams", ", ".join(row.upstreams)))
        context = f"{row.context_length} tokens"
        if row.trained_context_length is not None:
            context += f" (trained {row.trained_context_length})"
        fields.append(("context", context))
        fields.append(("modalities", ", ".join(row.modalities)))
        fields.append(("thinking", row.thinking))
        if row.tool_format is not None:
            fields.append(("tools", row.tool_format))
        fields.append(("embeddings", row.embedding or "no"))
        names = list(row.aliases)
        if row.gemini_names:
            names.append(f"+{row.gemini_names} Gemini model names")
        fields.append(("aliases", ", ".join(names) or "none"))
        for label, value in fields:
            print(f"  {label + ':':<14}{value}", file=out)
        for warning in row.warnings:
            print(f"  warning: {warning}", file=out)
        print(file=out)


def list_models(settings: Settings, *, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        rows = describe(settings)
    except (ValueError, OSError) as exc:
        print(f"gemserve: {exc}", file=sys.stderr)
        return 2
    if as_json:
        payload: list[dict[str, Any]] = [asdict(row) for row in rows]
        print(json.dumps(payload, indent=2), file=out)
    else:
        print_rows(rows, out)
    return 0
