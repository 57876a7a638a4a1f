"""The Chinook sample database, end to end: PostgreSQL to DuckDB and to PostgreSQL, and the
DuckDB demo source (built from the shipped SQLite file) to PostgreSQL, verified by counts and
column checksums computed independently on both sides."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest

from sync_assets.demo.chinook import prepare_demo_source
from sync_assets.sync.engine import sync_table
from sync_assets_tests.conftest import connectors
from sync_assets_tests.engines import Side

CHINOOK_PG = Path(__file__).resolve().parent / "data" / "Chinook_PostgreSql.sql"  # MIT: data/CHINOOK_LICENSE.md
CHINOOK_TABLES = {
    "album": "album_id",
    "artist": "artist_id",
    "customer": "customer_id",
    "employee": "employee_id",
    "genre": "genre_id",
    "invoice": "invoice_id",
    "invoice_line": "invoice_line_id",
    "media_type": "media_type_id",
    "playlist": "playlist_id",
    "playlist_track": ["playlist_id", "track_id"],
    "track": "track_id",
}


@pytest.fixture(scope="module")
def chinook_pg(pg_conninfo):
    """Chinook loaded into its own PostgreSQL schema from the official script."""
    schema = f"chinook_{uuid.uuid4().hex[:8]}"
    script = CHINOOK_PG.read_text()
    script = script[script.index("\\c chinook;") + len("\\c chinook;"):]
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        with conn.transaction():
            conn.execute(f'SET LOCAL search_path TO "{schema}"')
            conn.execute(script)
    yield schema
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _checksum(side: Side, table: str, schema: str) -> tuple:
    """Row count plus sums over every numeric column and total text length, computed in SQL."""
    columns = side.query(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = %s ORDER BY ordinal_position", [schema, table])
    parts = ["COUNT(*)"]
    for name, data_type in columns:
        quoted = '"' + name + '"'
        if re.search(r"int|numeric|decimal|double|real", data_type, re.I):
            parts.append(f"SUM({quoted})")
        elif re.search(r"char|text", data_type, re.I):
            parts.append(f"SUM(LENGTH({quoted}))")
        elif re.search(r"timestamp|date", data_type, re.I):
            parts.append(f"COUNT({quoted})")
    return tuple(side.query(f"SELECT {', '.join(parts)} FROM {side.qualified(table, schema)}")[0])


@pytest.mark.parametrize("target_kind", ["duckdb", "postgres"])
def test_chinook_from_postgres(chinook_pg, target_kind, pg_conninfo, schema_name, tmp_path, write_project):
    source = Side("postgres", chinook_pg, pg_conninfo=pg_conninfo)
    target = (Side("duckdb", "chinook", duckdb_path=tmp_path / "warehouse.duckdb") if target_kind == "duckdb"
              else Side("postgres", schema_name("chinook_copy"), pg_conninfo=pg_conninfo))
    project = write_project({
        "connections": {"src": source.connection_spec("source"), "tgt": target.connection_spec("target")},
        "source": "src", "target": "tgt",
        "defaults": {"object": f"{target.schema}.{{stream_table}}", "mode": "full_refresh"},
        "streams": {f"{chinook_pg}.{t}": {"primary_key": pk} for t, pk in CHINOOK_TABLES.items()},
    })
    for table in project.tables:
        result = sync_table(table, *connectors(project, table))
        assert result.rows_written == result.target_rows > 0
    for name in CHINOOK_TABLES:
        assert _checksum(target, name, target.schema) == _checksum(source, name, chinook_pg), name


def test_chinook_demo_source_to_postgres(tmp_path, pg_conninfo, schema_name, write_project):
    source = Side("duckdb", "main", duckdb_path=prepare_demo_source(tmp_path / "chinook.duckdb"))
    target = Side("postgres", schema_name("chinook_demo"), pg_conninfo=pg_conninfo)
    project = write_project({
        "connections": {"src": source.connection_spec("source"), "tgt": target.connection_spec("target")},
        "source": "src", "target": "tgt",
        "defaults": {"object": f"{target.schema}.{{stream_table}}"},
        "streams": {"main.Invoice": {"mode": "incremental", "primary_key": "InvoiceId", "update_key": "InvoiceDate"},
                    "main.Track": {"primary_key": "TrackId"}},
    })
    for table in project.tables:
        sync_table(table, *connectors(project, table))
    for name in ("Invoice", "Track"):
        assert _checksum(target, name, target.schema) == _checksum(source, name, "main"), name
    types = dict(target.query("SELECT column_name, data_type FROM information_schema.columns WHERE "
                              "table_schema = %s AND table_name = 'Invoice'", [target.schema]))
    assert types["Total"] == "numeric" and types["InvoiceDate"] == "timestamp without time zone"
