"""``engine = "openai"`` model entries: what they take, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemserve.app import default_engine
from gemserve.config import ModelRegistry, load_settings
from gemserve.engine.remote import RemoteEngine

ENTRY = """
[server]
default_model = "qwen3-8b"

[[models]]
id = "qwen3-8b"
engine = "openai"
upstreams = ["http://gpu-a:8000/v1", {url = "http://gpu-b:8000/v1/", max_in_flight = 4}]
upstream_model = "Qwen/Qwen3-8B"
api_key_env = "UPSTREAM_KEY"
aliases = ["gemini-2.5-pro"]
context_length = 32768
modalities = ["text", "image"]
max_in_flight = 16
timeouts = {first_token = 60, idle = 30}
thinking = {mode = "native"}
"""


def registry(*entries: dict[str, object]) -> ModelRegistry:
    return ModelRegistry.from_config(list(entries), {}, str(entries[0]["id"]))


def test_a_remote_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gemserve.toml"
    config.write_text(ENTRY)
    settings = load_settings({"config": config, "data_dir": tmp_path})
    reg = ModelRegistry.from_config(settings.models, settings.aliases, settings.default_model)
    spec = reg.resolve("gemini-2.5-pro").spec
    assert spec.engine == "openai"
    assert spec.source is None
    assert [u.url for u in spec.upstreams] == ["http://gpu-a:8000/v1", "http://gpu-b:8000/v1"]
    assert spec.timeouts.first_token == 60
    monkeypatch.setenv("UPSTREAM_KEY", "secret")
    engine = default_engine(spec, settings)
    assert isinstance(engine, RemoteEngine)
    assert [u.cap for u in engine.pool.upstreams] == [16, 4]
    caps = engine.capabilities()
    assert caps.context_length == 32768
    assert caps.input_modalities == frozenset({"text", "image"})
    # The bundled model is still the in-process engine.
    assert reg.resolve("smollm2-135m-instruct").spec.engine == "llama"


def test_a_missing_key_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    spec = (
        registry(
            {
                "id": "pool",
                "engine": "openai",
                "upstreams": ["http://127.0.0.1:9/v1"],
                "api_key_env": "NOT_SET_ANYWHERE",
            }
        )
        .resolve("pool")
        .spec
    )
    with pytest.raises(ValueError, match="api_key_env names NOT_SET_ANYWHERE"):
        RemoteEngine.from_spec(spec, environ={})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"engine": "openai"}, "'upstreams' .* is required"),
        ({"engine": "openai", "upstreams": ["gpu-a:8000"]}, r"upstreams\.0\.url"),
        ({"engine": "openai", "upstreams": ["http://a/v1", "http://a/v1"]}, "listed twice"),
        (
            {"engine": "openai", "upstreams": ["http://a/v1"], "source": "x.gguf"},
            "'source' applies not to",
        ),
        ({"engine": "openai", "upstreams": ["http://a/v1"], "max_in_flight": 0}, "max_in_flight"),
        (
            {"engine": "openai", "upstreams": ["http://a/v1"], "upstream_kind": "tgi"},
            "upstream_kind",
        ),
        (
            {"engine": "openai", "upstreams": ["http://a/v1"], "timeouts": {"idle": 0}},
            "timeouts.idle",
        ),
        ({"engine": "llama"}, "'source' is required"),
        ({"source": "x.gguf", "upstreams": ["http://a/v1"]}, "'upstreams' applies only to"),
        ({"engine": "tgi", "source": "x.gguf"}, "engine"),
    ],
)
def test_errors_name_the_field(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        registry({"id": "pool", **entry})
