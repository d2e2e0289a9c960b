"""Build (or reuse) and install the llama.cpp engine into a virtual environment.

``python -m gemserve.engine.cpu.build install --python .venv/bin/python`` probes the CPU, picks
the build plan, and installs the wheel for that plan's key, building it once if the cache has
none. ``... verify`` then decodes one batch in a child process; if the child dies by a signal,
the plan is marked as trapping on this machine and the next fallback is built and verified.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gemserve.engine.cpu.plan import BuildPlan, Mode, compiler_identity, fallbacks, plan_for
from gemserve.engine.cpu.probe import CpuReport, probe_cpu, signal_name

PACKAGE = "llama-cpp-python"
MARKER = "gemserve-engine.json"  # in the venv: which key is installed
TRAPPED = "trapped.json"  # in a key's cache dir: this build died at its first decode here
# What a build that cannot run on this CPU dies of; any other signal is not its fault.
TRAP_SIGNALS = frozenset({"SIGILL", "SIGSEGV", "SIGBUS", "SIGFPE"})


def cache_root() -> Path:
    explicit = os.environ.get("GEMSERVE_ENGINE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gemserve" / "engine"


def requirement(project: Path) -> str:
    """llama-cpp-python's pin, as pyproject.toml states it."""
    with (project / "pyproject.toml").open("rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    for dependency in dependencies:
        if dependency.replace("_", "-").lower().startswith(PACKAGE):
            return str(dependency)
    raise SystemExit(f"gemserve: {PACKAGE} is not a dependency in {project / 'pyproject.toml'}")


def log(message: str) -> None:
    print(f"gemserve setup: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Target:
    """One plan on this machine: its key and its directory in the cache."""

    plan: BuildPlan
    key: str
    directory: Path

    @property
    def trapped(self) -> dict[str, str] | None:
        path = self.directory / TRAPPED
        return json.loads(path.read_text()) if path.is_file() else None

    def wheel(self) -> Path | None:
        wheels = sorted(self.directory.glob("*.whl"))
        return wheels[0] if wheels else None


class EngineBuilder:
    def __init__(self, python: Path, project: Path, mode: Mode, report: CpuReport) -> None:
        self.python = python
        self.project = project
        self.mode = mode
        self.report = report
        self.requirement = requirement(project)
        self.compiler = compiler_identity()
        self.root = cache_root()

    def target(self, mode: Mode) -> Target:
        plan = plan_for(mode, self.report)
        key = plan.key(self.requirement, self.compiler)
        return Target(plan, key, self.root / key)

    def first_untrapped(self) -> Target:
        for mode in fallbacks(self.mode, self.report):
            target = self.target(mode)
            if target.trapped is None:
                return target
            log(f"skipping the {mode} build: it died by {target.trapped['signal']} here before")
        raise SystemExit(
            "gemserve: every llama.cpp build died at its first decode on this CPU "
            f"({self.report.describe()}); see {self.root}"
        )

    def install(self) -> Target:
        target = self.first_untrapped()
        marker = self.python.parent.parent / MARKER
        installed = json.loads(marker.read_text()).get("key") if marker.is_file() else None
        if installed == target.key and self._importable():
            return target
        wheel = target.wheel()
        if wheel is None:
            wheel = self._build(target)
        log(f"installing the {target.plan.mode} llama.cpp engine ({target.key})")
        self._pip("install", "--no-deps", "--force-reinstall", str(wheel))
        marker.write_text(
            json.dumps(
                {
                    "key": target.key,
                    "mode": target.plan.mode.value,
                    "cmake_args": list(target.plan.cmake_args),
                    "wheel": str(wheel),
                    "cpu": self.report.describe(),
                },
                indent=2,
            )
        )
        return target

    def _build(self, target: Target) -> Path:
        log(
            f"building {self.requirement} ({target.plan.mode}: {target.plan.cmake_args_env()}); "
            "this takes minutes, once per set of flags"
        )
        log(f"CPU: {self.report.describe()}")
        self.root.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"CMAKE_ARGS": target.plan.cmake_args_env(), "FORCE_CMAKE": "1"}
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=self.root, prefix="building-") as tmp:
            build_log = Path(tmp) / "build.log"
            with build_log.open("w") as out:
                result = subprocess.run(
                    [
                        str(self.python),
                        *("-m", "pip", "wheel", "--no-deps", "--no-cache-dir"),
                        *("--no-binary", PACKAGE, "-w", tmp, self.requirement),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            if result.returncode != 0:
                tail = build_log.read_text(errors="replace").splitlines()[-40:]
                sys.stderr.write("\n".join(tail) + "\n")
                raise SystemExit(f"gemserve: building {self.requirement} failed")
            seconds = time.monotonic() - started
            wheels = list(Path(tmp).glob("*.whl"))
            staged = Path(tmp) / "staged"
            staged.mkdir()
            for wheel in wheels:
                wheel.rename(staged / wheel.name)
            (staged / "build.json").write_text(
                json.dumps(
                    {
                        "requirement": self.requirement,
                        "mode": target.plan.mode.value,
                        "cmake_args": list(target.plan.cmake_args),
                        "compiler": self.compiler,
                        "cpu": self.report.describe(),
                        "build_seconds": round(seconds, 1),
                    },
                    indent=2,
                )
            )
            if target.directory.exists():
                shutil.rmtree(target.directory)
            staged.rename(target.directory)  # all or nothing: a killed build leaves no key
        log(f"built in {seconds / 60:.1f} minutes; cached in {target.directory}")
        built = target.wheel()
        if built is None:
            raise SystemExit(f"gemserve: pip built no wheel for {self.requirement}")
        return built

    def verify(self) -> Target:
        """Decode one batch in a child; on a fatal signal, fall back to the next build."""
        while True:
            target = self.install()
            result = subprocess.run(
                [str(self.python), "-m", "gemserve.engine.llama"],
                capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                log(f"engine self-check passed ({target.plan.mode} build): {result.stdout.strip()}")
                return target
            if result.returncode > 0:
                sys.stderr.write(result.stderr)
                raise SystemExit("gemserve: the engine self-check failed (not by a signal)")
            name = signal_name(-result.returncode)
            if name not in TRAP_SIGNALS:  # killed from outside (OOM, a user): not the build
                sys.stderr.write(result.stderr)
                raise SystemExit(f"gemserve: the engine self-check was killed by {name}")
            log(
                f"the {target.plan.mode} build died by {name} at its first decode; CPU: "
                f"{self.report.describe()}"
            )
            (target.directory / TRAPPED).write_text(
                json.dumps({"signal": name, "stderr": result.stderr[-4000:]}, indent=2)
            )

    def _importable(self) -> bool:
        probe = subprocess.run(
            [str(self.python), "-c", "import llama_cpp"], capture_output=True, check=False
        )
        return probe.returncode == 0

    def _pip(self, *args: str) -> None:
        subprocess.run([str(self.python), "-m", "pip", "--quiet", *args], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gemserve.engine.cpu.build")
    parser.add_argument("action", choices=["install", "verify", "probe"])
    parser.add_argument("--python", type=Path, default=Path(".venv/bin/python"))
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument(
        "--mode",
        choices=[m.value for m in (Mode.NATIVE, Mode.PORTABLE, Mode.GENERIC, Mode.BASELINE)],
        default=os.environ.get("GEMSERVE_ENGINE_BUILD", Mode.NATIVE.value),
    )
    args = parser.parse_args(argv)
    report = probe_cpu()
    if args.action == "probe":
        print(report.describe())
        return 0
    builder = EngineBuilder(args.python, args.project, Mode(args.mode), report)
    target = builder.install() if args.action == "install" else builder.verify()
    print(target.key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
