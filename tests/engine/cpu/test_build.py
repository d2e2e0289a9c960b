"""The engine builder's orchestration: wheels keyed by their flags, fallback after a trap.

The real build takes minutes, so ``python`` here is a stand-in script that plays pip (it
"builds" a wheel file and logs the CMAKE_ARGS it was given) and plays the self-check child
(dying by SIGILL for the builds named in FAKE_TRAPS). What it checks is the builder's
bookkeeping; the real build is exercised by scripts/setup before every test run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gemserve.engine.cpu.build import MARKER, EngineBuilder, cache_root
from gemserve.engine.cpu.plan import Mode
from gemserve.engine.cpu.probe import CpuReport, FeatureReport, Outcome

ROOT = Path(__file__).resolve().parents[3]

FAKE_PYTHON = f"""#!{sys.executable}
import json, os, signal, sys
from pathlib import Path
log = Path(os.environ["FAKE_LOG"])
args = sys.argv[1:]
def record(entry):
    with log.open("a") as f:
        f.write(json.dumps(entry) + "\\n")
if args[:3] == ["-m", "pip", "wheel"]:
    out = Path(args[args.index("-w") + 1])
    (out / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl").write_text("wheel")
    record({{"build": os.environ["CMAKE_ARGS"]}})
elif args[:2] == ["-m", "pip"]:
    record({{"pip": args[2:]}})
elif args[:2] == ["-c", "import llama_cpp"]:
    pass
elif args[:2] == ["-m", "gemserve.engine.llama"]:
    installed = json.loads((Path(sys.argv[0]).parent.parent / "{MARKER}").read_text())
    if installed["mode"] in os.environ.get("FAKE_TRAPS", "").split(","):
        signal.raise_signal(signal.Signals[os.environ.get("FAKE_SIGNAL", "SIGILL")])
    print("ok")
else:
    sys.exit(f"fake python: unexpected {{args}}")
"""


@pytest.fixture
def fake_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("GEMSERVE_ENGINE_CACHE", str(tmp_path / "cache"))
    return python


def calls(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def builds(tmp_path: Path) -> list[object]:
    return [c["build"] for c in calls(tmp_path) if "build" in c]


def report(amx: Outcome = Outcome.RUNS) -> CpuReport:
    return CpuReport(
        "x86_64",
        frozenset({"-march=sapphirerapids", "-mavx2", "-mamx-int8"}),
        (FeatureReport("avx2", True, Outcome.RUNS), FeatureReport("amx", True, amx)),
    )


def builder(python: Path, cpu: CpuReport, mode: Mode = Mode.NATIVE) -> EngineBuilder:
    return EngineBuilder(python, ROOT, mode, cpu)


def test_the_wheel_is_built_once_per_set_of_flags(fake_venv: Path, tmp_path: Path) -> None:
    first = builder(fake_venv, report()).install()
    assert len(builds(tmp_path)) == 1
    assert first.directory.parent == cache_root()
    assert (first.directory / "build.json").is_file()

    # Same flags: the cached wheel is reused, not rebuilt, and not even reinstalled.
    (fake_venv.parent.parent / MARKER).unlink()
    again = builder(fake_venv, report()).install()
    assert again.key == first.key
    assert len(builds(tmp_path)) == 1
    builder(fake_venv, report()).install()
    assert len([c for c in calls(tmp_path) if "pip" in c]) == 2

    # The probe now finds AMX trapping: other flags, another key, a new build.
    changed = builder(fake_venv, report(Outcome.TRAPS)).install()
    assert changed.key != first.key
    assert len(builds(tmp_path)) == 2
    assert "-mno-amx-int8" in str(builds(tmp_path)[-1])
    assert "-mno-amx" not in str(builds(tmp_path)[0])
    marker = json.loads((fake_venv.parent.parent / MARKER).read_text())
    assert marker["key"] == changed.key


def test_a_build_that_dies_by_a_signal_is_replaced_by_the_next_fallback(
    fake_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TRAPS", "native")
    target = builder(fake_venv, report()).verify()
    assert target.plan.mode is Mode.GENERIC
    assert [("GGML_NATIVE=ON" in str(b)) for b in builds(tmp_path)] == [True, False]

    # The verdict is kept: the next setup goes straight to the build that works.
    native = builder(fake_venv, report()).target(Mode.NATIVE)
    assert native.trapped is not None
    assert native.trapped["signal"] == "SIGILL"
    assert builder(fake_venv, report()).install().key == target.key
    assert len(builds(tmp_path)) == 2


def test_when_every_build_traps_setup_fails_naming_the_cpu(
    fake_venv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TRAPS", "native,generic,baseline")
    with pytest.raises(SystemExit, match=r"every llama.cpp build died.*amx: claimed"):
        builder(fake_venv, report()).verify()


def test_the_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMSERVE_ENGINE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert cache_root() == Path("/somewhere/gemserve/engine")
    monkeypatch.setenv("GEMSERVE_ENGINE_CACHE", "/elsewhere")
    assert cache_root() == Path("/elsewhere")


def test_a_child_killed_from_outside_fails_setup_without_blaming_the_build(
    fake_venv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TRAPS", "native")
    monkeypatch.setenv("FAKE_SIGNAL", "SIGKILL")  # the OOM killer, say
    with pytest.raises(SystemExit, match="killed by SIGKILL"):
        builder(fake_venv, report()).verify()
    assert builder(fake_venv, report()).target(Mode.NATIVE).trapped is None
