"""The CPU probe runs each instruction family in a child and tells a trap from a result."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest

from gemserve.engine.cpu.probe import (
    DISABLE_FLAGS,
    CpuReport,
    FeatureReport,
    Outcome,
    compile_probe,
    native_options,
    probe_cpu,
    run_probe,
)
from tests.support.llama import cpu_flags

x86_only = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 instructions")


def cpuinfo_flags() -> set[str]:
    return set(cpu_flags().split())


@pytest.fixture(scope="module")
def probe_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = compile_probe(tmp_path_factory.mktemp("probe"))
    assert binary is not None, "the C compiler could not build the CPU probe"
    return binary


@x86_only
def test_a_trapping_instruction_is_reported_as_a_trap_not_a_crash(probe_binary: Path) -> None:
    # Tile instructions without the kernel's grant of tile state: SIGILL on bare-metal x86
    # Linux; a KVM guest whose CPU reports AMX was seen to deliver SIGSEGV instead.
    outcome, signal = run_probe(probe_binary, "amx_unrequested")
    assert outcome is Outcome.TRAPS
    assert signal in ("SIGILL", "SIGSEGV")


@x86_only
def test_avx2_runs_where_the_kernel_says_the_cpu_has_it(probe_binary: Path) -> None:
    outcome, _ = run_probe(probe_binary, "avx2")
    assert outcome is (Outcome.RUNS if "avx2" in cpuinfo_flags() else Outcome.TRAPS)


@x86_only
def test_amx_runs_only_where_the_kernel_grants_it(probe_binary: Path) -> None:
    outcome, _ = run_probe(probe_binary, "amx")
    if "amx_int8" not in cpuinfo_flags():
        assert outcome in (Outcome.REFUSED, Outcome.TRAPS)
    else:
        assert outcome in (Outcome.RUNS, Outcome.TRAPS)  # the trap is the bug this guards


# ggml's tile set-up (ggml_tile_config_init in ggml-cpu/amx/mmq.cpp), reduced: a local
# configuration set field by field in a function of its own, then loaded. The values 13 and
# 52 stand out in the assembly.
GGML_TILE_CONFIG = r"""
#include <immintrin.h>
#include <stdint.h>
struct tile_config {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};
__attribute__((target("amx-tile"))) void load_tile_config(void) {
    _Alignas(64) struct tile_config cfg = {0};
    cfg.palette_id = 1;
    cfg.rows[0] = 13;
    cfg.colsb[0] = 52;
    _tile_loadconfig(&cfg);
}
"""


def compiler_keeps_the_tile_config(workdir: Path) -> bool:
    source = workdir / "tile_config.c"
    source.write_text(GGML_TILE_CONFIG)
    assembly = subprocess.run(
        ["cc", "-O1", "-S", "-o", "-", str(source)], capture_output=True, text=True, check=True
    ).stdout
    return "$13" in assembly and "$52" in assembly


@x86_only
def test_amx_traps_where_the_compiler_drops_ggmls_tile_config(
    probe_binary: Path, tmp_path: Path
) -> None:
    """GCC 12's ``_tile_loadconfig`` claims to read 8 bytes, so the stores to the rows and
    columns are dead to it: llama.cpp built natively by it died by SIGILL at its first batched
    product on an AMX CPU while the probe (whose configuration stayed alive) said "runs". The
    probe, built by the same compiler, must report the trap, so that AMX is compiled out."""
    if "amx_int8" not in cpuinfo_flags():
        pytest.skip("this CPU has no AMX")
    if compiler_keeps_the_tile_config(tmp_path):
        pytest.skip("this compiler keeps the tile configuration")
    outcome, _ = run_probe(probe_binary, "amx")
    assert outcome is Outcome.TRAPS


@x86_only
def test_native_options_are_the_compilers_own() -> None:
    options = native_options()
    assert any(option.startswith("-march=") for option in options)
    assert ("-mavx2" in options) == ("avx2" in cpuinfo_flags())


@x86_only
def test_probe_cpu_reports_every_family() -> None:
    report = probe_cpu()
    assert [r.feature for r in report.features] == list(DISABLE_FLAGS)
    assert report.usable("avx2") == ("avx2" in cpuinfo_flags())


def report_with(amx: Outcome, *, claimed: bool = True) -> CpuReport:
    return CpuReport(
        "x86_64",
        frozenset({"-mavx2", "-mamx-int8"} if claimed else {"-mavx2"}),
        (
            FeatureReport("avx2", True, Outcome.RUNS),
            FeatureReport("amx", claimed, amx),
        ),
    )


def test_a_claimed_family_that_traps_is_compiled_out() -> None:
    flags = report_with(Outcome.TRAPS).disable_flags()
    assert flags == ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
    assert report_with(Outcome.REFUSED).disable_flags() == flags
    assert report_with(Outcome.WRONG).disable_flags() == flags


def test_a_family_that_runs_or_is_not_claimed_is_left_alone() -> None:
    assert report_with(Outcome.RUNS).disable_flags() == ()
    assert report_with(Outcome.TRAPS, claimed=False).disable_flags() == ()
    # Untested (the compiler could not build the probe): the start-up decode decides.
    assert report_with(Outcome.UNTESTED).disable_flags() == ()
