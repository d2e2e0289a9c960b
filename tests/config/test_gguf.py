"""The GGUF header reader (config/gguf.py) against the gguf package's own reader and the
bundled model."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemserve.config.gguf import GGUFError, read_header
from tests.support.fake_hub import write_tiny_gguf
from tests.support.llama import default_spec


def test_the_bundled_model_is_q4_1_and_batches_badly() -> None:
    header = read_header(default_spec().gguf_path())
    assert header.quantization == "Q4_1"
    assert header.weight_type == "Q4_1"
    assert header.architecture == "llama"
    assert header.context_length == 8192
    assert header.chat_template is not None
    assert "<|im_start|>" in header.chat_template
    assert header.batches_badly_on_cpu
    # The vocabulary is counted, not kept.
    assert header.metadata["tokenizer.ggml.tokens"] == 49152


@pytest.mark.parametrize("quant", ["Q4_0", "Q4_1"])
def test_agrees_with_the_gguf_package(tmp_path: Path, quant: str) -> None:
    gguf = pytest.importorskip("gguf")
    path = write_tiny_gguf(tmp_path / "tiny.gguf", quant=quant)
    header = read_header(path)
    reader = gguf.GGUFReader(path)
    assert header.quantization == quant
    assert header.batches_badly_on_cpu == (quant == "Q4_1")
    assert header.name == "Tiny Test"
    assert header.context_length == 32768
    types = {t.tensor_type.name for t in reader.tensors}
    assert set(header.type_elements) == types
    for key in ("general.architecture", "general.file_type", "llama.context_length"):
        field = reader.fields[key]
        assert header.metadata[key] == field.contents()


def test_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGML" + bytes(20))
    with pytest.raises(GGUFError, match="no GGUF magic"):
        read_header(path)
    real = write_tiny_gguf(tmp_path / "t.gguf").read_bytes()
    path.write_bytes(real[:40])
    with pytest.raises(GGUFError, match="truncated"):
        read_header(path)
