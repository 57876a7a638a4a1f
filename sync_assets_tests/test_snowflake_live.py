"""The Snowflake source against a real account: what fakesnow cannot show.

Skipped unless SNOWFLAKE_TEST_ACCOUNT, SNOWFLAKE_TEST_USER, SNOWFLAKE_TEST_DATABASE,
SNOWFLAKE_TEST_WAREHOUSE and SNOWFLAKE_TEST_PASSWORD (or SNOWFLAKE_TEST_PRIVATE_KEY_FILE, with
SNOWFLAKE_TEST_PRIVATE_KEY_PASSPHRASE when the key is encrypted) are set; SNOWFLAKE_TEST_ROLE is
optional. The role needs CREATE SCHEMA in the database: each run makes its own schema
``SYNC_ASSETS_TEST_<random>`` and drops it. CI does not run this suite.

Covered here: 38-digit integers, TIMESTAMP_LTZ and TIMESTAMP_TZ instants, nanosecond values
failing loudly, VARIANT as compact JSON, views and byte sizes in discovery, views in schema
counts, case-sensitive names, a wrong password, and the stage-unload fast path (COPY INTO
@stage, GET, cleanup) end to end into DuckDB, with its time printed next to the streamed path's
(no timing is asserted).
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import pytest

from sync_assets.cli.sampling import list_tables_report
from sync_assets.config.models import ConnectionSpec
from sync_assets.config.names import TableName
from sync_assets.connectors import connector_for
from sync_assets.connectors.requests import ReadRequest
from sync_assets.connectors.snowflake.connector import SnowflakeConnector
from sync_assets.errors import ConfigError, ConnectionFailed, DataError
from sync_assets.sync.engine import sync_table

REQUIRED = ("SNOWFLAKE_TEST_ACCOUNT", "SNOWFLAKE_TEST_USER", "SNOWFLAKE_TEST_DATABASE", "SNOWFLAKE_TEST_WAREHOUSE")
MISSING = [name for name in REQUIRED if not os.environ.get(name)]
if not (os.environ.get("SNOWFLAKE_TEST_PASSWORD") or os.environ.get("SNOWFLAKE_TEST_PRIVATE_KEY_FILE")):
    MISSING.append("SNOWFLAKE_TEST_PASSWORD or SNOWFLAKE_TEST_PRIVATE_KEY_FILE")

pytestmark = [
    pytest.mark.snowflake_live,
    pytest.mark.skipif(bool(MISSING), reason=f"needs a real Snowflake account: set {', '.join(MISSING)}"),
]


def live_connection(schema: str, **extra) -> dict:
    """The connection block as a user writes it, secrets by environment variable."""
    options = {"account": os.environ.get("SNOWFLAKE_TEST_ACCOUNT"), "user": os.environ.get("SNOWFLAKE_TEST_USER"),
               "database": os.environ.get("SNOWFLAKE_TEST_DATABASE"),
               "warehouse": os.environ.get("SNOWFLAKE_TEST_WAREHOUSE"), "schema": schema, **extra}
    if os.environ.get("SNOWFLAKE_TEST_ROLE"):
        options["role"] = os.environ["SNOWFLAKE_TEST_ROLE"]
    if os.environ.get("SNOWFLAKE_TEST_PASSWORD"):
        options["password"] = {"env": "SNOWFLAKE_TEST_PASSWORD"}
    else:
        options["private_key_file"] = os.environ["SNOWFLAKE_TEST_PRIVATE_KEY_FILE"]
        if os.environ.get("SNOWFLAKE_TEST_PRIVATE_KEY_PASSPHRASE"):
            options["private_key_passphrase"] = {"env": "SNOWFLAKE_TEST_PRIVATE_KEY_PASSPHRASE"}
    return {"kind": "snowflake", "role": "source", "options": options}


@pytest.fixture(scope="module")
def live_schema():
    """A scratch schema of this run's own, dropped at the end; yields (schema, connector)."""
    schema = f"SYNC_ASSETS_TEST_{uuid.uuid4().hex[:10].upper()}"
    options = {k: (os.environ[v["env"]] if isinstance(v, dict) else v)
               for k, v in live_connection(schema)["options"].items()}
    admin = SnowflakeConnector("live", ConnectionSpec(kind="snowflake", role="source", options=options))
    conn = admin.connect()
    cur = conn.cursor()
    cur.execute(f'CREATE SCHEMA "{admin.opts.database}"."{schema}"')
    try:
        yield schema, admin, cur
    finally:
        cur.execute(f'DROP SCHEMA IF EXISTS "{admin.opts.database}"."{schema}" CASCADE')
        conn.close()


def test_exact_numbers_instants_and_json(live_schema):
    schema, connector, cur = live_schema
    cur.execute(f'''CREATE TABLE "{schema}"."TYPES" ("BIG" NUMBER(38,0), "SMALL" NUMBER(38,0), "LTZ" TIMESTAMP_LTZ,
                    "TZ" TIMESTAMP_TZ, "DOC" VARIANT)''')
    cur.execute(f'''INSERT INTO "{schema}"."TYPES" SELECT 12345678901234567890123456789012345678, 7,
                    '2024-01-02 03:04:05.123456 +02:00'::TIMESTAMP_LTZ, '2024-01-02 03:04:05.123456 -05:00',
                    PARSE_JSON('{{"a": [1, 2], "b": {{"c": null}}}}')''')
    table = TableName(schema, "TYPES")
    arrow_schema = connector.table_schema(table)
    row = connector.open_stream(ReadRequest(table=table), arrow_schema).open_batches().read_all().to_pylist()[0]
    assert row["BIG"] == Decimal("12345678901234567890123456789012345678") and row["SMALL"] == Decimal(7)
    assert row["LTZ"] == datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)
    assert row["TZ"] == datetime(2024, 1, 2, 8, 4, 5, 123456, tzinfo=UTC)
    assert row["DOC"] == '{"a":[1,2],"b":{"c":null}}'


def test_nanoseconds_fail_loudly(live_schema):
    schema, connector, cur = live_schema
    cur.execute(
        f'''CREATE TABLE "{schema}"."NANOS" AS SELECT '2024-01-01 00:00:00.123456789'::TIMESTAMP_NTZ(9) AS "AT"'''
    )
    table = TableName(schema, "NANOS")
    with pytest.raises(DataError, match="column 'AT'"):
        connector.open_stream(ReadRequest(table=table), connector.table_schema(table)).open_batches().read_all()


def test_discovery_reports_sizes_and_views(live_schema):
    schema, connector, cur = live_schema
    cur.execute(f'CREATE TABLE "{schema}"."SIZED" AS SELECT SEQ4() AS "N" FROM TABLE(GENERATOR(ROWCOUNT => 10000))')
    cur.execute(f'CREATE VIEW "{schema}"."SIZED_VIEW" AS SELECT * FROM "{schema}"."SIZED"')
    report = {row["table"]: row for row in list_tables_report(connector, schema)}
    assert report[f"{schema}.SIZED"]["rows"] == 10000 and report[f"{schema}.SIZED"]["bytes"] > 0
    assert report[f"{schema}.SIZED_VIEW"]["kind"] == "view"
    assert report[f"{schema}.SIZED"]["last_altered"] is not None


def test_schema_counts_include_views(live_schema):
    schema, connector, cur = live_schema
    cur.execute(f'CREATE TABLE "{schema}"."COUNTED" ("ID" INT)')
    cur.execute(f'CREATE VIEW "{schema}"."COUNTED_VIEW" AS SELECT * FROM "{schema}"."COUNTED"')
    counts = {info.name: info.table_count for info in connector.list_schemas()}
    assert counts[schema] == len(connector.list_tables(schema)) >= 2 and "INFORMATION_SCHEMA" not in counts
    assert connector.database_name in connector.list_databases()


def test_names_are_case_sensitive(live_schema):
    schema, connector, cur = live_schema
    cur.execute(f'CREATE TABLE "{schema}"."UPPER_NAME" ("ID" INT)')
    with pytest.raises(ConfigError, match="did you mean"):
        connector.table_schema(TableName(schema, "upper_name"))


def test_wrong_password_is_a_connection_failure(live_schema):
    schema, connector, _ = live_schema
    options = {**connector.options, "password": "certainly-wrong", "private_key_file": None,
               "private_key_passphrase": None}
    wrong = SnowflakeConnector("live", ConnectionSpec(kind="snowflake", role="source", options=options))
    with pytest.raises(ConnectionFailed):
        wrong.fetch("SELECT 1")


def test_stage_unload_into_duckdb_matches_the_streamed_read(live_schema, write_project, tmp_path):
    schema, connector, cur = live_schema
    rows = int(os.environ.get("SNOWFLAKE_TEST_BENCH_ROWS", "1000000"))
    cur.execute(f'''CREATE TABLE "{schema}"."BIG" AS
                    SELECT SEQ8() AS "ID", UNIFORM(1, 1000000, RANDOM())::NUMBER(12,2) AS "AMOUNT",
                    RANDSTR(20, RANDOM()) AS "NAME", DATEADD(second, SEQ4(), '2024-01-01'::TIMESTAMP_NTZ) AS "AT",
                    DATEADD(second, SEQ4(), '2024-01-01'::TIMESTAMP_TZ) AS "AT_TZ",
                    OBJECT_CONSTRUCT('n', SEQ4()) AS "DOC"
                    FROM TABLE(GENERATOR(ROWCOUNT => {rows}))''')
    timings = {}
    for path, extra in (("streamed", {}), ("unload", {"unload_min_rows": 0, "unload_local_dir": str(tmp_path)})):
        project = write_project({
            "connections": {"sf": live_connection(schema, **extra),
                            "duck": {"kind": "duckdb", "options": {"path": str(tmp_path / f"{path}.duckdb")}}},
            "source": "sf", "target": "duck", "streams": {f"{schema}.BIG": {"primary_key": ["ID"]}},
        }, name=f"{path}.yaml")
        table = project.tables[0]
        started = time.monotonic()
        result = sync_table(table, connector_for("sf", project.connections["sf"]),
                            connector_for("duck", project.connections["duck"]))
        timings[path] = time.monotonic() - started
        assert result.target_rows == rows
    assert not list(tmp_path.glob("sync_assets_unload_*")), "unloaded files were left behind"
    cur.execute(f"SHOW STAGES LIKE 'SYNC_ASSETS_UNLOAD_%' IN SCHEMA \"{connector.opts.database}\".\"{schema}\"")
    assert cur.fetchall() == []
    query = f'SELECT * FROM "{schema}"."BIG" ORDER BY "ID"'
    with duckdb.connect(str(tmp_path / "streamed.duckdb")) as a, duckdb.connect(str(tmp_path / "unload.duckdb")) as b:
        assert a.execute(query).fetchmany(1000) == b.execute(query).fetchmany(1000)
        assert a.execute(f'DESCRIBE "{schema}"."BIG"').fetchall() == b.execute(f'DESCRIBE "{schema}"."BIG"').fetchall()
    print(f"\n{rows:,} rows: streamed {timings['streamed']:.1f}s, stage unload {timings['unload']:.1f}s "
          f"({timings['streamed'] / timings['unload']:.2f}x)")
