"""Faults under load: kill -9 and restart ``--kills`` times on SQLite and on PostgreSQL, then
PostgreSQL stopped for ``--outage-seconds`` under a live server.

The checks are tests/faults' (tests/support/faults.py, tests/faults/test_postgres_outage.py),
at a larger size: after each kill the store is whole (SQLite ``PRAGMA integrity_check``; every
interaction's event seqs contiguous up to the verdict; no terminal row without its final
event), every interaction seen finished is byte-identical after the restart and every one seen
running is ``failed`` with the "stopped" reason. During the outage every answer is a 503
UNAVAILABLE with Retry-After (never a 500), and gemserve serves again once PostgreSQL is back,
without a restart. PostgreSQL is started again in a ``finally``.

    .venv/bin/python bench/bench_faults.py                       # 20 kills per store, 30 s outage
    .venv/bin/python bench/bench_faults.py --kills 3 --outage-seconds 10 --stores sqlite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import md_table, median
from tests.support.faults import KillReport, kill_cycles


def _database(kind: str) -> Any:
    from tests.support.postgres import fresh_database

    return fresh_database()


def kills(store: str, count: int, seed: int) -> tuple[KillReport, float]:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gemserve-faults-") as tmp:
        if store == "postgres":
            with _database(store) as url:
                report = kill_cycles(Path(tmp), count, database_url=url, seed=seed)
        else:
            report = kill_cycles(Path(tmp), count, seed=seed)
    return report, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--outage-seconds", type=float, default=30.0)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--skip-outage", action="store_true")
    args = parser.parse_args()
    if not 0 <= args.kills <= 100 or not 1 <= args.outage_seconds <= 300:
        parser.error("--kills 0..100, --outage-seconds 1..300")
    print(
        f"## Faults: kill -9 x{args.kills} per store, PostgreSQL outage {args.outage_seconds:g} s\n"
    )
    print("```\n$ " + " ".join([Path(sys.executable).name, *sys.argv]) + "\n```\n")
    failed = False
    results: dict[str, tuple[KillReport, float]] = {}
    for store in args.stores.split(",") if args.kills else []:
        print(f"[{store}] {args.kills} kills ...", file=sys.stderr, flush=True)
        results[store] = kills(store, args.kills, args.seed)
    stores = list(results)
    if not stores:
        args.kills = 0
    keys = sorted({k for report, _ in results.values() for k in report.counts})
    rows: list[list[object]] = [
        ["kills", *(results[s][0].kills for s in stores)],
        ["wall seconds", *(f"{results[s][1]:.0f}" for s in stores)],
        [
            "restart to ready s (median / max)",
            *(
                f"{median(results[s][0].restarts_s):.1f} / {max(results[s][0].restarts_s):.1f}"
                for s in stores
            ),
        ],
        *([key, *(results[s][0].counts[key] for s in stores)] for key in keys),
        ["problems", *(len(results[s][0].problems) for s in stores)],
    ]
    if stores:
        print(md_table(["", *stores], rows))
    for store, (report, _) in results.items():
        if report.problems:
            failed = True
            print(f"\n{store} problems:\n" + "\n".join(report.problems[:20]))
    if not args.skip_outage:
        from tests.faults.test_postgres_outage import run_outage
        from tests.support.postgres import fresh_database

        print(f"[postgres] outage of {args.outage_seconds:g} s ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="gemserve-outage-") as tmp, fresh_database() as url:
            outage = run_outage(Path(tmp), url, args.outage_seconds)
        counts: Counter[str] = outage["counts"]
        print(f"\n### PostgreSQL stopped for {args.outage_seconds:g} s\n")
        print(md_table(["answer during the outage", "count"], sorted(counts.items())))
        print(f"\nserving again {outage['back_after']:.1f} s after PostgreSQL was started")
        for iid, (status, replayed, errors) in outage["finals"].items():
            print(f"- {iid}: {status} (replay: {replayed}) {errors or ''}")
        if outage["bad"] or outage["back_after"] is None:
            failed = True
            print("\nBAD:\n" + "\n".join(map(str, outage["bad"][:20])))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
