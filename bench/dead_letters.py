"""Benchmark: what ``on_bad_rows: quarantine`` costs when nothing is bad, and when 0.1% of rows are.

    python bench/dead_letters.py              # 2,000,000 rows
    python bench/dead_letters.py --rows 500000

It builds ``bench_dl_src.orders`` (the peer benchmark's rows, ``bench/sql/gen_data.sql``) in
PostgreSQL ($BENCH_PG, default database ``sync_bench`` on the local server), loads one copy per
scenario, then gives 0.1% of the source rows a 40-character ``customer_email`` and times a merge of
every row (an incremental run re-reading the whole table) into each copy:

- ``merge, fail``: the default policy, target types equal to the source's (the baseline);
- ``merge, quarantine, nothing bad``: the same with ``quarantine``: every batch screened in
  Arrow, staging scanned for NULL and duplicate keys;
- ``merge, quarantine, 0.1% bad``: the copy's ``customer_email`` is ``varchar(39)`` (PostgreSQL
  only: DuckDB has no length limit), so 0.1% of the rows become dead letters.

Each row prints the time, the ratio to the baseline of the same target and the rows quarantined,
which must be exactly the planted ones. Tests never assert on these times.
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
    "merge, fail": "fail",
    "merge, quarantine, nothing bad": "quarantine",
    "merge, quarantine, 0.1% bad": "quarantine",
}
NARROW = "merge, quarantine, 0.1% bad"


def replications() -> list[dict]:
    out = []
    for target in ("pg", "duck"):
        for number, (name, policy) in enumerate(SCENARIOS.items()):
            if target == "duck" and name == NARROW:
                continue
            stream = {"object": f"bench_dl_{number}.orders", "asset_key": [target, f"bench_dl_{number}"],
                      "mode": "incremental", "primary_key": "id", "update_key": "updated_at", "on_bad_rows": policy}
            out.append({"source": "pg", "target": target, "streams": {"bench_dl_src.orders": stream}})
    return out


def main() -> None:
    copies = [f"bench_dl_{i}" for i in range(len(SCENARIOS))]
    with loaded_copies(__doc__, "bench_dl_src", copies, replications()) as bench:
        conninfo, project, source, targets = bench.conninfo, bench.project, bench.source, bench.targets
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE bench_dl_{list(SCENARIOS).index(NARROW)}.orders "
                         "ALTER COLUMN customer_email TYPE varchar(39)")
            planted = conn.execute("UPDATE bench_dl_src.orders SET customer_email = repeat('x', 40) "
                                   "WHERE id % 1000 = 0").rowcount
            conn.execute("VACUUM ANALYZE bench_dl_src.orders")
        print(f"planted {planted:,} emails of 40 characters (0.1%)\n")
        print(f"{'target':<8} {'scenario':<32} {'seconds':>8} {'x fail':>8} {'quarantined':>12}")
        everything = RunOptions(window_start="2000-01-01T00:00:00+00:00")
        for target in ("pg", "duck"):
            results = {}
            for table in (t for t in project.tables if t.target == target):
                name = next(n for n, number in zip(SCENARIOS, range(len(SCENARIOS)), strict=True)
                            if table.target_table.schema == f"bench_dl_{number}")
                started = time.monotonic()
                result = sync_table(table, source, targets[target], everything)
                results[name] = (time.monotonic() - started, result.rows_quarantined)
            base = results["merge, fail"][0]
            for name, (seconds, quarantined) in results.items():
                print(f"{target:<8} {name:<32} {seconds:>8.2f} {seconds / base:>7.2f}x {quarantined:>12,}")
                expected = planted if name == NARROW else 0
                if quarantined != expected:
                    raise SystemExit(f"{target} {name}: quarantined {quarantined:,} rows, expected {expected:,}")


if __name__ == "__main__":
    main()
