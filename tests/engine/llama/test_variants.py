"""A portable build's CPU variant: the best score that does not trap, checked once per CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemserve.engine.llama.variants import VerdictCache, choose, variant_libraries


@pytest.fixture
def libraries(tmp_path: Path) -> list[Path]:
    names = ["haswell", "skylakex", "icelake", "sapphirerapids", "zen4"]
    paths = [tmp_path / f"libggml-cpu-{name}.so" for name in names]
    for path in paths:
        path.write_bytes(b"not really a library")
    (tmp_path / "libggml-cpu.so").write_bytes(b"a native build's")  # not a variant
    return paths


# ggml's scores on a Sapphire Rapids VM that reports AMX: zen4 lacks nothing it checks but
# scores lower; the AMX variant scores highest.
SCORES = {"haswell": 10, "skylakex": 20, "icelake": 40, "sapphirerapids": 90, "zen4": 0}


def rank(path: Path) -> int:
    return SCORES[path.stem.removeprefix("libggml-cpu-")]


def test_only_the_level_libraries_are_variants(libraries: list[Path]) -> None:
    assert variant_libraries(libraries[0].parent) == sorted(libraries)


def test_the_best_variant_that_runs_is_chosen_and_one_that_traps_is_skipped(
    libraries: list[Path], tmp_path: Path
) -> None:
    checked: list[str] = []

    def check(path: Path) -> str:
        checked.append(path.name)
        return "SIGILL" if "sapphirerapids" in path.name else "ok"

    cache = VerdictCache(tmp_path / "verdicts.json")
    chosen = choose(libraries, cache, rank=rank, check=check)
    assert chosen.name == "libggml-cpu-icelake.so"
    assert checked == ["libggml-cpu-sapphirerapids.so", "libggml-cpu-icelake.so"]

    # The verdicts are kept: the next start checks nothing.
    again = choose(libraries, cache, rank=rank, check=lambda p: pytest.fail(f"checked {p}"))
    assert again == chosen
    assert cache.get(libraries[3]) == "SIGILL"


def test_a_rebuilt_library_is_checked_again(libraries: list[Path], tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "verdicts.json")
    choose(libraries, cache, rank=rank, check=lambda p: "ok")
    libraries[3].write_bytes(b"rebuilt, a different size")
    checked: list[Path] = []
    choose(libraries, cache, rank=rank, check=lambda p: checked.append(p) or "ok")
    assert checked == [libraries[3]]


def test_no_variant_that_runs_is_an_error(libraries: list[Path], tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "verdicts.json")
    with pytest.raises(RuntimeError, match=r"no llama\.cpp CPU variant runs"):
        choose(libraries, cache, rank=rank, check=lambda p: "SIGILL")
