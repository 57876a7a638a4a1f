"""The SQL Server connector's ODBC plumbing, run for real against PostgreSQL through psqlODBC.

No SQL Server runs here, but the reading and writing core of ``sync_assets.connectors.mssql`` is
dialect-free ODBC: connecting with timeouts, streaming Arrow batches with text binds, and the
array-bound bulk insert. These tests drive exactly that code through the PostgreSQL ODBC driver
(Debian ``odbc-postgresql``); the T-SQL around it is covered by ``test_mssql_tsql.py``.
"""

from __future__ import annotations

import socket
import threading
from datetime import datetime

import psycopg
import pyarrow as pa
import pyodbc
import pytest

from sync_assets.config.connection_options import MssqlOptions
from sync_assets.connectors.mssql import odbc
from sync_assets.errors import ConfigError, ConnectionFailed

PSQLODBC = "PostgreSQL Unicode"

pytestmark = pytest.mark.skipif(PSQLODBC not in pyodbc.drivers(),
                                reason="psqlODBC is not installed (Debian: apt-get install odbc-postgresql unixodbc)")


@pytest.fixture
def odbc_pg(pg_conninfo: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(pg_conninfo)
    return ";".join(f"{k}={odbc.odbc_value(str(v))}" for k, v in {
        "Driver": PSQLODBC, "Server": params.get("host", "127.0.0.1"), "Port": params.get("port", 5432),
        "Database": params.get("dbname", "test"), "Uid": params.get("user", "postgres"),
        "UseDeclareFetch": 1, "Fetch": 1000,
    }.items())


LIMITS = odbc.OdbcLimits(login_timeout_s=5, query_timeout_s=30)


@pytest.fixture
def events(pg, schema_name) -> str:
    schema = schema_name("mssql_odbc")
    pg.execute(f'CREATE TABLE "{schema}"."ev ents" (id bigint PRIMARY KEY, "select" text, amount numeric(19,4), '
               f'happened timestamp(6), flag boolean, payload bytea)')
    pg.execute(f"""INSERT INTO "{schema}"."ev ents"
                   SELECT g, 'row ' || g, g * 1.2345, timestamp '2024-01-01' + g * interval '1.000001 second',
                          g % 2 = 0, decode(lpad(to_hex(g), 8, '0'), 'hex')
                   FROM generate_series(1, 25000) g""")
    return schema


FETCH_SCHEMA = pa.schema([("id", pa.int64()), ("select", pa.string()), ("amount", pa.decimal128(19, 4)),
                          ("happened", pa.timestamp("us")), ("payload", pa.binary())])


def test_reads_stream_in_bounded_batches_with_explicit_types(odbc_pg, events):
    reader = odbc.read_arrow_batches(
        odbc_pg, f'SELECT id, "select", amount, happened, payload FROM "{events}"."ev ents" ORDER BY id',
        [], FETCH_SCHEMA, batch_size=4000, limits=LIMITS)
    sizes, first = [], None
    for batch in reader:
        sizes.append(batch.num_rows)
        first = first or batch
    assert max(sizes) <= 4000 and sum(sizes) == 25000 and len(sizes) >= 7
    assert first.schema.types == FETCH_SCHEMA.types
    row = first.slice(0, 1).to_pylist()[0]
    assert str(row["amount"]) == "1.2345"
    assert row["happened"] == datetime(2024, 1, 1, 0, 0, 1, 1)
    assert row["payload"] == b"\x00\x00\x00\x01"


def test_text_binds_compare_in_the_column_type(odbc_pg, events):
    reader = odbc.read_arrow_batches(
        odbc_pg,
        f'SELECT id FROM "{events}"."ev ents" WHERE happened >= CAST(? AS timestamp) AND id < CAST(? AS bigint)',
        ["2024-01-01T05:00:00.000000", "20000"],
        pa.schema([("id", pa.int64())]),
        1000,
        LIMITS,
    )
    ids = pa.Table.from_batches(list(reader), schema=pa.schema([("id", pa.int64())]))["id"].to_pylist()
    assert min(ids) == 18000 and max(ids) == 19999


def test_value_larger_than_the_text_bound_fails_instead_of_truncating(odbc_pg, events, pg):
    pg.execute(f'UPDATE "{events}"."ev ents" SET "select" = repeat(\'x\', 5000) WHERE id = 7')
    limits = odbc.OdbcLimits(login_timeout_s=5, query_timeout_s=30, max_text_bytes=100)
    with pytest.raises(Exception, match="too large|truncat"):
        for _ in odbc.read_arrow_batches(odbc_pg, f'SELECT "select" FROM "{events}"."ev ents"', [],
                                          pa.schema([("select", pa.string())]), 1000, limits):
            pass


def test_bulk_insert_writes_every_batch_with_quoted_names(odbc_pg, events, pg):
    pg.execute(f'CREATE TABLE "{events}"."copy" (id bigint, "select" text, amount numeric(19,4), '
               f'happened timestamp(6), payload bytea)')
    source = odbc.read_arrow_batches(
        odbc_pg, f'SELECT id, "select", amount, happened, payload FROM "{events}"."ev ents"', [], FETCH_SCHEMA,
        batch_size=3000, limits=LIMITS)
    quoted = ['"id"', '"select"', '"amount"', '"happened"', '"payload"']
    rows = odbc.bulk_insert(source, f'"{events}"."copy"', quoted, odbc_pg, LIMITS, chunk_size=2000)
    assert rows == 25000
    differences = pg.execute(
        f'SELECT count(*) FROM ((SELECT id, "select", amount, happened, payload FROM "{events}"."ev ents") '
        f'EXCEPT ALL (SELECT * FROM "{events}"."copy")) d').fetchone()[0]
    assert differences == 0


def test_query_timeout_cancels_a_long_read(odbc_pg):
    with pytest.raises(Exception, match="(?i)cancel|timeout|57014"):
        for _ in odbc.read_arrow_batches(odbc_pg, "SELECT 1 AS one FROM pg_sleep(30)", [],
                                          pa.schema([("one", pa.int32())]), 10,
                                          odbc.OdbcLimits(login_timeout_s=5, query_timeout_s=1)):
            pass


def test_a_driver_that_cannot_set_the_query_timeout_is_refused_clearly(odbc_pg):
    """psqlODBC refuses pyodbc's connection-level timeout; a session must not silently run without one."""
    with pytest.raises(ConnectionFailed, match="cannot set a query timeout"):
        odbc.odbc_connect(odbc_pg, LIMITS, "postgres via psqlODBC")


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never sends a byte (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def _sql_server_drivers() -> list[str]:
    found = [d for d in (*odbc.MICROSOFT_DRIVERS, odbc.FREETDS) if d in pyodbc.drivers()]
    bundled = odbc.bundled_driver_path()
    return found + ([bundled] if bundled else [])


@pytest.mark.timeout(90)
@pytest.mark.parametrize("driver", _sql_server_drivers() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no SQL Server ODBC driver installed (tdsodbc or mssql-python-odbc)"))])
def test_silent_server_fails_with_a_clear_error_instead_of_hanging(driver, silent_port):
    """The pytest timeout is only a guard against a hang; the connect must raise on its own."""
    opts = MssqlOptions(server="127.0.0.1", port=silent_port, database="db", user="u", password="p",
                              encrypt="no", login_timeout_s=2)
    conn_str = odbc.connection_string(opts, driver, read_only=True)
    with pytest.raises(ConnectionFailed, match="cannot connect within 2s"):
        odbc.odbc_connect(conn_str, odbc.OdbcLimits(login_timeout_s=2), "silent test server")
    with pytest.raises(Exception, match="(?i)timeout"):
        for _ in odbc.read_arrow_batches(conn_str, "SELECT 1", [], pa.schema([("one", pa.int32())]), 10,
                                          odbc.OdbcLimits(login_timeout_s=2)):
            pass


def test_a_source_or_protected_mssql_connection_is_refused_as_target(write_project, monkeypatch):
    monkeypatch.setenv("MSSQL_TEST_PASSWORD", "secret")
    prod = {"kind": "mssql", "role": "source", "options": {
        "server": "prod", "database": "Sales", "user": "reader", "password": {"env": "MSSQL_TEST_PASSWORD"}}}
    uat = {"kind": "mssql", "protected": True, "options": {
        "server": "uat", "database": "Sales", "user": "writer", "password": {"env": "MSSQL_TEST_PASSWORD"}}}
    for target, why in (("prod", "source-only"), ("uat", "protected")):
        with pytest.raises(ConfigError, match=f"connection '{target}' is .*{why}"):
            write_project({"connections": {"prod": prod, "uat": uat}, "source": "uat" if target == "prod" else "prod",
                           "target": target, "streams": {"dbo.Orders": {"mode": "full_refresh"}}})


def test_password_must_come_from_the_environment(write_project):
    with pytest.raises(ConfigError, match="key 'password' is a secret"):
        write_project({"connections": {"prod": {"kind": "mssql", "options": {
            "server": "prod", "database": "Sales", "user": "reader", "password": "plain"}}}, "streams": {}})
