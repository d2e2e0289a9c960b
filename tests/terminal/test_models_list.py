"""`gemserve models list`: the configured models as `serve` reads them, with their GGUF
header's quantization."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gemserve.cli import main
from tests.support.fake_hub import write_tiny_gguf


def test_lists_the_bundled_model_and_its_quantization(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["models", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("smollm2-135m-instruct  (default)\n")
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in out
    assert "quantization: Q4_1" in out
    assert "context:      4096 tokens (trained 8192)" in out
    assert "+29 Gemini model names" in out
    assert "does not repack" in out


def test_json_and_a_configured_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "tiny-q4_0.gguf", quant="Q4_0")
    config = tmp_path / "gemserve.toml"
    config.write_text(
        f"""
[[models]]
id = "tiny"
source = "{gguf}"
context_length = 65536
aliases = ["small"]

[[models]]
id = "gone"
source = "{tmp_path / "missing.gguf"}"

[[models]]
id = "remote"
engine = "openai"
upstreams = ["http://127.0.0.1:9/v1"]
embedding_dimensions = 1024

[aliases]
"gemini-2.5-pro" = "tiny"
"""
    )
    assert main(["models", "list", "--json", "--config", str(config)]) == 0
    rows = {row["id"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows) == ["smollm2-135m-instruct", "tiny", "gone", "remote"]
    tiny = rows["tiny"]
    assert tiny["quantization"] == "Q4_0"
    assert tiny["size_bytes"] == gguf.stat().st_size
    assert tiny["context_length"] == 32768  # capped at the trained context, as the engine does
    assert tiny["aliases"] == ["gemini-2.5-pro", "small"]
    assert tiny["warnings"] == []
    assert tiny["tool_format"] == "json_array"
    assert rows["gone"]["exists"] is False
    assert rows["gone"]["warnings"] == [f"file not found: {tmp_path / 'missing.gguf'}"]
    assert rows["remote"]["upstreams"] == ["http://127.0.0.1:9/v1"]
    assert rows["remote"]["embedding"] == "1024 dimensions"
    assert rows["smollm2-135m-instruct"]["gemini_names"] == 28  # one taken by [aliases]
