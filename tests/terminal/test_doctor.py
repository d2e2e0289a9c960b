"""`gemserve doctor`: versions, CPU, models, database and blob store for a bug report; exits
non-zero only when something it must reach is unreachable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gemserve.cli import main
from tests.support.server import free_port


def test_json_report_names_the_model_file_and_the_store(
    tmp_path: Path, migrated_database: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    shutil.copy2(migrated_database, data / "gemserve.db")
    done = subprocess.run(
        [sys.executable, "-m", "gemserve", "doctor", "--json", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["problems"] == []
    assert report["versions"]["gemserve"]
    assert report["versions"]["python"] == sys.version.split()[0]
    assert report["versions"]["llama-cpp-python"]
    assert report["versions"]["prometheus-client"]
    assert report["cpu"]["build"] in ("native", "portable")
    assert "CPU :" in report["cpu"]["system_info"]
    (model,) = report["models"]
    assert model["id"] == "smollm2-135m-instruct"
    assert model["path"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert model["exists"] is True
    assert model["size_bytes"] == Path(model["path"]).stat().st_size
    assert model["quantization"] == "Q4_1"
    database = report["database"]
    assert database["reachable"] is True
    assert database["revision"] == database["head"]
    assert database["up_to_date"] is True
    assert report["blobs"] == {
        "data_dir": str(data),
        "data_dir_writable": True,
        "kind": "local",
        "reachable": True,
    }


def test_an_unreachable_database_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://nobody:secret@127.0.0.1:{free_port()}/gemserve"
    assert main(["doctor", "--data-dir", str(tmp_path), "--database-url", url]) == 1
    out = capsys.readouterr().out
    assert "database unreachable" in out
    assert "secret" not in out  # the password is masked
    assert "smollm2-135m-instruct:" in out


def test_a_missing_model_file_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gemserve.toml"
    config.write_text(
        '[[models]]\nid = "gone"\nsource = "/nowhere/gone.gguf"\n\n'
        '[server]\ndefault_model = "gone"\n'
    )
    args = ["doctor", "--json", "--data-dir", str(tmp_path / "data"), "--config", str(config)]
    assert main(args) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == ["model gone: file not found: /nowhere/gone.gguf"]
    assert report["database"]["note"] == "not created yet"


def test_the_report_says_whether_spans_are_exported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert main(["doctor", "--json", "--data-dir", str(tmp_path / "data")]) == 0
    tracing = json.loads(capsys.readouterr().out)["tracing"]
    assert tracing["active"] is True
    assert (tracing["exporters"], tracing["endpoint"]) == (
        "otlp_proto_http",
        "http://127.0.0.1:4318/v1/traces",
    )
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert main(["doctor", "--data-dir", str(tmp_path / "data")]) == 0
    text = capsys.readouterr().out
    assert "tracing\n  active:             False\n  reason:" in text
