"""Build plans: the flags each mode passes to CMake, and the key that names the wheel."""

from __future__ import annotations

import shutil
from pathlib import Path

from gemserve.engine.cpu.plan import BUILD_HOOKS, BuildPlan, Mode, fallbacks, plan_for
from gemserve.engine.cpu.probe import CpuReport, FeatureReport, Outcome

REQ = "llama-cpp-python==0.3.36"
GCC = "gcc (Debian 12.2.0-14) 12.2.0"


def report(*, amx: Outcome = Outcome.RUNS, avx2: Outcome = Outcome.RUNS) -> CpuReport:
    return CpuReport(
        "x86_64",
        frozenset({"-march=sapphirerapids", "-mavx2", "-mamx-int8"}),
        (FeatureReport("avx2", True, avx2), FeatureReport("amx", True, amx)),
    )


def test_native_keeps_every_family_that_runs() -> None:
    plan = plan_for(Mode.NATIVE, report())
    assert "-DGGML_NATIVE=ON" in plan.cmake_args
    assert not any("-mno-" in arg for arg in plan.cmake_args)


def test_native_compiles_out_amx_that_traps() -> None:
    plan = plan_for(Mode.NATIVE, report(amx=Outcome.TRAPS))
    flags = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    assert f"-DCMAKE_C_FLAGS={flags}" in plan.cmake_args
    assert f"-DCMAKE_CXX_FLAGS={flags}" in plan.cmake_args
    # CMAKE_ARGS is split with shlex by scikit-build-core: the flags stay one argument.
    assert f"'-DCMAKE_C_FLAGS={flags}'" in plan.cmake_args_env()


def test_every_plan_skips_the_targets_gemserve_never_loads() -> None:
    for mode in Mode:
        args = plan_for(mode, report()).cmake_args
        assert "-DLLAMA_BUILD_TOOLS=OFF" in args
        assert any(a.startswith("-DCMAKE_PROJECT_llama_cpp_INCLUDE=") for a in args)


def test_portable_builds_every_variant_and_installs_them() -> None:
    args = plan_for(Mode.PORTABLE, report()).cmake_args
    assert {"-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_NATIVE=OFF"} <= set(args)


def test_the_key_changes_with_anything_that_changes_the_binary() -> None:
    native = plan_for(Mode.NATIVE, report())
    key = native.key(REQ, GCC)
    assert native.key(REQ, GCC) == key
    assert plan_for(Mode.NATIVE, report(amx=Outcome.TRAPS)).key(REQ, GCC) != key
    assert native.key("llama-cpp-python==0.3.37", GCC) != key
    assert native.key(REQ, "gcc 13") != key
    other_cpu = CpuReport("x86_64", frozenset({"-march=znver4", "-mavx2"}), report().features)
    assert plan_for(Mode.NATIVE, other_cpu).key(REQ, GCC) != key
    # A portable build is not tied to the CPU it was built on.
    portable = plan_for(Mode.PORTABLE, report()).key(REQ, GCC)
    assert plan_for(Mode.PORTABLE, other_cpu).key(REQ, GCC) == portable


def test_fallbacks_end_at_the_baseline_and_skip_avx2_where_it_does_not_run() -> None:
    assert fallbacks(Mode.NATIVE, report()) == [Mode.NATIVE, Mode.GENERIC, Mode.BASELINE]
    assert fallbacks(Mode.NATIVE, report(avx2=Outcome.TRAPS)) == [Mode.NATIVE, Mode.BASELINE]
    assert fallbacks(Mode.PORTABLE, report()) == [Mode.PORTABLE, Mode.BASELINE]
    assert fallbacks(Mode.BASELINE, report()) == [Mode.BASELINE]


def test_the_key_does_not_depend_on_where_the_checkout_is(tmp_path: Path) -> None:
    hooks = tmp_path / "elsewhere" / BUILD_HOOKS.name
    hooks.parent.mkdir()
    shutil.copy(BUILD_HOOKS, hooks)
    here = plan_for(Mode.NATIVE, report())
    moved = BuildPlan(
        here.mode,
        tuple(a.replace(str(BUILD_HOOKS), str(hooks)) for a in here.cmake_args),
        here.cpu_fingerprint,
    )
    assert moved.cmake_args != here.cmake_args
    assert moved.key(REQ, GCC) == here.key(REQ, GCC)
    hooks.write_text(hooks.read_text() + "\n# changed\n")
    assert moved.key(REQ, GCC) != here.key(REQ, GCC)
