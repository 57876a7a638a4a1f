"""Benchmark: many small tables in one run, against Sling's replication of the same streams.

    python bench/many_tables.py                      # 300 tables x 1,000 rows
    python bench/many_tables.py --tables 3000 --rows 100 --definitions-only

Generates N PostgreSQL tables ``many_src.t0001 ...`` (``id`` primary key, ``updated_at``, three
payload columns) in database ``sync_bench`` ($BENCH_PG, default the local server), then times,
each as a whole process (start-up included):

- ``dagster asset list`` over the N-table definitions (how long the code location takes to load;
  also with ``source_asset: false``),
- ``dagster asset materialize --select '*'`` into ``many_dst`` (incremental on ``updated_at``,
  merge on ``id``): the first run (empty target) and a second run in which nothing changed, then
  a third after 1% of the rows of every table changed,
- Sling's replication of the same streams (same modes, keys and target database) when its binary
  is found ($SLING_BIN, or the bench-peers venv in /tmp/peerbench), in the same run,
- Dagster's own floor (``bench/dagster_floor.py``): the same number of assets, checks and steps,
  listed and materialized with the same instance, doing no sync; what is left above it is ours.

Every target table is checked against its source (row count and a content checksum) after each
run. Tests never assert on these figures.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))
from run import ensure_database  # noqa: E402  (bench/ is not a package)

SOURCE_SCHEMA, TARGET_SCHEMA, SLING_SCHEMA = "many_src", "many_dst", "many_sling"


def table_names(count: int) -> list[str]:
    return [f"t{i:04d}" for i in range(1, count + 1)]


def generate(conninfo: str, count: int, rows: int) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for schema in (SOURCE_SCHEMA, TARGET_SCHEMA, SLING_SCHEMA):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {SOURCE_SCHEMA}")
        for name in table_names(count):
            conn.execute(
                f"CREATE TABLE {SOURCE_SCHEMA}.{name} (id integer PRIMARY KEY, updated_at timestamp NOT NULL, "
                f"customer text, amount numeric(12,2), status text)")
            conn.execute(
                f"INSERT INTO {SOURCE_SCHEMA}.{name} SELECT g, timestamp '2026-01-01' + g * interval '1 minute', "
                f"'customer ' || (g % 97), round((g * 7.31)::numeric % 1000, 2), "
                f"(ARRAY['open','paid','void'])[1 + g % 3] FROM generate_series(1, {rows}) g")


def change_one_percent(conninfo: str, count: int, rows: int) -> int:
    """Update 1% of each table's rows with a newer ``updated_at``; returns rows changed."""
    changed = max(1, rows // 100)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name in table_names(count):
            conn.execute(f"UPDATE {SOURCE_SCHEMA}.{name} SET status = 'changed', updated_at = now() "
                         f"WHERE id <= {changed}")
    return changed * count


def write_config(folder: Path, conninfo: str, count: int, source_assets: bool = True) -> None:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    pg = {"kind": "postgres", "options": {"host": params.get("host", "127.0.0.1"),
                                          "port": int(params.get("port", 5432)),
                                          "database": params["dbname"], "user": params.get("user", "postgres")}}
    config = {
        "connections": {"src": {**pg, "role": "source"}, "dst": {**pg, "role": "target"}},
        "source": "src", "target": "dst",
        "defaults": {"mode": "incremental", "primary_key": "id", "update_key": "updated_at",
                     "object": TARGET_SCHEMA + ".{stream_table}", "group": "many", "source_asset": source_assets},
        "streams": {f"{SOURCE_SCHEMA}.{name}": None for name in table_names(count)},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "many.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def sling_binary() -> str | None:
    if os.environ.get("SLING_BIN"):
        return os.environ["SLING_BIN"]
    found = glob.glob("/tmp/peerbench/lib/python3*/site-packages/sling_linux_amd64/bin/sling-linux-amd64")
    return found[0] if found else shutil.which("sling")


def write_sling_replication(folder: Path, count: int) -> Path:
    replication = {
        "source": "BENCH_PG", "target": "BENCH_PG",
        "defaults": {"mode": "incremental", "primary_key": ["id"], "update_key": "updated_at",
                     "object": SLING_SCHEMA + ".{stream_table}"},
        "streams": {f"{SOURCE_SCHEMA}.{name}": None for name in table_names(count)},
    }
    path = folder / "sling.yaml"
    path.write_text(yaml.safe_dump(replication, sort_keys=False))
    return path


def timed(command: list[str], env: dict) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        output = done.stdout + done.stderr
        errors = [line for line in output.splitlines() if " - ERROR - " in line][:5]
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(command)}\n" + "\n".join(errors)
                         + "\n" + output[-3000:])
    return wall, done.stdout + done.stderr


def verify(conninfo: str, count: int, target_schema: str, content: bool = True) -> None:
    """Every target table holds exactly its source's rows: the count, and with ``content`` an md5
    over every row (Sling's copies are counted only: it picks its own column types)."""
    checksum = "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY id)) FROM {}.{} t"
    with psycopg.connect(conninfo) as conn:
        for name in table_names(count):
            source = conn.execute(checksum.format(SOURCE_SCHEMA, name)).fetchone()
            target = conn.execute(
                f"SELECT count(*), md5(string_agg(md5(row(id, updated_at, customer, amount, status)::text), '' "
                f"ORDER BY id)) FROM {target_schema}.{name}").fetchone()
            if not content:
                source, target = source[0], target[0]
            if source != target:
                raise SystemExit(f"{target_schema}.{name} differs from its source: {source} != {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=300)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--definitions-only", action="store_true", help="time `dagster asset list` only")
    parser.add_argument("--no-sling", action="store_true")
    args = parser.parse_args()

    admin = os.environ.get("BENCH_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    ensure_database(admin, "sync_bench")
    conninfo = psycopg.conninfo.make_conninfo(admin, dbname="sync_bench")
    work = Path(tempfile.mkdtemp(prefix="bench_many_"))
    config, home = work / "config", work / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    write_config(config, conninfo, args.tables)
    env = {"SYNC_ASSETS_CONFIG": str(config), "DAGSTER_HOME": str(home)}
    dagster = str(BIN / "dagster")
    results: dict[str, float] = {}
    try:
        wall, out = timed([dagster, "asset", "list", "-m", "sync_assets.definitions"], env)
        listed = sum(1 for line in out.splitlines() if line.startswith("many_dst/"))
        floor_env = {"FLOOR_TABLES": str(args.tables), "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)}
        floor_module = ["-f", str(HERE / "dagster_floor.py")]
        floor_wall, _ = timed([dagster, "asset", "list", *floor_module], floor_env)
        write_config(config, conninfo, args.tables, source_assets=False)
        bare, _ = timed([dagster, "asset", "list", "-m", "sync_assets.definitions"], env)
        write_config(config, conninfo, args.tables)
        print(f"definitions of {args.tables} tables: `dagster asset list` {wall:.2f}s ({listed} assets and their "
              f"sources), {bare:.2f}s with `source_asset: false`; Dagster's floor (the same assets and checks, "
              f"no sources, no sync_assets code) {floor_wall:.2f}s")
        if args.definitions_only:
            return
        floor_run, _ = timed([dagster, "asset", "materialize", *floor_module, "--select", "*"], floor_env)
        print(f"Dagster's floor for one run of {args.tables} tables (materialization + checks recorded, no sync): "
              f"{floor_run:.2f}s", flush=True)
        print(f"generating {args.tables} tables x {args.rows:,} rows ...", flush=True)
        generate(conninfo, args.tables, args.rows)
        materialize = [dagster, "asset", "materialize", "-m", "sync_assets.definitions", "--select", "*"]
        sling = None if args.no_sling else sling_binary()
        sling_env = {"BENCH_PG": "postgresql://{user}@{host}:{port}/{dbname}?sslmode=disable".format(
            **{"user": "postgres", "host": "127.0.0.1", "port": 5432,
               **psycopg.conninfo.conninfo_to_dict(conninfo)})}
        replication = write_sling_replication(work, args.tables) if sling else None
        runs = [("first run", None), ("no-change run", None), ("1% changed", "change")]
        for label, before in runs:
            if before == "change":
                changed = change_one_percent(conninfo, args.tables, args.rows)
                label += f" ({changed:,} rows)"
            results[f"ours {label}"], _ = timed(materialize, env)
            verify(conninfo, args.tables, TARGET_SCHEMA)
            line = (f"{label:32s} sync_assets {results[f'ours {label}']:7.2f}s "
                    f"(above Dagster's floor {results[f'ours {label}'] - floor_run:5.2f}s)")
            if sling:
                results[f"sling {label}"], _ = timed([sling, "run", "-r", str(replication)], sling_env)
                verify(conninfo, args.tables, SLING_SCHEMA, content=False)
                ratio = results[f"sling {label}"] / results[f"ours {label}"]
                line += f"   Sling {results[f'sling {label}']:7.2f}s   Sling/ours {ratio:5.1f}x"
            print(line, flush=True)
        if not sling:
            print("Sling not found (run ../shared/bench-peers/setup_venv.sh or set SLING_BIN): no comparison")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
