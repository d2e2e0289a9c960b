"""Ask the instructions, not CPUID: each SIMD family runs once in a child process.

A VM can report a feature its host will not execute for it, and a compiler can break one: GCC
12 drops ggml's AMX tile configuration, so AMX code built by it traps on every AMX CPU (the
probe configures its tiles as ggml does, and is built by the same compiler; see probe.c).
``-march=native`` believes CPUID, so a family that the compiler would enable natively but
that does not run gets its ``-mno-*`` flags, and llama.cpp is built without it.
"""

from __future__ import annotations

import platform
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

PROBE_SOURCE = Path(__file__).with_name("probe.c")

# Families llama.cpp's x86 kernels use beyond the baseline, in the probe's own names.
FEATURES = ("avx2", "avx512", "avx512_vnni", "avx_vnni", "amx")

# The gcc option that says `-march=native` turns the family on.
_NATIVE_OPTION = {
    "avx2": "-mavx2",
    "avx512": "-mavx512f",
    "avx512_vnni": "-mavx512vnni",
    "avx_vnni": "-mavxvnni",
    "amx": "-mamx-int8",
}

# What turns it off again (gcc lets an explicit -mno-X win over -march=native's implied -mX).
DISABLE_FLAGS = {
    "avx2": ("-mno-avx2",),
    "avx512": ("-mno-avx512f",),
    "avx512_vnni": ("-mno-avx512vnni",),
    "avx_vnni": ("-mno-avxvnni",),
    "amx": ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"),
}


class Outcome(StrEnum):
    RUNS = "runs"
    TRAPS = "traps"  # killed by a signal: the instruction does not execute here
    WRONG = "wrong"  # executed, computed the wrong answer
    REFUSED = "refused"  # the OS would not grant the state it needs (AMX tile data)
    UNTESTED = "untested"  # the compiler cannot build the probe for it


@dataclass(frozen=True)
class FeatureReport:
    feature: str
    claimed: bool  # -march=native would compile it in
    outcome: Outcome
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.outcome is Outcome.RUNS

    def describe(self) -> str:
        claim = "claimed" if self.claimed else "not claimed"
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.feature}: {claim}, {self.outcome.value}{detail}"


@dataclass(frozen=True)
class CpuReport:
    machine: str
    native_options: frozenset[str]  # the -m options gcc's -march=native enables
    features: tuple[FeatureReport, ...]

    def disable_flags(self) -> tuple[str, ...]:
        """Compiler flags that keep out every family -march=native would wrongly enable (one
        the probe could not test stays: the start-up decode is the second net)."""
        flags: list[str] = []
        for report in self.features:
            if report.claimed and report.outcome not in (Outcome.RUNS, Outcome.UNTESTED):
                flags.extend(DISABLE_FLAGS[report.feature])
        return tuple(flags)

    def usable(self, feature: str) -> bool:
        return any(r.feature == feature and r.usable for r in self.features)

    def describe(self) -> str:
        return "; ".join(report.describe() for report in self.features)


def native_options(cc: str = "cc") -> frozenset[str]:
    """The ``-m`` options ``-march=native`` switches on, as the compiler itself reports them."""
    try:
        out = subprocess.run(
            [cc, "-march=native", "-Q", "--help=target"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    enabled = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("-m") and parts[1] == "[enabled]":
            enabled.add(parts[0])
        elif len(parts) == 2 and parts[0] == "-march=":
            enabled.add(f"-march={parts[1]}")
    return frozenset(enabled)


def compile_probe(workdir: Path, cc: str = "cc") -> Path | None:
    """The probe binary, or None where the compiler cannot build it (no x86 intrinsics)."""
    binary = workdir / "gemserve-cpu-probe"
    result = subprocess.run(
        [cc, "-O1", "-o", str(binary), str(PROBE_SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return binary if result.returncode == 0 else None


def run_probe(binary: Path, feature: str) -> tuple[Outcome, str]:
    """Run one family in a child process and say how it went."""
    try:
        result = subprocess.run([str(binary), feature], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return Outcome.TRAPS, "hung"
    code = result.returncode
    if code < 0:
        return Outcome.TRAPS, signal_name(-code)
    return {0: (Outcome.RUNS, ""), 1: (Outcome.WRONG, ""), 2: (Outcome.REFUSED, "")}.get(
        code, (Outcome.UNTESTED, f"exit {code}: {result.stderr.strip()}")
    )


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def probe_cpu(cc: str = "cc") -> CpuReport:
    """Probe every family (x86-64 only; elsewhere nothing is claimed or disabled)."""
    machine = platform.machine()
    if machine not in ("x86_64", "AMD64"):
        return CpuReport(machine, frozenset(), ())
    options = native_options(cc)
    with tempfile.TemporaryDirectory(prefix="gemserve-probe-") as tmp:
        binary = compile_probe(Path(tmp), cc)
        reports = []
        for feature in FEATURES:
            claimed = _NATIVE_OPTION[feature] in options
            if binary is None:
                outcome, detail = Outcome.UNTESTED, "the compiler cannot build the probe"
            else:
                outcome, detail = run_probe(binary, feature)
            reports.append(FeatureReport(feature, claimed, outcome, detail))
    return CpuReport(machine, options, tuple(reports))
