"""Decode throughput when the cores are shared: alone, then beside other CPU work.

llama.cpp's CPU backend ends every graph operation at a barrier where all its threads meet. A
thread that a busy neighbour has pushed off its core holds every other thread at the barrier,
and threads that spin there burn the time the late one needed. This bench measures how badly
each system suffers from it.

Loads (each its own process, started before a round and killed after it; bench/cpu_load.py):

  quiet    nothing
  whisper  gemserve's Transcriber (faster-whisper tiny.en, 2 threads) transcribing in a loop
  pdf      gemserve's PDF decoder rendering pages in a loop (one thread)
  spin19   one busy loop at nice 19
  spin0    one busy loop at nice 0

Systems: gemserve variants (``name[:ENV=VALUE,...]``: the environment of that gemserve
process, e.g. ``gemserve-active:GEMSERVE_OMP_WAIT_POLICY=ACTIVE``) and llama-server when built
(bench/build_llama_server.sh). Every system runs every load at every level in every rep; the
loads' order and the systems' order rotate per rep, so drift hits all alike.

"Fair share" is what the kernel's weights entitle the engine's T threads to beside a load of
L busy threads of weight w on C cores: min(1, C x T / (T + L x w / 1024) / T) of its quiet
throughput (nice 0 weighs 1024, nice 19 weighs 15). Below half of it is a defect (issue 9).

    .venv/bin/python bench/bench_shared_cores.py
    .venv/bin/python bench/bench_shared_cores.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench_concurrency import run_round, stream_fn
from common import (
    LLAMA_SERVER_BIN,
    Server,
    exit_on_sigterm,
    gemserve_server,
    llama_server,
    md_table,
    median,
    print_preamble,
    ratio,
)

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Load:
    name: str
    argv: tuple[str, ...]  # empty: no load
    threads: int  # busy threads it adds
    weight: int  # the kernel's weight of each (nice 0: 1024, nice 19: 15)


LOADS = {
    "quiet": Load("quiet", (), 0, 0),
    "whisper": Load("whisper", ("whisper",), 2, 1024),
    "pdf": Load("pdf", ("pdf",), 1, 1024),
    "spin19": Load("spin19", ("nice", "-n", "19", "spin"), 1, 15),
    "spin0": Load("spin0", ("spin",), 1, 1024),
}


def fair_share(load: Load, threads: int, cores: int) -> float:
    if load.threads == 0:
        return 1.0
    engine_weight = threads * 1024
    cores_for_engine = cores * engine_weight / (engine_weight + load.threads * load.weight)
    return min(1.0, cores_for_engine / threads)


@contextlib.contextmanager
def running(load: Load) -> Iterator[None]:
    if not load.argv:
        yield
        return
    *prefix, kind = load.argv
    argv = [*prefix, sys.executable, str(HERE / "cpu_load.py"), kind]
    env = os.environ | {"PYTHONPATH": str(HERE.parent / "src")}
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    try:
        time.sleep(3.0 if kind == "whisper" else 1.0)  # the model loads before it loads the CPU
        if proc.poll() is not None:
            raise RuntimeError(f"load {load.name} exited with {proc.returncode}")
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Cell:
    tps: list[float] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short rep")
    parser.add_argument("--tokens", type=int, default=64, help="max output tokens per stream")
    parser.add_argument("--levels", default="1,4", help="concurrent streams, comma-separated")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads everywhere")
    parser.add_argument("--loads", default=",".join(LOADS), help=f"subset of {','.join(LOADS)}")
    parser.add_argument(
        "--gemserve",
        action="append",
        default=[],
        metavar="NAME[:ENV=V,...]",
        help="a gemserve variant (repeatable; default: one plain gemserve)",
    )
    parser.add_argument("--no-llama-server", action="store_true")
    parser.add_argument("--round-timeout", type=float, default=240.0)
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.reps = 32, 1
    args.levels = sorted({int(x) for x in args.levels.split(",") if x})
    args.loads = [LOADS[name] for name in args.loads.split(",") if name]
    return args


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """``NAME[:ENV=V,...]``; the name gets a ``gemserve`` prefix (it picks the client)."""
    name, _, env_text = spec.partition(":")
    env = dict(item.split("=", 1) for item in env_text.split(",") if item)
    return (name if name.startswith("gemserve") else f"gemserve-{name}"), env


async def measure(servers: dict[str, Server], args: argparse.Namespace) -> dict[tuple, Cell]:
    fns = {name: stream_fn(name, server.base_url) for name, server in servers.items()}
    for fn in fns.values():
        await run_round(fn, 1, 8, 0, limit_s=args.round_timeout)  # warm-up
    cells: dict[tuple, Cell] = {}
    systems = list(fns)
    request_no = 1
    for rep in range(args.reps):
        loads = args.loads[rep % len(args.loads) :] + args.loads[: rep % len(args.loads)]
        for load in loads:
            with running(load):
                turn = systems[rep % len(systems) :] + systems[: rep % len(systems)]
                for system in turn:
                    for level in args.levels:
                        try:
                            tps, _ = await run_round(
                                fns[system], level, args.tokens, request_no,
                                limit_s=args.round_timeout,
                            )  # fmt: skip
                        except TimeoutError:
                            tps = 0.0  # a collapse: reported as 0 tok/s
                        cells.setdefault((system, load.name, level), Cell()).tps.append(tps)
                        print(
                            f"  rep {rep + 1} {load.name:8s} {system:18s} streams={level}: "
                            f"{tps:6.1f} tok/s",
                            file=sys.stderr,
                            flush=True,
                        )
                request_no += max(args.levels)
    return cells


def report(cells: dict[tuple, Cell], systems: list[str], args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    rows = []
    defects = 0
    for system in systems:
        for level in args.levels:
            quiet = median(cells[(system, "quiet", level)].tps)
            for load in args.loads:
                tps = median(cells[(system, load.name, level)].tps)
                share = fair_share(load, args.threads, cores)
                of_fair = ratio(tps, quiet * share)
                bad = load.name != "quiet" and of_fair < 0.5
                defects += bad
                rows.append(
                    [
                        system,
                        level,
                        load.name,
                        f"{tps:.1f}",
                        f"{ratio(tps, quiet):.2f}",
                        f"{share:.2f}",
                        f"{of_fair:.2f}" + (" DEFECT" if bad else ""),
                    ]
                )
    print(
        md_table(
            [
                "system",
                "streams",
                "load",
                "tok/s (median)",
                "x quiet",
                "fair share",
                "x fair share",
            ],
            rows,
        )
    )
    print(f"\nbelow half of the fair share: {defects} cell(s)")


def main() -> None:
    args = parse_args()
    exit_on_sigterm()
    print_preamble("Decode beside other CPU work (shared cores)")
    variants = [parse_variant(v) for v in args.gemserve] or [("gemserve", {})]
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for name, env in variants:
            threads = int(env.pop("GEMSERVE_THREADS", args.threads))  # --threads would win
            with patched_environ(env):
                servers[name] = stack.enter_context(
                    gemserve_server(slots=max(args.levels), threads=threads, name=name)
                )
        if not args.no_llama_server and LLAMA_SERVER_BIN.exists():
            servers["llama-server"] = stack.enter_context(
                llama_server(parallel=max(args.levels), threads=args.threads)
            )
        print(
            f"systems: {', '.join(servers)}; loads: {', '.join(load.name for load in args.loads)}; "
            f"levels {args.levels}; {args.tokens} tokens; {args.reps} reps; "
            f"{args.threads} threads on {os.cpu_count()} cores\n"
        )
        cells = asyncio.run(measure(servers, args))
    report(cells, list(servers), args)


@contextlib.contextmanager
def patched_environ(env: dict[str, str]) -> Iterator[None]:
    """The server inherits this process's environment at start: set ``env`` around it."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if __name__ == "__main__":
    main()
