"""Benchmark: ``hash_delta`` (write only what changed, by row hash) against a full refresh.

    python bench/hash_delta.py              # 2,000,000 rows, 1% changed at the source
    python bench/hash_delta.py --rows 1000000

It builds ``bench_hd_src.orders`` (the peer benchmark's rows) in PostgreSQL ($BENCH_PG, default
database ``sync_bench`` on the local server), loads it into a ``hash_delta`` copy and a
``full_refresh`` copy on PostgreSQL and on DuckDB, changes 1% of the source rows, and times per
target: the hash_delta run that finds them, a second hash_delta run with nothing changed (the cost
of reading and classifying alone) and the full refresh, in the same run. The hash_delta runs must
report exactly the changed rows as updated and the rest as unchanged. Tests never assert on these
times.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_table import loaded_copies  # noqa: E402

from sync_assets.sync.engine import sync_table  # noqa: E402

MODES = {"hash_delta": "bench_hd_delta", "full_refresh": "bench_hd_full"}


def replications() -> list[dict]:
    """A hash_delta copy and a full_refresh copy on each target."""
    return [
        {"source": "pg", "target": target, "streams": {"bench_hd_src.orders": {
            "mode": mode, "primary_key": "id", "object": f"{schema}.orders", "asset_key": [target, schema]}}}
        for target in ("pg", "duck") for mode, schema in MODES.items()
    ]


def main() -> None:
    with loaded_copies(__doc__, "bench_hd_src", list(MODES.values()), replications()) as bench:
        rows, conninfo, project, source, targets = bench.rows, bench.conninfo, bench.project, bench.source, \
            bench.targets
        with psycopg.connect(conninfo, autocommit=True) as conn:
            changed = conn.execute("UPDATE bench_hd_src.orders SET customer_id = customer_id + 1 "
                                   "WHERE id % 100 = 1").rowcount
        print(f"changed {changed:,} source rows (1%)\n")
        print(f"{'target':<7} {'run':<32} {'seconds':>8} {'rows/s':>11} {'x full refresh':>15}  applied")
        for target in ("pg", "duck"):
            delta, full = (t for t in project.tables if t.target == target)
            timed = []
            for label, table in (("hash_delta, 1% changed", delta), ("hash_delta, nothing changed", delta),
                                 ("full_refresh", full)):
                started = time.monotonic()
                result = sync_table(table, source, targets[target])
                timed.append((label, time.monotonic() - started, result))
            full_seconds = timed[-1][1]
            for label, seconds, result in timed:
                print(f"{target:<7} {label:<32} {seconds:>8.2f} {rows / seconds:>11,.0f} "
                      f"{seconds / full_seconds:>14.2f}x  {result.applied}")
            expected = [(changed, rows - changed), (0, rows)]
            found = [(r.rows_updated, r.rows_unchanged) for _, _, r in timed[:2]]
            if found != expected:
                raise SystemExit(f"{target}: hash_delta classified (updated, unchanged) {found}, expected {expected}")


if __name__ == "__main__":
    main()
