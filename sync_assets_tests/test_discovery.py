"""Databases and schemas from the catalogs of a real PostgreSQL and real DuckDB files, and the
``sync-assets schemas`` command that prints them. Snowflake's are in test_snowflake_fakesnow.py,
SQL Server's in test_mssql_tsql.py (statements) and test_mssql_live.py."""

from __future__ import annotations

import re

import duckdb
import pytest
import yaml

from sync_assets.cli.main import main
from sync_assets.config.models import ConnectionSpec
from sync_assets.connectors import connector_for
from sync_assets.connectors.interface import SchemaInfo


@pytest.fixture
def postgres(pg_options):
    return connector_for("erp", ConnectionSpec(kind="postgres", options=pg_options))


def duckdb_file(path):
    return connector_for("lake", ConnectionSpec(kind="duckdb", options={"path": str(path)}))


def test_postgres_lists_connectable_databases_and_its_own(postgres, pg):
    databases = postgres.list_databases()
    assert postgres.database_name in databases and databases == sorted(databases)
    assert not {"template0", "template1"} & set(databases)
    connectable = pg.execute("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate").fetchall()
    assert set(databases) <= {name for (name,) in connectable}


def test_postgres_schemas_count_tables_and_views_and_leave_out_system_schemas(postgres, pg, schema_name):
    sales, empty = schema_name("sales"), schema_name("empty")
    pg.execute(f'CREATE TABLE "{sales}".orders (id bigint)')
    pg.execute(f'CREATE VIEW "{sales}".big_orders AS SELECT * FROM "{sales}".orders')
    pg.execute(f'CREATE TABLE "{sales}".events (at date) PARTITION BY RANGE (at)')
    pg.execute(f"CREATE TABLE \"{sales}\".events_2024 PARTITION OF \"{sales}\".events "
               "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    pg.execute("CREATE TEMP TABLE scratch (id int)")  # a pg_temp_N schema that only this session uses
    schemas = {info.name: info for info in postgres.list_schemas()}
    assert schemas[sales] == SchemaInfo(sales, 3) and schemas[empty] == SchemaInfo(empty, 0)
    assert schemas[sales].table_count == len(postgres.list_tables(sales))
    assert "public" in schemas and not [name for name in schemas if name.startswith("pg_")]
    assert "information_schema" not in schemas
    assert list(schemas) == sorted(schemas)


def test_duckdb_lists_its_own_catalog_and_its_schemas(tmp_path):
    """A schema named like the file (``sales`` in ``sales.duckdb``) is found in the file's catalog."""
    path = tmp_path / "sales.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA sales.sales; CREATE SCHEMA sales.empty; CREATE TABLE sales.main.customers (id int); "
                    "CREATE TABLE sales.sales.orders (id int); "
                    "CREATE VIEW sales.sales.recent AS SELECT 1 AS id")
    lake = duckdb_file(path)
    assert lake.database_name == "sales" and lake.list_databases() == ["sales"]
    assert lake.list_schemas() == [SchemaInfo("empty", 0), SchemaInfo("main", 1), SchemaInfo("sales", 2)]


def test_duckdb_file_that_does_not_exist_has_no_databases_and_is_not_created(tmp_path):
    lake = duckdb_file(tmp_path / "later.duckdb")
    assert lake.list_databases() == [] and lake.list_schemas() == []
    assert not (tmp_path / "later.duckdb").exists()


def test_schemas_command_marks_the_connection_database_and_counts_tables(pg_options, pg, schema_name, tmp_path,
                                                                          capsys):
    sales = schema_name("sales")
    pg.execute(f'CREATE TABLE "{sales}".orders (id bigint)')
    pg.execute(f'CREATE TABLE "{sales}".lines (id bigint)')
    (tmp_path / "erp.yaml").write_text(yaml.safe_dump(
        {"connections": {"erp": {"kind": "postgres", "role": "source", "options": pg_options}}}))
    assert main(["--config", str(tmp_path), "schemas", "erp"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^\* {re.escape(pg_options['database'])}$", out, re.M)
    assert re.search(rf"^{sales}\s+2$", out, re.M)
    assert not re.search(r"^(pg_catalog|information_schema)\s", out, re.M)
