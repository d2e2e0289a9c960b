"""Schemathesis over /openapi.json against a live gemserve, the bench profile (>= 10,000
cases: every phase, examples, coverage, fuzzing and stateful, positive and negative data).

Counts what matters: 5xx answers (0 expected), answers outside the surface's error envelope
(0), hangs past the request timeout (0), and whether the server is alive at the end, with its
RSS before and after. ``--engine scripted`` runs the app over scripted engines (faster: the
HTTP layer, validation, store and files only); the default is the real bundled model.

Usage: .venv/bin/python bench/bench_fuzz.py [--max-examples 40] [--engine real|scripted]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    REPO,
    Server,
    exit_on_sigterm,
    free_port,
    gemserve_server,
    md_table,
    print_preamble,
    rss_bytes,
)


def scripted(data_dir: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.scripted_server", "--port", str(port),
            "--data-dir", data_dir]  # fmt: skip
    return Server("scripted", argv, port=port, ready_path="/readyz", env={"PYTHONPATH": str(REPO)})


def run_schemathesis(url: str, max_examples: int, seed: int) -> tuple[int, str, float]:
    began = time.perf_counter()
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"), "run", url + "/openapi.json",
            "--checks", "not_a_server_error,error_envelope",
            "--mode", "all", "--max-examples", str(max_examples), "--request-timeout", "60",
            "--seed", str(seed), "--header", "x-goog-api-key: fuzz",
            "--continue-on-failure", "--no-color",
        ],
        cwd=REPO,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.fuzz_checks",
             "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )  # fmt: skip
    return result.returncode, result.stdout, time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=40)
    parser.add_argument("--engine", choices=["real", "scripted"], default="real")
    parser.add_argument("--seed", type=int, default=20261128)
    args = parser.parse_args()
    exit_on_sigterm()
    print_preamble(f"Fuzzing /openapi.json with schemathesis ({args.engine} engine)")
    with tempfile.TemporaryDirectory() as data_dir:
        server_cm = (
            scripted(data_dir) if args.engine == "scripted" else gemserve_server(slots=4, threads=2)
        )
        with server_cm as server:
            rss_before = rss_bytes(server.pid)
            code, out, seconds = run_schemathesis(server.base_url, args.max_examples, args.seed)
            alive = server._proc is not None and server._proc.poll() is None
            rss_after = rss_bytes(server.pid) if alive else 0
    generated = re.search(r"(\d+) generated", out)
    failures = re.findall(r"❌ (ST\d+|[A-Z][^:\n]*): (\d+)", out)
    server_errors = sum(int(n) for what, n in failures if "Server error" in what)
    print(
        md_table(
            ["cases", "seconds", "5xx", "failed checks", "server alive", "RSS before → after MB"],
            [
                [
                    generated.group(1) if generated else "?",
                    seconds,
                    server_errors,
                    sum(int(n) for _, n in failures),
                    "yes" if alive else "NO",
                    f"{rss_before / 2**20:.0f} → {rss_after / 2**20:.0f}",
                ]
            ],
        )
    )
    print("\nschemathesis summary:\n```")
    print(out[out.rfind("SUMMARY") - 40 :].strip() if "SUMMARY" in out else out[-3000:])
    print("```")
    return 0 if code == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
