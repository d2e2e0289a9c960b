"""Which llama.cpp build to make, and the key that names it in the wheel cache.

pip's own wheel cache is keyed by the sdist alone: a wheel built once with other CMake flags
(or on another CPU, for a native build) is reused silently. gemserve keys its engine wheels by
everything that changes the binary instead.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from gemserve.engine.cpu.probe import CpuReport

BUILD_HOOKS = Path(__file__).with_name("build_hooks.cmake")
# Sources build_hooks.cmake compiles into libllama: part of the key, as the hooks file is.
HOOK_SOURCES = (Path(__file__).with_name("embedding_eval.c"),)


class Mode(StrEnum):
    # -march=native, less any family the probe found not to run: the fastest, tied to this CPU.
    NATIVE = "native"
    # Every x86 CPU variant as its own library, chosen at run time (llama.cpp's release builds).
    PORTABLE = "portable"
    # The fallbacks when a native build still dies at its first decode.
    GENERIC = "generic"  # AVX2 + FMA + F16C, nothing newer
    BASELINE = "baseline"  # SSE4.2 only


# What gemserve never loads: llama.cpp's tests, examples, tools, server and `common` library
# (build_hooks.cmake; it also installs a portable build's CPU variants).
_SKIPPED_TARGETS = (
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    f"-DCMAKE_PROJECT_llama_cpp_INCLUDE={BUILD_HOOKS}",
)

_NO_SIMD = ("AVX", "AVX2", "AVX_VNNI", "AVX512", "FMA", "F16C", "BMI2", "AMX_TILE", "AMX_INT8")


@dataclass(frozen=True)
class BuildPlan:
    mode: Mode
    cmake_args: tuple[str, ...]
    # What a native build is tied to: the ISA the compiler sees on this CPU.
    cpu_fingerprint: tuple[str, ...] = ()

    def cmake_args_env(self) -> str:
        return shlex.join(self.cmake_args)

    def key(self, requirement: str, compiler: str) -> str:
        """A short hash of everything that makes the wheel what it is."""
        identity = {
            "requirement": requirement,
            "mode": self.mode.value,
            "cmake_args": [_path_free(arg) for arg in self.cmake_args],
            "cpu": list(self.cpu_fingerprint),
            "compiler": compiler,
            "hook_sources": {
                path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in HOOK_SOURCES
            },
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return f"{self.mode.value}-{digest[:16]}"


def _path_free(arg: str) -> str:
    """An argument naming a file by its content: the checkout's location is no part of the
    key (CI builds in a fresh clone elsewhere and must find the wheel a session built)."""
    name, sep, value = arg.partition("=")
    if sep and name.endswith("_INCLUDE") and Path(value).is_file():
        return f"{name}=sha256:{hashlib.sha256(Path(value).read_bytes()).hexdigest()}"
    return arg


def plan_for(mode: Mode, report: CpuReport) -> BuildPlan:
    if mode is Mode.NATIVE:
        disabled = report.disable_flags()
        args = ["-DGGML_NATIVE=ON"]
        if disabled:
            flags = " ".join(disabled)
            args += [f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"]
        return BuildPlan(mode, (*args, *_SKIPPED_TARGETS), tuple(sorted(report.native_options)))
    if mode is Mode.PORTABLE:
        return BuildPlan(
            mode,
            (
                "-DGGML_NATIVE=OFF",
                "-DGGML_BACKEND_DL=ON",
                "-DGGML_CPU_ALL_VARIANTS=ON",
                *_SKIPPED_TARGETS,
            ),
        )
    if mode is Mode.GENERIC:
        on = ("AVX", "AVX2", "FMA", "F16C", "BMI2")
        args = ["-DGGML_NATIVE=OFF", "-DGGML_SSE42=ON"]
        args += [f"-DGGML_{name}={'ON' if name in on else 'OFF'}" for name in _NO_SIMD]
        return BuildPlan(mode, (*args, *_SKIPPED_TARGETS))
    args = ["-DGGML_NATIVE=OFF", "-DGGML_SSE42=ON", *(f"-DGGML_{n}=OFF" for n in _NO_SIMD)]
    return BuildPlan(Mode.BASELINE, (*args, *_SKIPPED_TARGETS))


def fallbacks(mode: Mode, report: CpuReport) -> list[Mode]:
    """The modes to try in order, each after the one before died at its first decode."""
    chain = {
        Mode.NATIVE: [Mode.NATIVE, Mode.GENERIC, Mode.BASELINE],
        Mode.PORTABLE: [Mode.PORTABLE, Mode.BASELINE],
        Mode.GENERIC: [Mode.GENERIC, Mode.BASELINE],
        Mode.BASELINE: [Mode.BASELINE],
    }[mode]
    if report.features and not report.usable("avx2"):
        chain = [m for m in chain if m is not Mode.GENERIC]
    return chain


def compiler_identity(cc: str = "cc") -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = out.stdout.splitlines()
    return lines[0].strip() if lines else "unknown"
