"""The ``[[models]]`` fields of a model served by a pool of OpenAI-compatible engines
(``engine = "openai"``): vLLM, SGLang, llama.cpp's ``llama-server``, llama-cpp-python's
server, Ollama.

::

    [[models]]
    id = "qwen3-8b"
    engine = "openai"
    upstreams = ["http://gpu-a:8000/v1", {url = "http://gpu-b:8000/v1", max_in_flight = 16}]
    upstream_model = "Qwen/Qwen3-8B"
    api_key_env = "UPSTREAM_KEY"
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EngineKind = Literal["llama", "openai"]
# What serves the OpenAI API behind a URL: it decides the extensions gemserve may send
# (grammars, thinking budgets, /tokenize). "auto": read off /v1/models and /props (and, for
# llama-cpp-python's server, the title of its /openapi.json).
UpstreamKind = Literal[
    "auto", "llama-server", "llama-cpp-python", "vllm", "sglang", "ollama", "openai"
]
UPSTREAM_KINDS: tuple[UpstreamKind, ...] = (
    "auto",
    "llama-server",
    "llama-cpp-python",
    "vllm",
    "sglang",
    "ollama",
    "openai",
)
Modality = Literal["text", "image", "audio"]


class UpstreamSpec(BaseModel):
    """One OpenAI-compatible endpoint of a pool: its base URL (with the ``/v1``), and what
    the model entry sets for every upstream, overridden for this one."""

    model_config = ConfigDict(extra="forbid")

    url: str
    max_in_flight: int | None = Field(default=None, ge=1)
    api_key_env: str | None = None
    kind: UpstreamKind | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. http://gpu-a:8000/v1)")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r}: an upstream URL has no query or fragment")
        return value.rstrip("/")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value


class RemoteTimeouts(BaseModel):
    """Seconds. ``first_token``: from sending a request to the upstream's response headers
    (llama-server, vLLM and SGLang answer once the prompt is prefilled), and from them to the
    stream's first data (llama-cpp-python sends its headers at once, then prefills); ``idle``:
    between two chunks of a stream; ``health_interval``: between two health checks of each
    upstream."""

    model_config = ConfigDict(extra="forbid")

    connect: float = Field(default=5.0, gt=0)
    first_token: float = Field(default=300.0, gt=0)
    idle: float = Field(default=120.0, gt=0)
    health_interval: float = Field(default=5.0, gt=0)
    health: float = Field(default=3.0, gt=0)
    # Backoff after a 429/503 without Retry-After: doubles per answer, up to max_backoff.
    backoff: float = Field(default=1.0, gt=0)
    max_backoff: float = Field(default=30.0, gt=0)


# The [[models]] keys that only a remote model has, and those only an in-process one has.
REMOTE_ONLY_FIELDS: tuple[str, ...] = (
    "upstreams",
    "upstream_model",
    "upstream_kind",
    "api_key_env",
    "max_in_flight",
    "timeouts",
    "modalities",
    "affinity",
    "embedding_dimensions",
)
LLAMA_ONLY_FIELDS: tuple[str, ...] = ("source", "mmproj", "chat_template", "tool_format")
