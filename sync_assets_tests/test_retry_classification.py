"""Which errors are retried, decided on errors the real drivers raise against the real PostgreSQL.

Permanent: a login the server refuses (unknown role; a wrong password, on a private server that
asks for one), an unknown database, a missing table; these fail at once with the server's
message, also through Dagster's retry wiring.
Transient: a backend terminated in the middle of a sync's read, and a deadlock the server breaks
by aborting the sync's apply. Errors whose real SQLSTATE the server cannot send over a refused
login (libpq has none to give) are classified on the real driver classes built from the SQLSTATE.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import dagster as dg
import psycopg
import psycopg.errors
import pyodbc
import pytest

from sync_assets.config.models import ConnectionSpec
from sync_assets.connectors import connector_for
from sync_assets.errors import ConfigError, ConnectionFailed, SourceReadError
from sync_assets.sync.engine import sync_table
from sync_assets.sync.retries import is_transient
from sync_assets_tests.conftest import _start_throwaway_postgres, connectors
from sync_assets_tests.test_bounded_reads import make_gated_view, wait_for_backend
from sync_assets_tests.test_operations import materialize


@pytest.fixture(scope="module")
def password_server() -> Iterator[dict]:
    """A private PostgreSQL that asks every login for its password, as connection options: the
    shared server trusts 127.0.0.1, and its pg_hba.conf is not the tests' to change."""
    conninfo, stop = _start_throwaway_postgres(password="the-right-password")
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
        yield {"host": params["host"], "port": int(params["port"]), "database": "test", "user": "postgres"}
    finally:
        stop()


def _postgres(pg_options, **options) -> object:
    return connector_for("erp", ConnectionSpec(kind="postgres", role="source", options={**pg_options, **options}))


@pytest.mark.parametrize("options, server_says", [
    ({"database": "no_such_database_sync_assets"}, 'database "no_such_database_sync_assets" does not exist'),
    ({"user": "no_such_role_sync_assets"}, 'role "no_such_role_sync_assets" does not exist'),
])
def test_a_login_the_server_refuses_is_permanent_and_keeps_the_server_message(pg_options, options, server_says):
    with pytest.raises(ConnectionFailed, match=server_says) as raised:
        _postgres(pg_options, **options).connect()
    assert not is_transient(raised.value)


def test_a_server_that_does_not_answer_is_still_transient(pg_options):
    with pytest.raises(ConnectionFailed) as raised:
        _postgres(pg_options, port=1).connect()
    assert is_transient(raised.value)


@pytest.mark.parametrize("sqlstate, transient", [
    ("28P01", False), ("28000", False), ("3D000", False), ("42P01", False), ("42501", False),
    ("57P01", True), ("40P01", True), ("40001", True), ("08006", True), ("53300", True),
])
def test_psycopg_errors_are_classified_by_their_sqlstate(sqlstate, transient):
    """The psycopg class the server's SQLSTATE maps to, raised and wrapped as a connector wraps it."""
    error_class = psycopg.errors.lookup(sqlstate)
    assert error_class.sqlstate == sqlstate
    try:
        try:
            raise error_class("the server's message")
        except psycopg.Error as exc:
            raise ConnectionFailed(f"connection 'erp': cannot connect to PostgreSQL: {exc}") from exc
    except ConnectionFailed as wrapped:
        assert is_transient(wrapped) is transient


@pytest.mark.parametrize("error, transient", [
    (pyodbc.InterfaceError("28000", "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed "
                                    "for user 'etl'. (18456) (SQLDriverConnect)"), False),
    (pyodbc.ProgrammingError("42S02", "[42S02] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid "
                                      "object name 'dbo.gone'. (208) (SQLExecDirectW)"), False),
    (pyodbc.OperationalError("08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: Error code "
                                      "0x2749 (10057) (SQLDriverConnect)"), True),
    (pyodbc.OperationalError("HYT00", "[HYT00] [Microsoft][ODBC Driver 18 for SQL Server]Login timeout expired "
                                      "(0) (SQLDriverConnect)"), True),
], ids=["login failed", "invalid object", "tcp error", "login timeout"])
def test_odbc_errors_are_classified_by_their_sqlstate(error, transient):
    wrapped = ConnectionFailed(f"connection 'mssql': cannot connect: {error}")
    wrapped.__cause__ = error
    assert is_transient(wrapped) is transient


def test_snowflake_authentication_errors_are_permanent():
    from snowflake.connector.errors import DatabaseError, OperationalError

    for errno in (250001, 390100, 390144):
        refused = DatabaseError(msg="Failed to connect to DB: Incorrect username or password was specified.",
                                errno=errno, sqlstate="08001")
        wrapped = ConnectionFailed(f"connection 'sf': cannot connect to Snowflake: {refused}")
        wrapped.__cause__ = refused
        assert not is_transient(wrapped), errno
    unreachable = OperationalError(msg="HTTP 503: Service Unavailable", errno=251012, sqlstate="08001")
    wrapped = ConnectionFailed("connection 'sf': cannot connect to Snowflake")
    wrapped.__cause__ = unreachable
    assert is_transient(wrapped)


def _dagster_project(write_project, pg_options, source_options, stream: str):
    return write_project({
        "connections": {"erp": {"kind": "postgres", "role": "source", "options": {**pg_options, **source_options}},
                        "copy": {"kind": "postgres", "role": "target", "options": pg_options}},
        "source": "erp", "target": "copy",
        "streams": {stream: {"object": "retry_copy.items", "retries": {"max_retries": 3, "delay": 0, "max_delay": 0}}},
    })


def _restarts(result: dg.ExecuteInProcessResult) -> int:
    return len([e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED])


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The step's error message and those of its causes."""
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error, messages = failure.event_specific_data.error, []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


def test_a_wrong_password_fails_at_once_with_the_server_message_also_through_dagster(
        password_server, write_project, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_ASSETS_TEST_PASSWORD", "a-wrong-password")
    with pytest.raises(ConnectionFailed, match='password authentication failed for user "postgres"') as raised:
        _postgres(password_server, password="a-wrong-password").connect()
    assert not is_transient(raised.value)

    project = write_project(
        {
            "connections": {
                "erp": {
                    "kind": "postgres",
                    "role": "source",
                    "options": {**password_server, "password": {"env": "SYNC_ASSETS_TEST_PASSWORD"}},
                },
                "copy": {"kind": "duckdb", "role": "target", "options": {"path": str(tmp_path / "copy.duckdb")}},
            },
            "source": "erp",
            "target": "copy",
            "streams": {
                "public.items": {"object": "copy.items", "retries": {"max_retries": 3, "delay": 0, "max_delay": 0}}
            },
        }
    )
    result = materialize(project, "public.items", raise_on_error=False)
    assert not result.success and _restarts(result) == 0
    assert 'password authentication failed for user "postgres"' in _failure_message(result)


def test_an_unknown_database_fails_the_dagster_run_without_retries(write_project, pg_options, pg, schema_name):
    source = schema_name("retry")
    project = _dagster_project(write_project, pg_options, {"database": "no_such_database_sync_assets"},
                               f"{source}.items")
    result = materialize(project, f"{source}.items", raise_on_error=False)
    assert not result.success and _restarts(result) == 0
    assert 'database "no_such_database_sync_assets" does not exist' in _failure_message(result)


def test_a_missing_source_table_fails_the_dagster_run_without_retries(write_project, pg_options, pg, schema_name):
    source = schema_name("retry")
    project = _dagster_project(write_project, pg_options, {}, f"{source}.gone")
    result = materialize(project, f"{source}.gone", raise_on_error=False)
    assert not result.success and _restarts(result) == 0
    assert "does not exist" in _failure_message(result)


@pytest.mark.parametrize("target_kind", ["duckdb", "postgres"])
def test_a_backend_terminated_mid_read_is_retried(pg, schema_name, write_project, pg_options, tmp_path, target_kind):
    """The sync's own source backend is terminated while it streams (waiting on a lock at one row)."""
    schema = schema_name("killed")
    lock_key = make_gated_view(pg, schema, "events", rows=200_000, gate_row=150_000)
    target = ({"kind": "duckdb", "role": "target", "options": {"path": str(tmp_path / "t.duckdb")}}
              if target_kind == "duckdb" else {"kind": "postgres", "role": "target", "options": pg_options})
    project = write_project({
        "connections": {"pg": {"kind": "postgres", "role": "source",
                               "options": {**pg_options, "application_name": schema}}, "copy": target},
        "source": "pg", "target": "copy",
        "streams": {f"{schema}.events": {"object": f"{schema}_copy.events", "mode": "full_refresh"}},
    })
    table = project.tables[0]
    source, target_connector = connectors(project, table)
    pg.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
    try:
        terminated = []
        killer = threading.Thread(target=lambda: terminated.append(pg.execute(
            "SELECT pg_terminate_backend(%s)", (wait_for_backend(
                pg, "application_name = %s AND wait_event = 'advisory' AND query LIKE 'COPY%%'", (schema,)),)
        ).fetchone()[0]))
        killer.start()
        with pytest.raises(Exception) as raised:
            sync_table(table, source, target_connector)
        killer.join()
    finally:
        pg.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
    assert terminated == [True]
    assert "terminating connection due to administrator command" in str(raised.value)
    assert isinstance(raised.value, SourceReadError) and f"stream '{schema}.events'" in str(raised.value)
    # psycopg (the COPY pass-through) carries SQLSTATE 57P01; ADBC's stream error only the server's text
    assert isinstance(raised.value.__cause__, psycopg.errors.AdminShutdown if target_kind == "postgres" else OSError)
    assert is_transient(raised.value)


def test_a_deadlock_that_aborts_the_sync_apply_is_retried(pg, schema_name, write_project, pg_options):
    """The sync's merge locks row 1 then waits for row 2, which another transaction holds while it
    asks for row 1: the server breaks the deadlock by aborting the sync (it waited first)."""
    schema = schema_name("deadlock")
    pg.execute(f'CREATE TABLE "{schema}".items (id bigint PRIMARY KEY, v int NOT NULL)')
    pg.execute(f'INSERT INTO "{schema}".items VALUES (1, 0), (2, 0)')
    project = write_project({
        "connections": {"pg": {"kind": "postgres", "role": "both",
                               "options": {**pg_options, "application_name": schema}}},
        "source": "pg", "target": "pg",
        "streams": {f"{schema}.items": {"object": f"{schema}_copy.items", "mode": "incremental",
                                        "primary_key": "id", "update_key": "v"}},
    })
    table = project.tables[0]
    source, target = connectors(project, table)
    sync_table(table, source, target)
    pg.execute(f'UPDATE "{schema}".items SET v = 1')
    with psycopg.connect(pg.info.dsn) as other:
        other.execute("SET deadlock_timeout = '30s'")  # so the server breaks the sync's wait, not this one
        other.execute(f'SELECT 1 FROM "{schema}_copy".items WHERE id = 2 FOR UPDATE')
        waiter = threading.Thread(target=lambda: (
            wait_for_backend(pg, "application_name = %s AND wait_event_type = 'Lock' AND query LIKE '%%INSERT INTO%%'",
                              (schema,)),
            _lock_row_one(other, schema)))
        waiter.start()
        with pytest.raises(psycopg.errors.DeadlockDetected) as raised:
            sync_table(table, source, target)
        waiter.join()
        other.rollback()
    assert is_transient(raised.value)
    assert pg.execute(f'SELECT sum(v) FROM "{schema}_copy".items').fetchone()[0] == 0, "the merge left nothing"


def _lock_row_one(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(f'UPDATE "{schema}_copy".items SET v = v WHERE id = 1')


def test_data_and_config_errors_stay_permanent_even_with_a_transient_cause():
    wrapped = ConfigError("stream 'x': source table s.t does not exist")
    wrapped.__cause__ = psycopg.errors.lookup("57P01")("terminating connection")
    assert not is_transient(wrapped)
