"""Benchmark: a small incremental run on a large table, and whether its time grows with the table.

    python bench/incremental_large.py                    # TPC-H lineitem at scale 0.1 and 1 (0.6 M, 6 M rows)
    python bench/incremental_large.py --scales 1 --changed 60000

For each scale it generates TPC-H ``lineitem`` with ``tpchgen-cli`` ($TPCHGEN, PATH, or
/tmp/tpch/bin; ``pip install tpchgen-cli``), loads it into PostgreSQL (database ``sync_bench``,
$BENCH_PG) with an ``updated_at`` column (indexed at the source, as a table synced incrementally
would be) and the key (l_orderkey, l_linenumber), syncs it once in full into another schema, then
changes ``--changed`` rows (default 60,000: 1% of scale 1) and times one incremental run (PG ->
PG, merge on the key) in this process, split into:

- read + stage: the source read streamed into the run's staging table (COPY);
- apply: the merge transaction (and its row count bookkeeping);
- bookkeeping: everything else (catalog reads, the watermark before and after, the lock).

The same number of changed rows on a 10x larger table should take the same time: nothing in a
run scans the target (``_sync_row_counts`` instead of COUNT(*), the watermark through an index).
Tests never assert on these figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import ensure_database  # noqa: E402  (bench/ is not a package)

COLUMNS = ("l_orderkey bigint, l_partkey bigint, l_suppkey bigint, l_linenumber int, l_quantity numeric(15,2), "
           "l_extendedprice numeric(15,2), l_discount numeric(15,2), l_tax numeric(15,2), l_returnflag char(1), "
           "l_linestatus char(1), l_shipdate date, l_commitdate date, l_receiptdate date, l_shipinstruct text, "
           "l_shipmode text, l_comment text")


def tpchgen() -> str:
    for candidate in (os.environ.get("TPCHGEN"), shutil.which("tpchgen-cli"), "/tmp/tpch/bin/tpchgen-cli"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("tpchgen-cli not found: pip install tpchgen-cli (or set TPCHGEN)")


def load_lineitem(conninfo: str, scale: float, schema: str, work: Path) -> int:
    out = work / f"sf{scale}"
    subprocess.run([tpchgen(), "csv", "-s", str(scale), "--tables", "lineitem", "--output-dir", str(out)],
                   check=True, capture_output=True)
    (csv,) = out.glob("lineitem*.csv")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"DROP SCHEMA IF EXISTS {schema}_copy CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE UNLOGGED TABLE {schema}.generated ({COLUMNS})")
        with conn.cursor() as cur, cur.copy(f"COPY {schema}.generated FROM STDIN (FORMAT csv, HEADER true)") as copy, \
                open(csv, "rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        # last modified: spread over the orders, as in a live table (one second per order)
        conn.execute(f"CREATE TABLE {schema}.lineitem AS SELECT *, timestamp '2020-01-01' + l_orderkey * "
                     f"interval '1 second' AS updated_at FROM {schema}.generated")
        conn.execute(f"DROP TABLE {schema}.generated")
        conn.execute(f"ALTER TABLE {schema}.lineitem ALTER COLUMN updated_at SET NOT NULL")
        conn.execute(f"ALTER TABLE {schema}.lineitem ADD PRIMARY KEY (l_orderkey, l_linenumber)")
        conn.execute(f"CREATE INDEX ON {schema}.lineitem (updated_at)")
        conn.execute(f"ANALYZE {schema}.lineitem")
        return conn.execute(f"SELECT COUNT(*) FROM {schema}.lineitem").fetchone()[0]


def change(conninfo: str, schema: str, rows: int) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE {schema}.lineitem l SET updated_at = now(), l_comment = 'changed' "
                     f"FROM (SELECT l_orderkey, l_linenumber FROM {schema}.lineitem ORDER BY l_orderkey DESC "
                     f"LIMIT {rows}) picked WHERE (l.l_orderkey, l.l_linenumber) = (picked.l_orderkey, "
                     f"picked.l_linenumber)")


class Timings(logging.Handler):
    """Picks the staging-load and apply durations out of the sync's own debug log lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for what, pattern in (("stage", r"into staging .* in ([\d.]+)s"), ("apply", r"^applied .* in ([\d.]+)s")):
            found = re.search(pattern, message)
            if found:
                self.seconds[what] = float(found.group(1))


def timed_sync(project):
    """(seconds, result) of syncing the project's one table in this process."""
    from sync_assets.connectors import connector_for
    from sync_assets.sync.planning import RunOptions
    from sync_assets.sync.policies import sync_with_policies

    source = connector_for("src", project.connections["src"], read_only=True)
    target = connector_for("dst", project.connections["dst"])
    started = time.monotonic()
    result = sync_with_policies(project.tables[0], source, target, RunOptions()).result
    return time.monotonic() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="0.1,1")
    parser.add_argument("--changed", type=int, default=60_000)
    args = parser.parse_args()

    from sync_assets.config.loader import load_project

    admin = os.environ.get("BENCH_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    ensure_database(admin, "sync_bench")
    conninfo = psycopg.conninfo.make_conninfo(admin, dbname="sync_bench")
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    pg = {"kind": "postgres", "options": {"host": params.get("host", "127.0.0.1"),
                                          "port": int(params.get("port", 5432)), "database": "sync_bench",
                                          "user": params.get("user", "postgres")}}
    timings = Timings()
    logger = logging.getLogger("sync_assets")
    logger.addHandler(timings)
    logger.setLevel(logging.DEBUG)
    work = Path(tempfile.mkdtemp(prefix="bench_incr_"))
    print(f"{'table':>22s} {'rows':>10s} {'changed':>8s} {'total':>7s} {'read+stage':>10s} {'apply':>7s} "
          f"{'bookkeeping':>11s}")
    try:
        for scale in (float(s) for s in args.scales.split(",")):
            schema = f"tpch_sf{str(scale).replace('.', '_')}"
            rows = load_lineitem(conninfo, scale, schema, work)
            config = work / schema
            config.mkdir()
            (config / "sync.yaml").write_text(yaml.safe_dump({
                "connections": {"src": {**pg, "role": "source"}, "dst": {**pg, "role": "target"}},
                "source": "src", "target": "dst",
                "streams": {f"{schema}.lineitem": {"mode": "incremental", "primary_key": ["l_orderkey", "l_linenumber"],
                                                   "update_key": "updated_at", "object": f"{schema}_copy.lineitem"}},
            }, sort_keys=False))
            project = load_project(config)
            timed_sync(project)  # the first, full load
            change(conninfo, schema, args.changed)
            timings.seconds.clear()
            total, result = timed_sync(project)
            stage, apply = timings.seconds.get("stage", 0.0), timings.seconds.get("apply", 0.0)
            assert result.rows_read >= args.changed and result.target_rows == rows, (result.rows_read,
                                                                                     result.target_rows)
            print(f"{schema + '.lineitem':>22s} {rows:>10,} {result.rows_read:>8,} {total:>6.2f}s {stage:>9.2f}s "
                  f"{apply:>6.2f}s {total - stage - apply:>10.2f}s", flush=True)
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
                conn.execute(f"DROP SCHEMA {schema}_copy CASCADE")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
