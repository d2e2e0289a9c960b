"""Portable builds: pick ggml's CPU variant at start, and never one that traps on this CPU.

A portable build (``GEMSERVE_ENGINE_BUILD=portable``) ships one CPU library per x86 level
(``libggml-cpu-haswell.so`` ... ``libggml-cpu-sapphirerapids.so``). ggml's own loader takes
the variant with the best score, and the score believes CPUID: on a CPU that reports AMX it
picks the AMX variant, which traps where the compiler broke it (GCC 12: see
``engine/cpu/probe.c``) or the hypervisor will not run it. Instead, gemserve ranks the
variants by the same scores and tries the best in a child process (one small batched decode)
before loading it here; a variant whose child dies by a signal is skipped for the next.
Verdicts are kept per library and CPU, so a restart does not pay for the check again.

A native build has no variant libraries (its CPU code is linked into ``libggml``): nothing
here runs.
"""

from __future__ import annotations

import _ctypes
import ctypes
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from gemserve.engine.cpu.build import cache_root
from gemserve.engine.cpu.probe import signal_name

log = logging.getLogger("gemserve.engine")

# Set in the checking child: load exactly this variant.
VARIANT_ENV = "GEMSERVE_GGML_CPU_VARIANT"


def variant_libraries(lib_dir: Path) -> list[Path]:
    return sorted(lib_dir.glob("libggml-cpu-*.so"))


def score(path: Path) -> int:
    """ggml's own score of a variant on this CPU (0: not usable; higher: more features)."""
    lib = ctypes.CDLL(str(path))
    try:
        fn = lib.ggml_backend_score
        fn.restype = ctypes.c_int
        return int(fn())
    finally:
        _ctypes.dlclose(lib._handle)


def cpu_fingerprint() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    lines = [
        line for line in text.splitlines() if line.startswith(("flags", "model name", "vendor"))
    ]
    return hashlib.sha256("\n".join(sorted(set(lines))).encode()).hexdigest()[:16]


class VerdictCache:
    """Which variant library ran or trapped on which CPU (a JSON file in the engine cache)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _key(self, library: Path) -> str:
        stat = library.stat()
        return f"{library.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{cpu_fingerprint()}"

    def get(self, library: Path) -> str | None:
        try:
            verdicts = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        verdict = verdicts.get(self._key(library))
        return str(verdict) if verdict is not None else None

    def put(self, library: Path, verdict: str) -> None:
        try:
            verdicts = json.loads(self.path.read_text())
        except (OSError, ValueError):
            verdicts = {}
        verdicts[self._key(library)] = verdict
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(verdicts, indent=2))
            tmp.replace(self.path)
        except OSError as exc:  # a read-only cache costs a check per start, nothing more
            log.debug("could not keep the variant verdict: %s", exc)


def check_in_child(library: Path) -> str:
    """Decode one batch with ``library`` in a child: "ok", or the signal that killed it."""
    result = subprocess.run(
        [sys.executable, "-m", "gemserve.engine.llama"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {VARIANT_ENV: str(library)},
    )
    if result.returncode < 0:
        return signal_name(-result.returncode)
    if result.returncode != 0:
        raise RuntimeError(f"checking {library.name} failed: {result.stderr[-2000:]}")
    return "ok"


def load_cpu_backend(lib_dir: Path, cache: VerdictCache | None = None) -> Path | None:
    """Load the best CPU variant that really runs here; None for a native build, or when a
    backend is already loaded (idempotent: every model load calls this)."""
    libraries = variant_libraries(lib_dir)
    if not libraries:
        return None
    ggml = ctypes.CDLL(str(_ggml_of_libllama(lib_dir)))
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if ggml.ggml_backend_reg_count() > 0:
        return None
    ggml.ggml_backend_load.restype = ctypes.c_void_p
    ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
    forced = os.environ.get(VARIANT_ENV)
    if forced:
        chosen = Path(forced)
    else:
        chosen = choose(libraries, cache or VerdictCache(cache_root() / "cpu-variants.json"))
    if not ggml.ggml_backend_load(str(chosen).encode()):
        raise RuntimeError(f"ggml could not load its CPU backend {chosen}")
    log.info("llama.cpp CPU backend: %s", chosen.name)
    return chosen


def _ggml_of_libllama(lib_dir: Path) -> Path:
    """The libggml file libllama was linked against. A wheel stores libggml.so, .so.0 and
    .so.0.x as three copies, not links, and each copy loaded is a registry of its own: a
    backend loaded into llama_cpp's libggml.so is invisible to libllama, which loaded
    libggml.so.0 (its DT_NEEDED, through its $ORIGIN run path)."""
    for name in ("libggml.so.0", "libggml.so"):
        if (lib_dir / name).exists():
            return lib_dir / name
    raise FileNotFoundError(f"no libggml in {lib_dir}")


def choose(
    libraries: list[Path],
    cache: VerdictCache,
    *,
    rank: Callable[[Path], int] = score,
    check: Callable[[Path], str] = check_in_child,
) -> Path:
    """The best-scoring variant whose check ran ("ok"), checking each at most once per CPU."""
    ranked = sorted(((rank(path), path) for path in libraries), reverse=True)
    for points, path in ranked:
        if points <= 0:
            break
        verdict = cache.get(path)
        if verdict is None:
            verdict = check(path)
            cache.put(path, verdict)
        if verdict == "ok":
            return path
        log.warning("CPU variant %s dies by %s on this CPU; trying the next", path.name, verdict)
    raise RuntimeError("no llama.cpp CPU variant runs on this CPU")
