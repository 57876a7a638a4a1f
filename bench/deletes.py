"""Benchmark: mirroring source deletes (``deletes``) against the full refresh users run today to get them.

    python bench/deletes.py              # 2,000,000 rows, 1% deleted at the source
    python bench/deletes.py --rows 500000

It builds ``bench_del_src.orders`` (the peer benchmark's rows, ``bench/sql/gen_data.sql``) in
PostgreSQL ($BENCH_PG, default database ``sync_bench`` on the local server), loads four copies into
PostgreSQL and four into one DuckDB file, deletes every 100th row at the source and then times, per
target, on its own pre-loaded copy:

- ``incremental``: the plain merge (sees no delete: it reads only rows past the watermark),
- ``incremental + deletes hard``: every source key streamed into keys staging, anti-join delete,
- ``incremental + deletes soft``: the same, marking ``_sync_deleted_at``,
- ``full_refresh``: re-copy everything (the only other way to drop deleted rows).

Each row prints the time, the ratio to the full refresh of the same target in the same run, and
the rows the run deleted or marked, which must be exactly the 1% deleted. Tests never assert on
these times.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_table import loaded_copies  # noqa: E402

from sync_assets.sync.engine import sync_table
from sync_assets.sync.planning import RunOptions

SCENARIOS = {
    "incremental": {"mode": "incremental"},
    "incremental + deletes hard": {"mode": "incremental", "deletes": {"detect": "hard"}},
    "incremental + deletes soft": {"mode": "incremental", "deletes": {"detect": "soft"}},
    "full_refresh": {"mode": "full_refresh"},
}


def replications() -> list[dict]:
    """One stream per target and scenario, each into its own copy."""
    out = []
    for target in ("pg", "duck"):
        for number, (_, options) in enumerate(SCENARIOS.items()):
            stream = {"object": f"bench_del_{number}.orders", "asset_key": [target, f"bench_del_{number}"],
                      "primary_key": "id", "update_key": "updated_at", **options}
            out.append({"source": "pg", "target": target, "streams": {"bench_del_src.orders": stream}})
    return out


def main() -> None:
    copies = [f"bench_del_{i}" for i in range(len(SCENARIOS))]
    with loaded_copies(__doc__, "bench_del_src", copies, replications()) as bench:
        conninfo, project, source, targets = bench.conninfo, bench.project, bench.source, bench.targets
        with psycopg.connect(conninfo, autocommit=True) as conn:
            deleted = conn.execute("DELETE FROM bench_del_src.orders WHERE id % 100 = 0").rowcount
        print(f"deleted {deleted:,} source rows (1%)\n")
        print(f"{'target':<8} {'scenario':<30} {'seconds':>8} {'x full refresh':>15} {'rows deleted/marked':>20}")
        for target in ("pg", "duck"):
            results = {}
            for table, name in zip([t for t in project.tables if t.target == target], SCENARIOS, strict=True):
                started = time.monotonic()
                result = sync_table(table, source, targets[target], RunOptions())
                results[name] = (time.monotonic() - started, result.rows_soft_deleted or result.rows_deleted)
            full = results["full_refresh"][0]
            for name, (seconds, removed) in results.items():
                shown = "(old table)" if name == "full_refresh" else f"{removed:,}"
                print(f"{target:<8} {name:<30} {seconds:>8.2f} {seconds / full:>14.2f}x {shown:>20}")
                if "deletes" in name and removed != deleted:
                    raise SystemExit(f"{target} {name}: removed {removed:,} rows, expected {deleted:,}")


if __name__ == "__main__":
    main()
