"""Server settings: CLI flags over ``GEMSERVE_*`` environment variables over the TOML file.

The TOML file may hold a ``[server]`` table (these settings), a ``[limits]`` table, a
``[[models]]`` array and an ``[aliases]`` table (see :mod:`gemserve.config.models`).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Limits(BaseModel):
    """Explicit request limits; every one is documented in the README."""

    model_config = ConfigDict(extra="forbid")

    # The whole request body: inline (base64) media counts here; larger media go by Files API.
    max_body_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    # Nesting of arrays and objects in a JSON body (protobuf's own parser stops at 100).
    max_json_depth: int = Field(default=100, ge=8, le=200)
    max_input_parts: int = Field(default=256, ge=1)
    max_text_chars: int = Field(default=1_000_000, ge=1)
    max_stop_sequences: int = Field(default=16, ge=0)
    max_stop_sequence_chars: int = Field(default=256, ge=1)
    # The JSON Schema of a structured-output request, serialised.
    max_schema_bytes: int = Field(default=64 * 1024, ge=2)
    # Functions declared in one request (their parameter schemas together count toward
    # max_schema_bytes).
    max_tools: int = Field(default=128, ge=1)
    # A JSON request body must arrive within this (a stalled or slowloris sender gets 408).
    body_read_timeout_seconds: float = Field(default=30.0, gt=0)
    # A request's headers must be complete within this of the connection opening (or of the
    # previous response on a kept-alive connection); otherwise the connection is closed.
    header_read_timeout_seconds: float = Field(default=10.0, gt=0)
    # Answers to one request (candidateCount, n), decoded side by side.
    max_candidates: int = Field(default=8, ge=1)
    # Requests waiting for a free engine slot, per model; beyond this a 429 is returned.
    max_queued_requests: int = Field(default=64, ge=0)
    # Turns followed back through previous_interaction_id.
    max_conversation_turns: int = Field(default=1000, ge=1)
    # Files API: one file, and everything one tenant holds (files and pending uploads).
    max_file_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_tenant_file_bytes: int = Field(default=20 * 1024**3, ge=1)
    # Media, per request (the history through previous_interaction_id included). Each cap is
    # checked before the whole part is decoded.
    max_media_parts: int = Field(default=32, ge=0)
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    max_audio_seconds: float = Field(default=600.0, gt=0)
    max_video_seconds: float = Field(default=600.0, gt=0)
    max_video_frames: int = Field(default=32, ge=1)
    max_document_pages: int = Field(default=100, ge=1)
    # Texts in one embedding request (batchEmbedContents' requests, OpenAI's input list), as
    # Gemini's own limit; each text may be as long as the model's context.
    max_embedding_inputs: int = Field(default=100, ge=1)
    # cachedContents: one cache's contents, systemInstruction and tools as JSON (inline media
    # count), the live caches one tenant may hold, and the longest ttl (or expireTime ahead).
    max_cache_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_tenant_caches: int = Field(default=100, ge=1)
    max_cache_ttl_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    # Batches: requests in one batch, and pending or running batches per tenant.
    max_batch_requests: int = Field(default=10_000, ge=1)
    max_tenant_batches: int = Field(default=100, ge=1)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gemserve"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEMSERVE_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Field(default_factory=_default_data_dir)
    config: Path | None = None
    # SQLAlchemy URL (postgresql://… for PostgreSQL); default: SQLite in the data dir.
    database_url: str | None = None
    # Only keys made with `gemserve keys create`; mandatory off loopback.
    require_keys: bool = False
    interaction_ttl_days: float = Field(default=55.0, gt=0)
    sweep_interval_seconds: float = Field(default=600.0, gt=0)
    # Uploaded files expire (blob and metadata) after this long, as on Gemini.
    file_ttl_hours: float = Field(default=48.0, gt=0)
    # An upload that receives nothing for this long is abandoned and its bytes deleted.
    upload_timeout_seconds: float = Field(default=3600.0, gt=0)
    # Where file bytes live: empty, the folder data_dir/files; "s3://bucket/prefix", an
    # S3-compatible bucket, which replicas sharing a database must share. Credentials come
    # from the environment as for the AWS tools (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    blob_url: str = ""
    # Another S3-compatible service than AWS (MinIO, Ceph, R2, …), and the bucket's region.
    # A plain http:// endpoint is taken on loopback, elsewhere only with s3_allow_http.
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_allow_http: bool = False
    # A cachedContent created without ttl or expireTime lives this long (Gemini: one hour).
    cache_default_ttl_seconds: float = Field(default=3600.0, gt=0)
    # Batch requests decoding at once, server-wide (each takes an engine slot; at most
    # slots - 1 of them, so interactive requests always keep one). A batch not finished
    # batch_deadline_hours after its creation ends as BATCH_STATE_EXPIRED; an ended batch
    # and its results are deleted batch_ttl_hours after it ended.
    batch_concurrency: int = Field(default=2, ge=1, le=64)
    batch_deadline_hours: float = Field(default=48.0, gt=0)
    batch_ttl_hours: float = Field(default=48.0, gt=0)
    # Replicas sharing a database: a replica's claim on the batch it runs holds this long and
    # is renewed every third of it; a batch left by a replica that died is taken over by
    # another after at most this long.
    batch_lease_seconds: float = Field(default=30.0, gt=0)
    default_model: str = "smollm2-135m-instruct"
    # Concurrent sequences decoded together per model (llama.cpp n_seq_max).
    slots: int = Field(default=4, ge=1, le=64)
    # Tokens per llama_decode call: decoding sequences plus prefill chunks.
    batch_tokens: int = Field(default=512, ge=16, le=8192)
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    # Give a decode thread back for each core other work is using (engine/llama/cores.py);
    # off: always `threads`.
    adaptive_threads: bool = True
    keepalive_seconds: float = Field(default=15.0, gt=0)
    # Speech recognition for audio (and video sound tracks): "tiny.en" (bundled, English),
    # "base" (bundled multilingual; needs the `whisper-base` extra), a directory holding a
    # CTranslate2 Whisper model, or "none".
    transcription_model: str = "tiny.en"
    transcription_language: str | None = None
    # Hosts whose http(s) URLs media parts may name (fetched once, no redirects, capped at
    # max_body_bytes). Empty: nothing is fetched. Private addresses only with media_fetch_private.
    media_fetch_hosts: list[str] = Field(default_factory=list)
    media_fetch_private: bool = False
    # Key of thought signatures (a Fernet key); by default one is made in the data dir.
    # Replicas that share a database must share it.
    thought_signing_key: str | None = None
    # Replicas sharing one PostgreSQL: a replica that has not renewed its lease for this long
    # is lost, and its running interactions are failed by a survivor. Other replicas' events
    # and cancel requests are polled this often.
    replica_lease_seconds: float = Field(default=10.0, ge=1.0)
    cluster_poll_seconds: float = Field(default=0.1, gt=0, le=5.0)
    # On SIGTERM: open streams and running interactions get this long to finish before they
    # are cancelled.
    drain_seconds: float = Field(default=10.0, ge=0)
    log_level: str = "info"
    # "text" (one human-readable line per record) or "json" (one JSON object per line).
    log_format: str = "text"
    # GET /metrics (Prometheus text, no API key: keep it off public networks); false removes
    # the route and every instrument.
    metrics_enabled: bool = True
    # Token counters get a tenant label too (one series per tenant: mind the cardinality).
    metrics_tenant_label: bool = False
    limits: Limits = Field(default_factory=Limits)
    # Raw [[models]] and [aliases] tables; parsed by ModelRegistry.
    models: list[dict[str, Any]] = Field(default_factory=list)
    aliases: dict[str, str] = Field(default_factory=dict)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value.lower() not in {"text", "json"}:
            raise ValueError(f"unknown log format {value!r}: expected text or json")
        return value.lower()

    @field_validator("blob_url")
    @classmethod
    def _blob_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,62}(/[^?#]*)?", value):
            raise ValueError(f"blob_url {value!r}: expected s3://bucket or s3://bucket/prefix")
        return value


def _read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    values: dict[str, Any] = dict(raw.get("server", {}))
    for key in ("limits", "models", "aliases"):
        if key in raw:
            values[key] = raw[key]
    return values


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build settings with precedence CLI overrides > environment > config file > defaults."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    from_env = Settings()
    config_path = overrides.get("config") or from_env.config
    file_values = _read_toml(Path(config_path)) if config_path else {}
    env_values = {name: getattr(from_env, name) for name in from_env.model_fields_set}
    merged = {**file_values, **env_values, **overrides}
    if config_path:
        merged["config"] = Path(config_path)
    return Settings(**merged)
