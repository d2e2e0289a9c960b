"""A live ``gemserve serve`` whose default model is remote (``engine = "openai"`` over given
upstreams): its configuration file, shared by tests/contract/test_remote_pool.py and the
session's remote twin of ``live_server`` (the bundled model's entry, served by llama-server)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from gemserve.config.models import BUILTIN_MODELS, DEFAULT_MODEL_ID
from tests.support.server import LiveServer, start_server

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml(value: Any) -> str:
    """One TOML value (nested tables inline): enough for a ``[[models]]`` entry."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for these texts
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def remote_config(model: Mapping[str, Any]) -> str:
    """A configuration file whose default model is ``model``, a ``[[models]]`` entry."""
    lines = ["[server]", f"default_model = {_toml(model['id'])}", "", "[[models]]"]
    lines += [f"{_key(k)} = {_toml(v)}" for k, v in model.items()]
    return "\n".join(lines) + "\n"


def remote_model(model_id: str, *urls: str, **fields: Any) -> dict[str, Any]:
    """A ``[[models]]`` entry served by the upstreams at ``urls`` (their OpenAI bases, with
    /v1)."""
    return {"id": model_id, "engine": "openai", "upstreams": list(urls), **fields}


def bundled_twin(url: str, **fields: Any) -> dict[str, Any]:
    """The bundled model's own entry (id, limits, sampling defaults, thinking profile) with
    the upstream at ``url`` serving it instead of llama.cpp in the process: the same model,
    so answers and counts compare with the embedded engine's."""
    (builtin,) = (m for m in BUILTIN_MODELS if m["id"] == DEFAULT_MODEL_ID)
    shared = {k: v for k, v in builtin.items() if k not in ("id", "source")}
    return remote_model(DEFAULT_MODEL_ID, url, **shared, **fields)


def start_remote_server(tmp: Path, model: Mapping[str, Any]) -> LiveServer:
    """``gemserve serve --config`` with ``model`` as its default model."""
    config = tmp / "gemserve.toml"
    config.write_text(remote_config(model))
    return start_server(tmp, "--config", str(config))


def pool_extra(server: LiveServer, model_id: str = "pool") -> dict[str, float]:
    """The remote model's counters in ``/statsz``: its pool's view of each upstream
    (``upstream{i}_requests``, ``_in_flight``, ``_healthy``, ``_ejections``) and its streams'
    (``requests_failed``, ``retries_before_first_token``)."""
    extra: dict[str, float] = httpx.get(server.base_url + "/statsz", timeout=10).json()[model_id][
        "extra"
    ]
    return extra
