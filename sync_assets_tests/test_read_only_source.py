"""A source is never written, against the real PostgreSQL and DuckDB.

Two walls, each tested on its own with a canary table that must keep its rows:

- config load parses ``sql:`` and ``where:`` (sqlglot, in the source's dialect) and refuses
  anything but one SELECT / one condition, with the file, stream and key named: through
  ``sync-assets plan`` (a dry run) and ``sync-assets run``;
- the database itself: every source-side session is read-only (PostgreSQL
  ``default_transaction_read_only`` and one statement per query; a DuckDB source file opened
  read-only, or, for a ``role: both`` file, a transaction that is never committed). These tests
  bypass the config check and hand writing SQL straight to the connector and the engine.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import yaml

from sync_assets.cli.main import main
from sync_assets.config.names import TableName
from sync_assets.config.sql_guard import check_stream_sql
from sync_assets.connectors.requests import ReadRequest
from sync_assets.errors import ConfigError
from sync_assets.sync.engine import sync_table
from sync_assets.sync.planning import RunOptions
from sync_assets_tests.conftest import connectors

SQL_ATTACK = "SELECT 1 AS id; DELETE FROM {canary}; COMMIT; SELECT 1 AS id"
WHERE_ATTACK = "1=1) ; DELETE FROM {canary}; COMMIT; SELECT (1"
ESCAPE_ATTACK = ("SELECT 1 AS id; COMMIT; SET default_transaction_read_only = off; COMMIT; "
                 "DELETE FROM {canary}; SELECT 1 AS id")
CTE_ATTACK = "WITH gone AS (DELETE FROM {canary} RETURNING id) SELECT id FROM gone"
PG_REFUSALS = ("read-only transaction|cannot insert multiple commands"
               "|data-modifying statement must be at the top level")
"""What PostgreSQL answers: a source session is read-only, runs one statement per query, and
embeds the custom SQL as a subquery (where a data-modifying WITH is not allowed)."""


@pytest.fixture
def pg_canary(pg, schema_name) -> str:
    schema = schema_name("ro")
    pg.execute(f'CREATE TABLE "{schema}".canary (id integer PRIMARY KEY)')
    pg.execute(f'INSERT INTO "{schema}".canary SELECT generate_series(1, 3)')
    return f'"{schema}".canary'


def _pg_rows(pg, canary: str) -> int:
    return pg.execute(f"SELECT COUNT(*) FROM {canary}").fetchone()[0]


def _pg_config(pg_options, canary: str, stream: dict, role: str = "both") -> dict:
    schema = canary.split(".")[0].strip('"')
    return {
        "connections": {"pg": {"kind": "postgres", "role": role, "options": pg_options},
                        "wh": {"kind": "postgres", "options": pg_options}},
        "source": "pg", "target": "wh",
        "streams": {f"{schema}.canary": {"object": f"{schema}_copy.canary", **stream}},
    }


def _write(folder: Path, config: dict) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "sync.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


@pytest.mark.parametrize("key, attack", [("sql", SQL_ATTACK), ("where", WHERE_ATTACK), ("sql", CTE_ATTACK)])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_cli_refuses_writing_sql_and_where_at_load(pg, pg_options, pg_canary, tmp_path, capsys, key, attack, command):
    config = _pg_config(pg_options, pg_canary, {key: attack.format(canary=pg_canary)})
    folder = _write(tmp_path / "config", config)
    assert main(["--config", str(folder), command, next(iter(config["streams"]))]) == 2
    error = capsys.readouterr().err
    assert f"sync.yaml: stream {next(iter(config['streams']))!r} key {key!r}" in error
    assert len(error.strip().splitlines()) == 1
    assert _pg_rows(pg, pg_canary) == 3


@pytest.mark.parametrize("text, refusal", [
    ("SELECT * INTO {schema}.made FROM {canary}", "SELECT ... INTO"),
    ("SELECT id FROM {canary} FOR UPDATE", "FOR UPDATE"),
    ("SELECT id, pg_terminate_backend(pg_backend_pid()) AS t FROM {canary}", "pg_terminate_backend"),
    ("SELECT nextval('s') AS id", "nextval"),
    ("SELECT * FROM dblink_exec('dbname=test', 'DELETE FROM x') AS t(id)", "dblink_exec"),
    ("SELECT set_config('default_transaction_read_only', 'off', false) AS id", "set_config"),
    ("DELETE FROM {canary}", "is not a SELECT"),
])
def test_load_refuses_side_effects_naming_file_stream_and_key(pg_options, pg_canary, write_project, text, refusal):
    schema = pg_canary.split(".")[0]
    config = _pg_config(pg_options, pg_canary, {"sql": text.format(canary=pg_canary, schema=schema)})
    with pytest.raises(ConfigError, match=r"sync\.yaml: stream '.*' key 'sql': .*" + refusal.replace(".", r"\.")):
        write_project(config)


def test_load_keeps_ordinary_queries_and_conditions(pg_options, pg_canary, write_project):
    project = write_project(_pg_config(pg_options, pg_canary, {
        "sql": f"SELECT id, id::numeric(18,4) AS amount FROM {pg_canary} WHERE id ILIKE '1%' OR id > 0;",
        "where": "id BETWEEN 1 AND 10 AND amount IS NOT NULL"}))
    assert project.tables[0].sql.endswith("id > 0")  # the trailing semicolon is gone: the SQL is embedded


def test_postgres_refuses_writes_in_every_source_session(pg, pg_options, pg_canary, write_project):
    """Config checks bypassed: the writing SQL reaches the connector, and the server refuses it."""
    project = write_project(_pg_config(pg_options, pg_canary, {}))  # role: both, read here as a source
    table = project.tables[0]
    source, _ = connectors(project, table)
    with pytest.raises(Exception, match="cannot execute DELETE in a read-only transaction"):
        source.fetch(f"DELETE FROM {pg_canary} RETURNING id")
    with pytest.raises(Exception, match="cannot insert multiple commands"):
        source.fetch(ESCAPE_ATTACK.format(canary=pg_canary))
    with pytest.raises(Exception, match=PG_REFUSALS):
        source.query_schema(CTE_ATTACK.format(canary=pg_canary))
    setting = "SELECT current_setting('transaction_read_only') AS ro"
    assert source.fetch(setting) == [("on",)]
    text = pa.schema([pa.field("ro", pa.string())])
    assert source.open_stream(ReadRequest(sql=setting), text).open_batches().read_all()["ro"].to_pylist() == ["on"]
    schema = pa.schema([pa.field("id", pa.int32())])
    escape = f"SET default_transaction_read_only = off; COMMIT; DELETE FROM {pg_canary}"
    # each closes the read's own statement exactly, so only one-statement-per-query stops the rest
    arrow_where = f"true); COMMIT; {escape}; SELECT (1"
    copy_where = f"true)) TO STDOUT (FORMAT binary); COMMIT; {escape}; COPY (SELECT 1 WHERE (true"
    table_name = TableName.parse(pg_canary)
    with pytest.raises(Exception, match="cannot insert multiple commands"):
        source.open_stream(ReadRequest(table=table_name, where=arrow_where), schema).open_batches().read_all()
    with pytest.raises(Exception, match="cannot insert multiple commands"):
        b"".join(source.open_stream(ReadRequest(table=table_name, where=copy_where), schema).open_native())
    assert _pg_rows(pg, pg_canary) == 3


@pytest.mark.parametrize("dry_run", [True, False])
def test_engine_with_unchecked_sql_leaves_the_postgres_canary(pg, pg_options, pg_canary, write_project, dry_run):
    project = write_project(_pg_config(pg_options, pg_canary, {}))
    where_escape = ("true); COMMIT; SET default_transaction_read_only = off; COMMIT; DELETE FROM {canary}; "
                    "SELECT (1")
    for attack in (
        {"sql": CTE_ATTACK},
        {"where": where_escape},
        {"where": "id IN (SELECT id FROM (" + CTE_ATTACK + ") d)"},
    ):
        table = dataclasses.replace(project.tables[0], **{k: v.format(canary=pg_canary) for k, v in attack.items()},
                                    source_table=None if "sql" in attack else project.tables[0].source_table)
        source, target = connectors(project, table)
        with pytest.raises(Exception, match=PG_REFUSALS):
            sync_table(table, source, target, RunOptions(dry_run=dry_run))
    assert _pg_rows(pg, pg_canary) == 3


@pytest.mark.parametrize("key, text", [("where", "no_such_column > 1"), ("sql", "SELECT no_such_column FROM {canary}")])
def test_sql_the_source_refuses_is_one_line_naming_the_stream(pg, pg_options, pg_canary, tmp_path, capsys, key, text):
    config = _pg_config(pg_options, pg_canary, {key: text.format(canary=pg_canary)})
    folder = _write(tmp_path / "config", config)
    stream = next(iter(config["streams"]))
    for command in ("plan", "run"):
        assert main(["--config", str(folder), command, stream]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"error: {folder / 'sync.yaml'}: stream {stream!r} key {key!r}: the source refuses it:")
        assert 'column "no_such_column" does not exist' in error and len(error.splitlines()) == 1


# -- DuckDB --------------------------------------------------------------------------------------

def _duck_file(path: Path) -> Path:
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE canary AS SELECT range AS id FROM range(3)")
        conn.execute("CREATE TABLE items AS SELECT range AS id, 'x' || range AS name FROM range(5)")
    return path


def _duck_rows(path: Path, table: str = "canary") -> int:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _duck_config(source_path: Path, target_path: Path, streams: dict, role: str = "source") -> dict:
    return {
        "connections": {"lake": {"kind": "duckdb", "role": role, "options": {"path": str(source_path)}},
                        "wh": {"kind": "duckdb", "options": {"path": str(target_path)}}},
        "source": "lake", "target": "wh", "streams": streams,
    }


@pytest.mark.parametrize("key, attack", [("sql", SQL_ATTACK), ("where", WHERE_ATTACK),
                                         ("sql", "SELECT * FROM query('DELETE FROM canary')")])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_cli_refuses_writing_duckdb_sql_and_where(tmp_path, capsys, key, attack, command):
    lake = _duck_file(tmp_path / "lake.duckdb")
    folder = _write(tmp_path / "config", _duck_config(lake, tmp_path / "wh.duckdb",
                                                      {"main.items": {key: attack.format(canary="canary")}}))
    assert main(["--config", str(folder), command, "main.items"]) == 2
    assert "sync.yaml: stream 'main.items' key " + repr(key) in capsys.readouterr().err
    assert _duck_rows(lake) == 3


def test_duckdb_source_file_is_opened_read_only(tmp_path, write_project):
    lake = _duck_file(tmp_path / "lake.duckdb")
    project = write_project(_duck_config(lake, tmp_path / "wh.duckdb", {"main.items": {}}))
    source, _ = connectors(project, project.tables[0])
    conn = source.connect()
    with pytest.raises(duckdb.Error, match="read-only mode"):
        conn.execute("DELETE FROM canary")
    conn.close()
    with pytest.raises(ConfigError, match="one SELECT only"):  # COPY ... TO would write a file even so
        source.fetch(f"COPY canary TO '{tmp_path / 'out.csv'}'")
    with pytest.raises(ConfigError, match="one SELECT only"):
        source.fetch(SQL_ATTACK.format(canary="canary"))
    assert _duck_rows(lake) == 3 and not (tmp_path / "out.csv").exists()


def test_duckdb_role_both_file_read_as_a_source_and_written_as_a_target(tmp_path, write_project):
    """One file, source of a stream and its target: it cannot be opened read-only and read-write
    at once in one process, so the source side reads in a transaction that is never committed."""
    lake = _duck_file(tmp_path / "lake.duckdb")
    project = write_project(_duck_config(lake, lake, {"main.items": {"object": "copies.items", "primary_key": "id"}},
                                         role="both") | {"target": "lake"})
    table = project.tables[0]
    source, target = connectors(project, table)
    result = sync_table(table, source, target)
    assert result.rows_written == 5 and _duck_rows(lake, "copies.items") == 5
    conn = source.connect()  # bypassing every check: the write is rolled back when the read ends
    conn.execute("DELETE FROM canary")
    conn.close()
    with pytest.raises(ConfigError, match="one SELECT only"):
        source.fetch("COMMIT")
    unchecked = dataclasses.replace(table, sql=SQL_ATTACK.format(canary="canary"), source_table=None)
    with pytest.raises(ConfigError, match="the source refuses it"):
        sync_table(unchecked, source, target)
    assert _duck_rows(lake) == 3


def test_missing_duckdb_source_file_names_the_file_and_connection(tmp_path, capsys):
    missing = tmp_path / "nowhere.duckdb"
    folder = _write(tmp_path / "config", _duck_config(missing, tmp_path / "wh.duckdb", {"main.items": {}}))
    assert main(["--config", str(folder), "plan", "main.items"]) == 2
    assert capsys.readouterr().err.strip() == f"error: connection 'lake': DuckDB file {missing} does not exist"


@pytest.mark.parametrize("kind", ["postgres", "duckdb", "mssql", "snowflake"])
def test_every_source_dialect_refuses_the_attacks_at_load(kind):
    """No database here: the config check alone, in each source's own SQL dialect."""
    attacks = [("sql", SQL_ATTACK), ("where", WHERE_ATTACK), ("sql", "UPDATE canary SET id = 0"),
               ("sql", "SELECT * INTO made FROM canary"), ("where", "id > 0; DROP TABLE canary")]
    attacks += {"postgres": [("sql", CTE_ATTACK), ("where", "pg_cancel_backend(42)")],
                "duckdb": [("sql", "SELECT * FROM query_table('canary')"), ("where", "nextval('s') > 0")],
                "mssql": [("sql", "SELECT * FROM OPENQUERY(linked, 'DELETE FROM canary')"),
                          ("where", "id > NEXT VALUE FOR s")],
                "snowflake": [("sql", "SELECT SYSTEM$CANCEL_QUERY('01a') AS id")]}[kind]
    for key, text in attacks:
        with pytest.raises(ConfigError, match=f"^f.yaml: stream 's' key '{key}': "):
            check_stream_sql(
                "f.yaml: stream 's'",
                kind,
                **{
                    "sql": None,
                    "condition": None,
                    ("sql" if key == "sql" else "condition"): text.format(canary="canary"),
                },
            )
    assert check_stream_sql("f.yaml: stream 's'", kind, "SELECT id FROM canary ;", "id > 0") == (
        "SELECT id FROM canary",
        "id > 0",
    )
