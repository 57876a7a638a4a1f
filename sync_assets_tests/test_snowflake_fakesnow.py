"""The Snowflake source against fakesnow in server mode, through the real connector 5.x.

The fakesnow server runs from its own environment (see fakesnow_server.py); these tests fail,
not skip, when it is missing. What fakesnow cannot do (stage unload, GET, table sizes, 38-digit
integers, TIMESTAMP_LTZ as its own type, bad-password rejection) is in test_snowflake_live.py.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import warnings
from datetime import UTC, date, datetime, time
from decimal import Decimal

import dagster as dg
import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fakesnow_server import FakesnowServer

from sync_assets.cli.sampling import list_tables_report, sample_table
from sync_assets.config.models import ConnectionSpec
from sync_assets.config.names import TableName
from sync_assets.connectors import connector_for
from sync_assets.connectors.interface import SchemaInfo
from sync_assets.connectors.requests import Filter, ReadRequest
from sync_assets.connectors.snowflake.connector import SnowflakeConnector
from sync_assets.errors import ConfigError, ConnectionFailed
from sync_assets.orchestration.project_definitions import build_definitions
from sync_assets.orchestration.sync_steps import build_sync_steps
from sync_assets.sync.engine import sync_table
from sync_assets.sync.planning import RunOptions
from sync_assets.types.arrow import logical_type, native_type

PASSWORD_ENV = "SYNC_ASSETS_TEST_SNOWFLAKE_PASSWORD"

ALL_TYPES_DDL = '''CREATE TABLE "SRC"."ALL_TYPES" (
    "ID" NUMBER(38,0) NOT NULL, "AMOUNT" NUMBER(12,2), "BIG" NUMBER(38,0), "RATIO" FLOAT,
    "NAME" VARCHAR(40), "PAYLOAD" BINARY, "ACTIVE" BOOLEAN, "DAY" DATE, "AT_TIME" TIME,
    "NTZ" TIMESTAMP_NTZ, "TZ" TIMESTAMP_TZ, "DOC" VARIANT, "OBJ" OBJECT, "ARR" ARRAY,
    "Mixed Case ""col""" VARCHAR)'''
ALL_TYPES_ROW = """INSERT INTO "SRC"."ALL_TYPES" SELECT 1, 12345.67, 9007199254740993, 1.5, 'héllo',
    TO_BINARY('CAFE', 'HEX'), TRUE, '2024-02-29', '23:59:58.123456', '2024-01-02 03:04:05.123456',
    '2024-01-02 03:04:05.123456+02:00', PARSE_JSON('{"a": 1, "b": [true, null]}'),
    PARSE_JSON('{"k": "v"}'), PARSE_JSON('[1, "x"]'), 'quoted'"""


@pytest.fixture(scope="module")
def fakesnow(tmp_path_factory):
    with FakesnowServer.started(tmp_path_factory.mktemp("fakesnow")) as server:
        yield server


class Snowflake:
    """One test's own database on the fakesnow server, and a raw session to set it up."""

    def __init__(self, server: FakesnowServer, database: str):
        self.server = server
        self.database = database
        self.options = server.options(database, "SRC")
        self.connector = SnowflakeConnector("sf", ConnectionSpec(
            kind="snowflake", role="source", options={**self.options, "password": "fake"}))
        self.conn = self.connector.connect()

    def run(self, *statements: str) -> None:
        with self.conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)

    def connection_config(self, **extra) -> dict:
        return {"kind": "snowflake", "role": "source",
                "options": {**self.options, "password": {"env": PASSWORD_ENV}, **extra}}


@pytest.fixture
def sf(fakesnow, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "fake")
    warnings.filterwarnings("ignore", module="snowflake")
    sf = Snowflake(fakesnow, f"SYNC_{uuid.uuid4().hex[:10].upper()}")
    sf.run(f'CREATE DATABASE IF NOT EXISTS "{sf.database}"', f'CREATE SCHEMA IF NOT EXISTS "{sf.database}"."SRC"',
           f'USE SCHEMA "{sf.database}"."SRC"')
    yield sf
    sf.conn.close()


def duck_project(write_project, tmp_path, sf: Snowflake, streams: dict, **sf_extra):
    return write_project({
        "connections": {"sf": sf.connection_config(**sf_extra),
                        "duck": {"kind": "duckdb", "options": {"path": str(tmp_path / "target.duckdb")}}},
        "source": "sf", "target": "duck", "streams": streams,
    })


def duck_rows(tmp_path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "target.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


# -- configuration --------------------------------------------------------------------------------
def test_options_need_exactly_one_authentication(write_project, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "x")
    base = {"account": "a", "user": "u", "database": "D"}
    with pytest.raises(ConfigError, match="exactly one of 'password' or 'private_key_file'"):
        write_project({"connections": {"sf": {"kind": "snowflake", "role": "source", "options": base}}})
    with pytest.raises(ConfigError, match="'password' is a secret"):
        write_project({"connections": {"sf": {"kind": "snowflake", "options": {**base, "password": "plain"}}}})
    with pytest.raises(ConfigError, match="options.wharehouse': unknown key"):
        write_project({"connections": {"sf": {"kind": "snowflake", "options": {
            **base, "password": {"env": PASSWORD_ENV}, "wharehouse": "W"}}}})


def test_key_pair_options_resolve_the_key_file_next_to_the_config(write_project, tmp_path, monkeypatch):
    monkeypatch.setenv("SF_KEY_PASSPHRASE", "secret")
    project = write_project({"connections": {"sf": {"kind": "snowflake", "role": "source", "options": {
        "account": "acme-eu1", "user": "loader", "database": "ANALYTICS", "schema": "RAW", "role": "READER",
        "warehouse": "XS", "private_key_file": "keys/loader.p8",
        "private_key_passphrase": {"env": "SF_KEY_PASSPHRASE"}, "login_timeout": 20, "network_timeout": 90}}}})
    arguments = connector_for("sf", project.connections["sf"]).connect_arguments()
    assert arguments["authenticator"] == "SNOWFLAKE_JWT"
    assert arguments["private_key_file"] == str((tmp_path / "keys/loader.p8").resolve())
    assert arguments["private_key_file_pwd"] == "secret"
    assert "password" not in arguments
    assert (arguments["schema"], arguments["role"], arguments["warehouse"]) == ("RAW", "READER", "XS")
    assert (arguments["login_timeout"], arguments["request_timeout"]) == (20, 90)
    assert arguments["session_parameters"]["TIMEZONE"] == "UTC"


def test_snowflake_is_never_a_target(write_project, sf):
    with pytest.raises(ConfigError, match="source-only connection"):
        write_project({"connections": {"sf": sf.connection_config(), "sf2": sf.connection_config()},
                       "source": "sf2", "target": "sf", "streams": {"SRC.T": None}})
    with pytest.raises(ConfigError, match="never written"):
        sf.connector.ddl_type(pa.field("x", pa.int64()))


# -- catalog --------------------------------------------------------------------------------------
def test_discovery_lists_tables_and_row_counts(sf):
    """fakesnow keeps views out of INFORMATION_SCHEMA.TABLES and reports 0 bytes: see the live suite."""
    sf.run('CREATE TABLE "SRC"."ORDERS" ("ID" INT, "TOTAL" NUMBER(10,2))',
           'INSERT INTO "SRC"."ORDERS" VALUES (1, 2.5), (2, 3.5), (3, 4.5)',
           'CREATE TABLE "SRC"."EMPTY" ("ID" INT)',
           'CREATE SCHEMA "OTHER"', 'CREATE TABLE "OTHER"."ELSEWHERE" ("ID" INT)')
    report = {row["table"]: row for row in list_tables_report(sf.connector, "SRC")}
    assert set(report) == {"SRC.ORDERS", "SRC.EMPTY"}
    assert report["SRC.ORDERS"]["rows"] == 3 and report["SRC.ORDERS"]["kind"] == "table"
    assert report["SRC.EMPTY"]["rows"] == 0
    assert all(isinstance(row["last_altered"], datetime) for row in report.values())
    assert "OTHER.ELSEWHERE" in {row["table"] for row in list_tables_report(sf.connector, None)}


def test_discovery_lists_databases_and_schemas_with_table_counts(sf):
    """fakesnow keeps views out of INFORMATION_SCHEMA.TABLES, so they are not counted here: see the live suite."""
    sf.run('CREATE TABLE "SRC"."ORDERS" ("ID" INT)', 'CREATE TABLE "SRC"."LINES" ("ID" INT)', 'CREATE SCHEMA "EMPTY"')
    databases = sf.connector.list_databases()
    assert sf.connector.database_name == sf.database and sf.database in databases and databases == sorted(databases)
    assert sf.connector.list_schemas() == [SchemaInfo("EMPTY", 0), SchemaInfo("SRC", 2)]


def test_table_schema_maps_every_type(sf):
    sf.run(ALL_TYPES_DDL)
    schema = sf.connector.table_schema(TableName("SRC", "ALL_TYPES"))
    types = {f.name: f.type for f in schema}
    assert types == {
        "ID": pa.decimal128(38, 0), "AMOUNT": pa.decimal128(12, 2), "BIG": pa.decimal128(38, 0),
        "RATIO": pa.float64(), "NAME": pa.string(), "PAYLOAD": pa.binary(), "ACTIVE": pa.bool_(),
        "DAY": pa.date32(), "AT_TIME": pa.time64("us"), "NTZ": pa.timestamp("us"),
        "TZ": pa.timestamp("us", tz="UTC"), "DOC": pa.string(), "OBJ": pa.string(), "ARR": pa.string(),
        'Mixed Case "col"': pa.string(),
    }
    assert not schema.field("ID").nullable and schema.field("AMOUNT").nullable
    assert native_type(schema.field("AMOUNT"), "snowflake") == "NUMBER(12,2)"
    assert native_type(schema.field("NAME"), "snowflake") == "VARCHAR(40)"
    assert [logical_type(schema.field(c)) for c in ("DOC", "OBJ", "ARR")] == ["json"] * 3


def test_missing_table_is_none_and_a_case_mismatch_names_the_real_table(sf):
    assert sf.connector.table_schema(TableName("SRC", "NOPE")) is None
    sf.run('CREATE TABLE "SRC"."ORDERS" ("ID" INT)')
    with pytest.raises(ConfigError, match=r"case-sensitive .* did you mean SRC\.ORDERS"):
        sf.connector.table_schema(TableName("SRC", "orders"))


def test_three_part_names_use_their_own_database(sf):
    sf.run('CREATE TABLE "SRC"."T" ("ID" INT)')
    other = SnowflakeConnector("sf", ConnectionSpec(kind="snowflake", options={
        **sf.options, "database": "SOMEWHERE_ELSE", "password": "fake"}))
    assert other.qualified(TableName(f"{sf.database}.SRC", "T")) == f'"{sf.database}"."SRC"."T"'
    assert sf.connector.table_schema(TableName(f"{sf.database}.SRC", "T")).names == ["ID"]


def test_unreachable_server_is_a_connection_failure(fakesnow):
    closed_port = FakesnowServer(fakesnow.process, 1, fakesnow.log_path).options("D", "S")
    connector = SnowflakeConnector("sf", ConnectionSpec(kind="snowflake", options={
        **closed_port, "password": "fake", "login_timeout": 2, "network_timeout": 2}))
    with pytest.raises(ConnectionFailed, match="cannot connect to Snowflake account 'fakesnow'"):
        connector.fetch("SELECT 1")


# -- reading --------------------------------------------------------------------------------------
def test_full_read_of_every_type_is_exact(sf):
    sf.run(ALL_TYPES_DDL, ALL_TYPES_ROW)
    table = TableName("SRC", "ALL_TYPES")
    schema = sf.connector.table_schema(table)
    reader = sf.connector.open_stream(ReadRequest(table=table, columns=tuple(schema.names)), schema).open_batches()
    result = reader.read_all()
    assert result.schema == schema
    row = result.to_pylist()[0]
    assert row == {
        "ID": Decimal(1), "AMOUNT": Decimal("12345.67"), "BIG": Decimal(9007199254740993), "RATIO": 1.5,
        "NAME": "héllo", "PAYLOAD": b"\xca\xfe", "ACTIVE": True, "DAY": date(2024, 2, 29),
        "AT_TIME": time(23, 59, 58, 123456), "NTZ": datetime(2024, 1, 2, 3, 4, 5, 123456),
        "TZ": datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC),
        "DOC": '{"a":1,"b":[true,null]}', "OBJ": '{"k":"v"}', "ARR": '[1,"x"]', 'Mixed Case "col"': "quoted",
    }


def test_empty_result_keeps_the_schema(sf):
    sf.run('CREATE TABLE "SRC"."EMPTY" ("ID" NUMBER(38,0), "AT" TIMESTAMP_NTZ)')
    table = TableName("SRC", "EMPTY")
    schema = sf.connector.table_schema(table)
    result = sf.connector.open_stream(ReadRequest(table=table), schema).open_batches().read_all()
    assert result.num_rows == 0 and result.schema == schema


def test_filters_bind_values_cast_to_the_column_type(sf):
    sf.run('CREATE TABLE "SRC"."EVENTS" ("ID" NUMBER(38,0), "AT" TIMESTAMP_NTZ, "TZ" TIMESTAMP_TZ, "D" DATE)',
           """INSERT INTO "SRC"."EVENTS" VALUES (1, '2024-01-01 00:00:00', '2024-01-01 00:00:00+00:00', '2024-01-01'),
              (2, '2024-01-02 12:00:00.5', '2024-01-02 12:00:00+00:00', '2024-01-02'),
              (3, '2024-01-03 00:00:00', '2024-01-03 00:00:00+00:00', '2024-01-03')""")
    table = TableName("SRC", "EVENTS")
    schema = sf.connector.table_schema(table)

    def ids(*filters: Filter) -> list[int]:
        reader = sf.connector.open_stream(ReadRequest(table=table, filters=filters, order_by=("ID",)), schema)
        return [int(v) for v in reader.open_batches().read_all().column("ID").to_pylist()]

    sql, params = sf.connector.render_select(ReadRequest(table=table, filters=(Filter("AT", ">", 1),)), schema)
    assert 'WHERE "AT" > CAST(? AS TIMESTAMP_NTZ(9))' in sql and params == ["1"]
    assert ids(Filter("AT", ">", datetime(2024, 1, 2, 12, 0, 0))) == [2, 3]
    assert ids(Filter("TZ", ">=", datetime(2024, 1, 2, 13, 0, tzinfo=UTC))) == [3]
    assert ids(Filter("ID", ">", Decimal(1)), Filter("ID", "<=", Decimal(2))) == [2]
    assert ids(Filter("D", ">=", date(2024, 1, 2)), Filter("D", "<", date(2024, 1, 3))) == [2]


def test_custom_sql_stream_schema_comes_from_the_result(sf):
    sf.run('CREATE TABLE "SRC"."ORDERS" ("ID" INT, "TOTAL" NUMBER(10,2), "AT" TIMESTAMP_NTZ)')
    schema = sf.connector.query_schema('SELECT "ID", "TOTAL" * 2 AS "DOUBLE", "AT" FROM "SRC"."ORDERS"')
    assert schema.names == ["ID", "DOUBLE", "AT"]
    assert pa.types.is_decimal(schema.field("DOUBLE").type)
    assert schema.field("AT").type == pa.timestamp("us")


def test_unload_is_chosen_only_for_large_unfiltered_reads(sf):
    sf.run('CREATE TABLE "SRC"."T" ("ID" INT)', 'INSERT INTO "SRC"."T" VALUES (1), (2), (3)')
    table = TableName("SRC", "T")
    schema = sf.connector.table_schema(table)
    connector = SnowflakeConnector("sf", ConnectionSpec(kind="snowflake", options={
        **sf.options, "password": "fake", "unload_min_rows": 3}))
    assert connector.use_unload(ReadRequest(table=table), schema)
    assert not connector.use_unload(ReadRequest(table=table, filters=(Filter("ID", ">", 1),)), schema)
    assert not connector.use_unload(ReadRequest(table=table, limit=2), schema)
    assert not sf.connector.use_unload(ReadRequest(table=table), schema)
    higher = SnowflakeConnector("sf", ConnectionSpec(kind="snowflake", options={
        **sf.options, "password": "fake", "unload_min_rows": 4}))
    assert not higher.use_unload(ReadRequest(table=table), schema)


# -- syncs end to end -----------------------------------------------------------------------------
def test_full_refresh_into_duckdb_keeps_every_value(sf, write_project, tmp_path):
    sf.run(ALL_TYPES_DDL, ALL_TYPES_ROW)
    project = duck_project(write_project, tmp_path, sf, {"SRC.ALL_TYPES": {"primary_key": ["ID"]}})
    table = project.tables[0]
    result = sync_table(table, *_connectors(project, table))
    assert (result.rows_read, result.rows_written, result.target_rows) == (1, 1, 1)
    described = dict(duck_rows(tmp_path, 'SELECT column_name, data_type FROM information_schema.columns '
                                         "WHERE table_name = 'ALL_TYPES'"))
    assert described["ID"] == "DECIMAL(38,0)" and described["AMOUNT"] == "DECIMAL(12,2)"
    assert described["TZ"] == "TIMESTAMP WITH TIME ZONE" and described["NTZ"] == "TIMESTAMP"
    assert described["DOC"] == "JSON" and described["PAYLOAD"] == "BLOB"
    row = duck_rows(tmp_path, 'SELECT "BIG", "DOC" ->> \'a\', epoch_us("TZ"), "Mixed Case ""col""" '
                              'FROM "SRC"."ALL_TYPES"')[0]
    assert row == (Decimal(9007199254740993), "1",
                   int(datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC).timestamp() * 1_000_000),
                   "quoted")


def test_empty_table_syncs_to_an_empty_target(sf, write_project, tmp_path):
    sf.run('CREATE TABLE "SRC"."EMPTY" ("ID" NUMBER(38,0), "NAME" VARCHAR)')
    project = duck_project(write_project, tmp_path, sf, {"SRC.EMPTY": None})
    result = sync_table(project.tables[0], *_connectors(project, project.tables[0]))
    assert (result.rows_written, result.target_rows) == (0, 0)
    assert [r[0] for r in duck_rows(tmp_path, "DESCRIBE \"SRC\".\"EMPTY\"")] == ["ID", "NAME"]


def test_incremental_by_timestamp_with_lookback_merges_late_rows(sf, write_project, tmp_path):
    sf.run('CREATE TABLE "SRC"."ORDERS" ("ID" NUMBER(38,0), "STATUS" VARCHAR, "UPDATED_AT" TIMESTAMP_NTZ)',
           """INSERT INTO "SRC"."ORDERS" VALUES (1, 'new', '2024-03-01 10:00:00'), (2, 'new', '2024-03-01 11:00:00')""")
    project = duck_project(write_project, tmp_path, sf, {"SRC.ORDERS": {
        "mode": "incremental", "primary_key": ["ID"], "update_key": "UPDATED_AT", "lookback": "1 hour"}})
    table = project.tables[0]
    first = sync_table(table, *_connectors(project, table))
    assert first.plan.strategy == "full_refresh" and first.target_rows == 2
    sf.run(
        """UPDATE "SRC"."ORDERS" SET "STATUS" = 'paid', "UPDATED_AT" = '2024-03-01 12:00:00' WHERE "ID" = 1""",
        """INSERT INTO "SRC"."ORDERS" VALUES (3, 'late', '2024-03-01 10:30:00'), (4, 'old', '2024-02-01 00:00:00')""",
    )
    second = sync_table(table, *_connectors(project, table))
    assert second.plan.strategy == "incremental"
    assert second.plan.window[0] == datetime(2024, 3, 1, 10, 0)
    assert 'WHERE "UPDATED_AT" >= CAST(? AS TIMESTAMP_NTZ(9))' in second.source_sql
    assert second.rows_read == 3  # ids 1 (updated), 2 (inside the look-back) and 3 (late commit)
    assert duck_rows(tmp_path, 'SELECT "ID", "STATUS" FROM "SRC"."ORDERS" ORDER BY 1') == [
        (Decimal(1), "paid"), (Decimal(2), "new"), (Decimal(3), "late")]
    assert second.watermark_after == datetime(2024, 3, 1, 12, 0)


def test_incremental_by_numeric_key_into_postgres(sf, write_project, pg_options, schema_name, pg_conninfo):
    target_schema = schema_name("sf")
    sf.run('CREATE TABLE "SRC"."EVENTS" ("SEQ" NUMBER(18,0), "KIND" VARCHAR(10), "DOC" VARIANT)',
           """INSERT INTO "SRC"."EVENTS" SELECT 1, 'a', PARSE_JSON('{"n": 1}')""",
           """INSERT INTO "SRC"."EVENTS" SELECT 2, 'b', PARSE_JSON('[1, 2]')""")
    project = write_project({
        "connections": {"sf": sf.connection_config(), "pg": {"kind": "postgres", "options": pg_options}},
        "source": "sf", "target": "pg",
        "streams": {"SRC.EVENTS": {"mode": "incremental", "update_key": "SEQ",
                                   "object": f"{target_schema}.events"}},
    })
    table = project.tables[0]
    sync_table(table, *_connectors(project, table))
    sf.run("""INSERT INTO "SRC"."EVENTS" SELECT 3, 'c', PARSE_JSON('"text"')""")
    second = sync_table(table, *_connectors(project, table))
    assert second.plan.write.kind == "append" and second.rows_read == 1
    assert 'WHERE "SEQ" > CAST(? AS NUMBER(18,0))' in second.source_sql
    with psycopg.connect(pg_conninfo) as conn:
        rows = conn.execute(f'SELECT "SEQ", "KIND", "DOC", pg_typeof("DOC")::text, pg_typeof("SEQ")::text '
                            f'FROM "{target_schema}".events ORDER BY 1').fetchall()
    assert rows == [(Decimal(1), "a", {"n": 1}, "jsonb", "numeric"), (Decimal(2), "b", [1, 2], "jsonb", "numeric"),
                    (Decimal(3), "c", "text", "jsonb", "numeric")]


def test_full_refresh_into_postgres_keeps_every_value(sf, write_project, pg_options, schema_name, pg_conninfo):
    target_schema = schema_name("sf")
    sf.run(ALL_TYPES_DDL, ALL_TYPES_ROW)
    project = write_project({
        "connections": {"sf": sf.connection_config(), "pg": {"kind": "postgres", "options": pg_options}},
        "source": "sf", "target": "pg",
        "streams": {"SRC.ALL_TYPES": {"primary_key": ["ID"], "object": f"{target_schema}.all_types"}},
    })
    result = sync_table(project.tables[0], *_connectors(project, project.tables[0]))
    assert result.target_rows == 1
    with psycopg.connect(pg_conninfo) as conn:
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s",
            (target_schema,)).fetchall())
        row = conn.execute(f'SELECT "BIG", "AMOUNT", "TZ", "NTZ", "PAYLOAD", "OBJ", "AT_TIME" '
                           f'FROM "{target_schema}".all_types').fetchone()
    assert types["TZ"] == "timestamp with time zone" and types["NTZ"] == "timestamp without time zone"
    assert types["ID"] == "numeric" and types["DOC"] == "jsonb" and types["PAYLOAD"] == "bytea"
    assert row[0] == Decimal(9007199254740993) and row[1] == Decimal("12345.67")
    assert row[2] == datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)
    assert row[3] == datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert (bytes(row[4]), row[5], row[6]) == (b"\xca\xfe", {"k": "v"}, time(23, 59, 58, 123456))


def test_date_partition_overwrites_only_its_day(sf, write_project, tmp_path):
    sf.run('CREATE TABLE "SRC"."SALES" ("ID" INT, "SOLD_AT" TIMESTAMP_NTZ, "AMOUNT" NUMBER(10,2))',
           """INSERT INTO "SRC"."SALES" VALUES (1, '2024-05-01 08:00:00', 10), (2, '2024-05-01 23:59:59.999999', 20),
              (3, '2024-05-02 00:00:00', 30)""")
    project = duck_project(write_project, tmp_path, sf, {"SRC.SALES": {
        "mode": "date_partitioned", "partition": {"column": "SOLD_AT", "granularity": "daily", "start": "2024-05-01"}}})
    table = project.tables[0]

    def run_day(day: int):
        window = (datetime(2024, 5, day, tzinfo=UTC), datetime(2024, 5, day + 1, tzinfo=UTC))
        return sync_table(table, *_connectors(project, table), RunOptions(partition_window=window))

    assert run_day(1).rows_written == 2
    assert run_day(2).rows_written == 1
    sf.run("""UPDATE "SRC"."SALES" SET "AMOUNT" = 11 WHERE "ID" = 1""")
    rerun = run_day(1)
    assert (rerun.rows_deleted, rerun.rows_written) == (2, 2)
    assert duck_rows(tmp_path, 'SELECT "ID", "AMOUNT" FROM "SRC"."SALES" ORDER BY 1') == [
        (Decimal(1), Decimal("11.00")), (Decimal(2), Decimal("20.00")), (Decimal(3), Decimal("30.00"))]


def test_dagster_asset_and_row_count_check(sf, write_project, tmp_path):
    sf.run('CREATE TABLE "SRC"."ORDERS" ("ID" INT, "UPDATED_AT" TIMESTAMP_NTZ)',
           """INSERT INTO "SRC"."ORDERS" VALUES (1, '2024-01-01'), (2, '2024-01-02')""")
    project = duck_project(write_project, tmp_path, sf, {"SRC.ORDERS": {
        "mode": "incremental", "primary_key": ["ID"], "update_key": "UPDATED_AT"}})
    result = dg.materialize(
        build_sync_steps(project),
        resources=build_definitions(project).resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "row_count_parity"]
    assert evaluation.passed
    assert evaluation.metadata["source_rows"].value == evaluation.metadata["target_rows"].value == 2


# -- sampling -------------------------------------------------------------------------------------
def test_sample_first_and_random_as_json_csv_parquet(sf, tmp_path):
    sf.run('CREATE TABLE "SRC"."NUMS" ("N" INT, "LABEL" VARCHAR, "B" BINARY, "AT" TIMESTAMP_NTZ)',
           """INSERT INTO "SRC"."NUMS" SELECT SEQ4(), 'n' || SEQ4(), TO_BINARY('00', 'HEX'), '2024-01-01'
              FROM TABLE(GENERATOR(ROWCOUNT => 50))""")
    out = io.BytesIO()
    assert sample_table(sf.connector, "SRC.NUMS", 5, "first", "json", out) == 5
    rows = json.loads(out.getvalue())
    assert len(rows) == 5 and set(rows[0]) == {"N", "LABEL", "B", "AT"} and rows[0]["AT"] == "2024-01-01T00:00:00"

    out = io.BytesIO()
    assert sample_table(sf.connector, TableName("SRC", "NUMS"), 7, "random", "csv", out) == 7
    sampled = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert len(sampled) == 7 and len({r["N"] for r in sampled}) == 7 and sampled[0]["B"] == "AA=="

    path = tmp_path / "sample.parquet"
    assert sample_table(sf.connector, "SRC.NUMS", 80, "random", "parquet", path) == 50
    assert pq.read_table(path).num_rows == 50
    with pytest.raises(ConfigError, match="does not exist"):
        sample_table(sf.connector, "SRC.MISSING", 1, "first", "json", io.BytesIO())


def _connectors(project, table):
    return (connector_for(table.source, project.connections[table.source]),
            connector_for(table.target, project.connections[table.target]))
