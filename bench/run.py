"""Benchmark: sync_assets against the raw COPY pipe and a hand-written merge, measured in one run.

    python bench/run.py                      # 2,000,000 rows
    python bench/run.py --rows 500000,4000000  # memory flatness: peak RSS at two sizes

For each size N it generates ``src.orders`` (the peer benchmark's table, ``bench/sql/gen_data.sql``)
in PostgreSQL ($BENCH_PG, default the local server, database ``sync_bench``), then times, each in
its own process so peak RSS is that process's own:

- baseline: ``psql COPY ... TO STDOUT (FORMAT binary) | psql COPY ... FROM STDIN (FORMAT binary)``
- full PG -> PG and full PG -> DuckDB with ``sync-assets run`` (the sync step, no Dagster), the
  latter also with ``string_compression: false`` (file sizes printed),
- the same PG -> DuckDB table through ``dagster asset materialize`` (whole process, start-up included),
- bounded reads, PG -> DuckDB: an incremental run whose watermark lies below every row, and a
  ``date_partitioned`` run whose window holds every row, so both read all N rows through a bound
  filter (ratio: against the unfiltered full PG -> DuckDB copy of the same run; peak RSS must not
  grow with N: ``--rows 500000,4000000`` prints the growth per scenario),
- incremental: initial load, then ``delta.sql`` (1% updated, 1% added) and one incremental run,
  against a hand-written watermark + COPY + ``INSERT ... ON CONFLICT`` merge on the same change.

The full copies run in ``--rounds`` interleaved rounds (default 3; this shared 2-core machine's
speed swings by about ±25% within an hour): for each it prints the median time and rows/s, the
median of each round's ratio to that round's raw pipe, and the highest peak RSS. Tests never
assert on these figures.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import psycopg
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SQL = HERE / "sql"
BIN = Path(sys.executable).parent


def run_measured(command: list[str] | str, env: dict | None = None, shell: bool = False) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the largest process, output) for one command."""
    timed = ["/usr/bin/time", "-f", "PEAK_RSS_KB=%M", "sh", "-c", command] if shell else \
        ["/usr/bin/time", "-f", "PEAK_RSS_KB=%M", *command]
    started = time.monotonic()
    done = subprocess.run(timed, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    wall = time.monotonic() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {command}\n{output[-4000:]}")
    rss = max(int(m) for m in re.findall(r"PEAK_RSS_KB=(\d+)", output)) / 1024
    return wall, rss, output


def psql(conninfo: str, *args: str) -> None:
    subprocess.run(["psql", conninfo, "-Xq", "-v", "ON_ERROR_STOP=1", *args], check=True, capture_output=True)


def ensure_database(admin_conninfo: str, name: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def write_config(folder: Path, conninfo: str, duckdb_path: Path, fast_duckdb_path: Path, bounded_path: Path) -> Path:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    pg = {
        "kind": "postgres",
        "options": {
            "host": params.get("host", "127.0.0.1"),
            "port": int(params.get("port", 5432)),
            "database": params["dbname"],
            "user": params.get("user", "postgres"),
        },
    }
    config = {
        "connections": {"pg": pg, "duck": {"kind": "duckdb", "role": "target", "options": {"path": str(duckdb_path)}},
                        "duck_fast": {"kind": "duckdb", "role": "target",
                                      "options": {"path": str(fast_duckdb_path), "string_compression": False}},
                        "duck_bounded": {"kind": "duckdb", "role": "target", "options": {"path": str(bounded_path)}}},
        "replications": [
            {"source": "pg", "target": "pg", "streams": {
                "src.orders": {"object": "bench_full.orders", "mode": "full_refresh"}}},
            {"source": "pg", "target": "pg", "streams": {
                "src.orders": {"object": "bench_incr.orders", "mode": "incremental", "primary_key": "id",
                               "update_key": "updated_at"}}},
            {"source": "pg", "target": "duck", "streams": {
                "src.orders": {"object": "dst.orders", "mode": "full_refresh"}}},
            {"source": "pg", "target": "duck_fast", "streams": {
                "src.orders": {"object": "dst_fast.orders", "mode": "full_refresh"}}},
            {"source": "pg", "target": "duck_bounded", "streams": {
                "src.orders": {"object": "dst_incr.orders", "mode": "incremental", "primary_key": "id",
                               "update_key": "updated_at"}}},
            {"source": "pg", "target": "duck_bounded", "streams": {
                "src.orders": {"object": "dst_part.orders", "mode": "date_partitioned", "primary_key": "id",
                               "partition": {"column": "updated_at", "granularity": "monthly",
                                             "start": "2024-01-01"}}}},
        ],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


HANDMADE_MERGE = """
import sys, time, psycopg
src, dst = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
with psycopg.connect(src) as s, psycopg.connect(dst) as d:
    if not d.execute("SELECT to_regclass('bench_hand.orders')").fetchone()[0]:
        d.execute("CREATE SCHEMA IF NOT EXISTS bench_hand; CREATE TABLE bench_hand.orders (LIKE src.orders); "
                  "ALTER TABLE bench_hand.orders ADD PRIMARY KEY (id)")
    wm = d.execute("SELECT max(updated_at) FROM bench_hand.orders").fetchone()[0]
    d.execute("CREATE TEMP TABLE stage (LIKE bench_hand.orders) ON COMMIT DROP")
    q = "SELECT * FROM src.orders" + (" WHERE updated_at >= {}" if wm else "")
    sql = psycopg.sql.SQL(f"COPY ({q}) TO STDOUT (FORMAT binary)")
    if wm:
        sql = sql.format(psycopg.sql.Literal(wm))
    with s.cursor().copy(sql) as cin, d.cursor().copy("COPY stage FROM STDIN (FORMAT binary)") as cout:
        for chunk in cin:
            cout.write(chunk)
    cols = [r[0] for r in d.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'stage'::regclass "
                                     "AND attnum > 0 AND NOT attisdropped")]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id")
    n = d.execute(f"INSERT INTO bench_hand.orders SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET {sets}").rowcount
    d.commit()
print(f"SYNC_SECONDS={time.monotonic() - t0:.3f} ROWS={n}")
"""


PARTITION_RUN = """
import sys
from datetime import datetime
from sync_assets.connectors import connector_for
from sync_assets.sync.planning import RunOptions
from sync_assets.sync.policies import sync_with_policies
from sync_assets.config.loader import load_project
project = load_project(sys.argv[1])
table = project.table(sys.argv[2])
window = (datetime.fromisoformat(sys.argv[3]), datetime.fromisoformat(sys.argv[4]))
source, target = (connector_for(name, project.connections[name]) for name in (table.source, table.target))
result = sync_with_policies(table, source, target, RunOptions(partition_window=window)).result
print(f"{result.rows_read:,} rows read in {result.duration_s:.3f}s")
"""
"""One partition run of a date-partitioned table (what a Dagster partition step does), without Dagster."""


def keep_oldest_row(duckdb_file: Path, table: str) -> None:
    """Leave only the row with the lowest ``updated_at``: the next incremental run reads every row."""
    import duckdb

    with duckdb.connect(str(duckdb_file)) as conn:
        conn.execute(f"DELETE FROM {table} WHERE updated_at > (SELECT min(updated_at) FROM {table})")


def sync_seconds(output: str) -> float:
    return float(re.search(r"in ([\d.]+)s", output).group(1))


def rows_read(output: str) -> int:
    return int(re.search(r"([\d,]+) rows read", output).group(1).replace(",", ""))


def bench_size(n: int, conninfo: str, work: Path, with_dagster: bool, rounds: int) -> list[tuple]:
    print(f"\n== {n:,} rows: generating src.orders ...", flush=True)
    psql(conninfo, "-v", f"n={n}", "-f", str(SQL / "gen_data.sql"))
    duck, fast_duck, bounded = work / "warehouse.duckdb", work / "warehouse_fast.duckdb", work / "bounded.duckdb"
    config = write_config(work / "config", conninfo, duck, fast_duck, bounded)
    env = {"SYNC_ASSETS_CONFIG": str(config)}
    cli = [str(BIN / "sync-assets"), "--config", str(config), "run"]

    def raw_pipe() -> tuple[float, float | None, float, str]:
        psql(conninfo, "-c", "DROP SCHEMA IF EXISTS bench_raw CASCADE; CREATE SCHEMA bench_raw; "
                             "CREATE TABLE bench_raw.orders (LIKE src.orders); CHECKPOINT")
        wall, rss, _ = run_measured(
            f"psql '{conninfo}' -Xqc 'COPY src.orders TO STDOUT (FORMAT binary)' | "
            f"psql '{conninfo}' -Xqc 'COPY bench_raw.orders FROM STDIN (FORMAT binary)'", shell=True)
        return wall, None, rss, ""

    def sync_run(stream: str, duckdb_file: Path | None = None) -> Callable[[], tuple[float, float, float, str]]:
        def run() -> tuple[float, float, float, str]:
            psql(conninfo, "-c", "CHECKPOINT")
            if duckdb_file:
                duckdb_file.unlink(missing_ok=True)
            wall, rss, out = run_measured([*cli, stream], env)
            return (
                wall,
                sync_seconds(out),
                rss,
                f" (file {duckdb_file.stat().st_size / 1e6:,.0f} MB)" if duckdb_file else "",
            )

        return run

    def dagster_run() -> tuple[float, float, float, str]:
        duck.unlink(missing_ok=True)
        home = Path(tempfile.mkdtemp(prefix="bench_dagster_home_"))
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        try:
            wall, rss, out = run_measured(
                [
                    str(BIN / "dagster"),
                    "asset",
                    "materialize",
                    "-m",
                    "sync_assets.definitions",
                    "--select",
                    "dst/orders",
                ],
                {**env, "DAGSTER_HOME": str(home)},
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)
        return wall, sync_seconds(out), rss, ""

    scenarios: list[tuple[str, Callable[[], tuple[float, float | None, float, str]]]] = [
        ("raw COPY binary pipe PG->PG (baseline)", raw_pipe),
        ("sync-assets full PG->PG", sync_run("bench_full/orders")),
        ("sync-assets full PG->DuckDB", sync_run("dst/orders", duck)),
        ("sync-assets full PG->DuckDB, string_compression off", sync_run("dst_fast/orders", fast_duck)),
    ]
    if with_dagster:
        scenarios.append(("dagster asset materialize PG->DuckDB (whole process)", dagster_run))
    measured: dict[str, list[tuple[float, float | None, float, str]]] = {name: [] for name, _ in scenarios}
    for round_ in range(rounds):  # interleaved, so a slow minute of the machine hits every scenario
        print(f"   round {round_ + 1}/{rounds}", flush=True)
        for name, run in scenarios:
            measured[name].append(run())

    raw_walls = [wall for wall, *_ in measured[scenarios[0][0]]]
    rows = []
    for name, _ in scenarios:
        runs = measured[name]
        whole_process = name.startswith(("raw", "dagster"))
        ratios = [
            (wall if whole_process else sync) / raw
            for (wall, sync, _, _), raw in zip(runs, raw_walls, strict=True)
        ]
        sync = median([r[1] for r in runs]) if runs[0][1] is not None else None
        rows.append((name + runs[-1][3], n, median([r[0] for r in runs]), sync, max(r[2] for r in runs),
                     median(ratios)))

    full_duck = median([sync for _, sync, _, _ in measured["sync-assets full PG->DuckDB"]])
    bounded.unlink(missing_ok=True)
    run_measured([*cli, "dst_incr/orders"], env)  # initial load: an unfiltered read
    keep_oldest_row(bounded, "dst_incr.orders")
    psql(conninfo, "-c", "CHECKPOINT")
    wall, rss, out = run_measured([*cli, "dst_incr/orders"], env)
    rows.append((f"sync-assets incremental PG->DuckDB, all rows past watermark ({rows_read(out):,} read)",
                 n, wall, sync_seconds(out), rss, sync_seconds(out) / full_duck))
    psql(conninfo, "-c", "CHECKPOINT")
    wall, rss, out = run_measured([str(BIN / "python"), "-c", PARTITION_RUN, str(config), "dst_part/orders",
                                   "2024-01-01T00:00:00+00:00", "2030-01-01T00:00:00+00:00"], env)
    rows.append((f"sync-assets partition PG->DuckDB, window of all rows ({rows_read(out):,} read)",
                 n, wall, sync_seconds(out), rss, sync_seconds(out) / full_duck))

    psql(conninfo, "-c", "DROP SCHEMA IF EXISTS bench_incr CASCADE; DROP SCHEMA IF EXISTS bench_hand CASCADE")
    wall, rss, out = run_measured([*cli, "bench_incr/orders"], env)
    rows.append(("sync-assets incremental: initial load (merge table, PK)", n, wall, sync_seconds(out), rss, None))
    run_measured([str(BIN / "python"), "-c", HANDMADE_MERGE, conninfo, conninfo])
    psql(conninfo, "-v", "r=1", "-f", str(SQL / "delta.sql"))
    psql(conninfo, "-c", "CHECKPOINT")
    wall, rss, out = run_measured([*cli, "bench_incr/orders"], env)
    ours = sync_seconds(out)
    hwall, hrss, hand_out = run_measured([str(BIN / "python"), "-c", HANDMADE_MERGE, conninfo, conninfo])
    hand = float(re.search(r"SYNC_SECONDS=([\d.]+)", hand_out).group(1))
    rows.append(("hand-written merge, 1% changed + 1% new (baseline)", n, hwall, hand, hrss, None))
    rows.append((f"sync-assets incremental, 1% changed + 1% new ({rows_read(out):,} rows read)", n, wall, ours, rss,
                 ours / hand))
    with psycopg.connect(conninfo) as conn:
        check = "SELECT count(*), sum(id), sum(amount), max(updated_at) FROM {}"
        expected = conn.execute(check.format("src.orders")).fetchone()
        for table in ("bench_incr.orders", "bench_hand.orders", "bench_full.orders"):
            got = conn.execute(check.format(table)).fetchone()
            if table != "bench_full.orders" and got != expected:
                raise SystemExit(f"verification failed for {table}: {got} != {expected}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="2000000", help="comma-separated table sizes")
    parser.add_argument("--no-dagster", action="store_true", help="skip the whole-process Dagster run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of the full copies; medians are printed (default 3)")
    args = parser.parse_args()
    admin = os.environ.get("BENCH_PG_ADMIN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
    conninfo = os.environ.get("BENCH_PG", "host=127.0.0.1 port=5432 dbname=sync_bench user=postgres")
    ensure_database(admin, psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"])
    work = Path(tempfile.mkdtemp(prefix="sync_assets_bench_"))
    results = []
    try:
        for n in (int(x) for x in args.rows.split(",")):
            results += bench_size(n, conninfo, work, not args.no_dagster, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{'scenario':<78} {'rows':>10} {'wall s':>7} {'sync s':>7} {'rows/s (sync)':>14} "
        f"{'peak RSS MB':>11} {'ratio':>6}"
    )
    for name, n, wall, sync, rss, ratio in results:
        rate = f"{n / sync:,.0f}" if sync and "incremental" not in name and "merge" not in name else "-"
        print(f"{name:<78} {n:>10,} {wall:>7.2f} {(f'{sync:.2f}' if sync else '-'):>7} {rate:>14} {rss:>11.0f} "
              f"{(f'{ratio:.2f}x' if ratio else '-'):>6}")
    print("ratio: full copies against the raw COPY pipe of the same size; bounded PG->DuckDB reads against the "
          "full PG->DuckDB copy; incremental against the hand-written merge's sync time; the Dagster row is its "
          "whole process against the raw pipe.")
    print_machine_scale(results)
    print_memory_growth(results)


REFERENCE_RAW_PIPE_ROWS_PER_S = 2_000_000 / 4.0
"""Issue 2 set its targets on a machine where the raw pipe copied 2 M rows in about 4 s."""


def print_machine_scale(results: list[tuple]) -> None:
    """Absolute rows/s depend on the machine: restate the 400k rows/s PG->DuckDB target for this
    machine, scaled by how fast the raw pipe ran here against the machine the target was set on."""
    for name, n, wall, *_ in results:
        if name.startswith("raw COPY"):
            here = n / wall
            print(
                f"{n:,} rows: raw pipe {here:,.0f} rows/s here against {REFERENCE_RAW_PIPE_ROWS_PER_S:,.0f} on the "
                "target's machine; 400k rows/s there corresponds to "
                f"{400_000 * here / REFERENCE_RAW_PIPE_ROWS_PER_S:,.0f} "
                "rows/s here"
            )


def print_memory_growth(results: list[tuple]) -> None:
    """Peak RSS of each scenario at the smallest and the largest size: bounded memory stays flat."""
    by_scenario: dict[str, list[tuple[int, float]]] = {}
    for name, n, _, _, rss, _ in results:
        by_scenario.setdefault(re.sub(r" \(.*\)$", "", name), []).append((n, rss))
    for name, sizes in by_scenario.items():
        (small, small_rss), (large, large_rss) = min(sizes), max(sizes)
        if large > small:
            print(f"peak RSS {small_rss:,.0f} MB at {small:,} rows -> {large_rss:,.0f} MB at {large:,} "
                  f"({large_rss - small_rss:+,.0f} MB): {name}")


if __name__ == "__main__":
    main()
