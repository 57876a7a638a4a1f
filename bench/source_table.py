"""Shared by the feature benchmarks: the PostgreSQL bench database and a source table of the peer
benchmark's rows (``bench/sql/gen_data.sql``: deterministic, one function of the row number)."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml

HERE = Path(__file__).resolve().parent


def conninfos() -> tuple[str, str]:
    """(admin conninfo, bench database conninfo), from $BENCH_PG_ADMIN and $BENCH_PG."""
    return (os.environ.get("BENCH_PG_ADMIN", "host=127.0.0.1 port=5432 dbname=test user=postgres"),
            os.environ.get("BENCH_PG", "host=127.0.0.1 port=5432 dbname=sync_bench user=postgres"))


def prepare_source(admin: str, conninfo: str, schema: str, rows: int) -> None:
    """``<schema>.orders`` with ``rows`` generated rows and its primary key, in the bench database."""
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'sync_bench'").fetchone():
            conn.execute("CREATE DATABASE sync_bench")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT to_regprocedure('src.gen_orders(bigint,bigint,timestamptz)')").fetchone()[0] is None:
            subprocess.run(["psql", conninfo, "-Xq", "-v", "ON_ERROR_STOP=1", "-v", "n=1",
                            "-f", str(HERE / "sql" / "gen_data.sql")], check=True, capture_output=True)
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.orders AS SELECT * FROM src.gen_orders(1, {rows})")
        conn.execute(f"ALTER TABLE {schema}.orders ADD PRIMARY KEY (id)")
        conn.execute(f"VACUUM ANALYZE {schema}.orders")


def postgres_connection(conninfo: str) -> dict:
    """The bench database as a sync_assets connection."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    return {"kind": "postgres", "options": {
        "host": params.get("host", "127.0.0.1"), "port": int(params.get("port", 5432)),
        "database": params["dbname"], "user": params.get("user", "postgres")}}


def drop_schemas(conninfo: str, names: list[str]) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS " + ", ".join(names) + " CASCADE")


def rows_to_bench(description: str) -> int:
    """The ``--rows`` argument of a feature benchmark (default 2,000,000)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    return parser.parse_args().rows


def bench_project(work: Path, conninfo: str, replications: list[dict]):
    """(project, PostgreSQL source connector, {"pg", "duck"} target connectors) for ``replications``
    from the bench database ("pg") into itself or a DuckDB file in ``work`` ("duck")."""
    from sync_assets.config.loader import load_project
    from sync_assets.connectors import connector_for

    duck = {"kind": "duckdb", "role": "target", "options": {"path": str(work / "bench.duckdb")}}
    config = {"connections": {"pg": postgres_connection(conninfo), "duck": duck}, "replications": replications}
    folder = work / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    project = load_project(folder)
    source = connector_for("pg", project.connections["pg"], read_only=True)
    return project, source, {name: connector_for(name, project.connections[name]) for name in ("pg", "duck")}


@dataclass
class Bench:
    """A feature benchmark's setting: its rows, the bench database and the loaded copies."""

    rows: int
    conninfo: str
    project: object
    source: object
    targets: dict


@contextlib.contextmanager
def loaded_copies(description: str, source_schema: str, copy_schemas: list[str],
                  replications: list[dict]) -> Iterator[Bench]:
    """Build ``<source_schema>.orders`` (``--rows`` of them), then load every stream of
    ``replications`` into its fresh copy (schemas ``copy_schemas``, dropped first) in PostgreSQL or
    a DuckDB file of a temporary folder, which lives as long as the context."""
    from sync_assets.sync.engine import sync_table

    rows = rows_to_bench(description)
    admin, conninfo = conninfos()
    print(f"source: {rows:,} rows in {source_schema}.orders", flush=True)
    prepare_source(admin, conninfo, source_schema, rows)
    with tempfile.TemporaryDirectory() as work:
        project, source, targets = bench_project(Path(work), conninfo, replications)
        drop_schemas(conninfo, copy_schemas)
        print("initial loads ...", flush=True)
        for table in project.tables:
            sync_table(table, source, targets[table.target])
        yield Bench(rows, conninfo, project, source, targets)
