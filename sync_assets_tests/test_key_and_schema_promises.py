"""The README's promises about keys and schema changes, each with a test that catches its failure.

- NULL or duplicate primary keys fail with the table, key columns and keys named, and nothing is
  written: in every write mode, on PostgreSQL and DuckDB targets. PostgreSQL leaves this to the
  PRIMARY KEY constraint of the table receiving the rows, so a PostgreSQL target created without
  one (by hand, or before ``primary_key`` was configured) must be checked before applying, too.
- ``schema_changes: fail`` refuses a new source column, and nothing is written.
Either way the target keeps exactly the rows it had, and no staging table is left behind.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync_assets.errors import DataError, SchemaMismatchError
from sync_assets.sync.engine import sync_table
from sync_assets.sync.planning import RunOptions
from sync_assets_tests.conftest import connectors
from sync_assets_tests.engines import Side

MODES = ["full_refresh", "incremental", "date_partitioned"]
DAY = RunOptions(partition_window=(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)))


@pytest.fixture
def source(request) -> Side:
    return Side("postgres", request.getfixturevalue("schema_name")("src"),
                pg_conninfo=request.getfixturevalue("pg_conninfo"))


def _target(kind: str, request, tmp_path) -> Side:
    if kind == "postgres":
        return Side("postgres", request.getfixturevalue("schema_name")("tgt"),
                    pg_conninfo=request.getfixturevalue("pg_conninfo"))
    return Side("duckdb", "tgt", duckdb_path=tmp_path / "tgt.duckdb")


def _sync(source: Side, target: Side, write_project, mode: str, **options):
    stream = {"mode": mode, "primary_key": "k", "object": f'"{target.schema}"."keyed"', **options}
    if mode == "incremental":
        stream["update_key"] = "ts"
    if mode == "date_partitioned":
        stream["partition"] = {"column": "ts", "granularity": "daily", "start": "2024-01-01"}
    project = write_project({
        "connections": {"src": source.connection_spec("source"), "tgt": target.connection_spec("target")},
        "source": "src", "target": "tgt", "streams": {f'"{source.schema}"."keyed"': stream},
    })
    table = project.tables[0]
    return sync_table(table, *connectors(project, table), DAY if mode == "date_partitioned" else RunOptions())


def _make_source(source: Side) -> None:
    source.execute(f'CREATE TABLE {source.qualified("keyed")} (k integer, v text, ts timestamp)')
    source.execute(f'INSERT INTO {source.qualified("keyed")} VALUES '
                   "(1, 'a', '2024-01-01 01:00'), (2, 'b', '2024-01-01 02:00')")


def _state(target: Side) -> tuple[list[tuple], list[tuple]]:
    """The target's rows and every table of its schema (staging included; not the sync's row counts)."""
    rows = target.query(f'SELECT k, v, ts FROM {target.qualified("keyed")} ORDER BY k, v')
    tables = target.query("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                          "AND table_name <> '_sync_row_counts' ORDER BY 1", [target.schema])
    return rows, tables


BAD_KEYS = {
    "null": (
        "(NULL, 'n', '2024-01-01 03:00')",
        r"1 source rows have NULL in primary key column\(s\) k; nothing was written",
    ),
    "duplicate": (
        "(2, 'again', '2024-01-01 03:00')",
        r"primary key \(k\) is not unique in the source rows: k=2 \(2 rows\); nothing was written",
    ),
}


@pytest.mark.parametrize("bad", BAD_KEYS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target_kind", ["postgres", "duckdb"])
def test_bad_keys_are_refused_and_nothing_is_written(source, request, tmp_path, write_project, target_kind, mode, bad):
    target = _target(target_kind, request, tmp_path)
    _make_source(source)
    _sync(source, target, write_project, mode)
    before = _state(target)
    assert len(before[0]) == 2 and before[1] == [("keyed",)]
    row, message = BAD_KEYS[bad]
    source.execute(f'INSERT INTO {source.qualified("keyed")} VALUES {row}')
    with pytest.raises(DataError, match=rf"table .*keyed: {message}"):
        _sync(source, target, write_project, mode)
    assert _state(target) == before  # same rows, and no table whose name contains __sync_staging


@pytest.mark.parametrize("bad", BAD_KEYS)
@pytest.mark.parametrize("mode", ["incremental", "date_partitioned"])
def test_bad_keys_are_refused_by_a_postgres_target_without_a_primary_key(
        source, request, tmp_path, write_project, mode, bad):
    """A PostgreSQL target has no constraint to rely on when it was created without a PRIMARY KEY."""
    target = _target("postgres", request, tmp_path)
    _make_source(source)
    target.execute(f'CREATE TABLE {target.qualified("keyed")} (k integer, v text, ts timestamp)')
    target.execute(f'INSERT INTO {target.qualified("keyed")} VALUES (1, %s, %s)', ["old", datetime(2024, 1, 1, 0, 30)])
    before = _state(target)
    row, message = BAD_KEYS[bad]
    source.execute(f'INSERT INTO {source.qualified("keyed")} VALUES {row}')
    with pytest.raises(DataError, match=rf"table .*keyed: {message}"):
        _sync(source, target, write_project, mode)
    assert _state(target) == before


@pytest.mark.parametrize("mode", ["incremental", "date_partitioned"])
@pytest.mark.parametrize("target_kind", ["postgres", "duckdb"])
def test_schema_changes_fail_refuses_a_new_column_and_writes_nothing(
        source, request, tmp_path, write_project, target_kind, mode):
    target = _target(target_kind, request, tmp_path)
    _make_source(source)
    _sync(source, target, write_project, mode, schema_changes="fail")
    before = _state(target)
    source.execute(f'ALTER TABLE {source.qualified("keyed")} ADD COLUMN "New Col" integer')
    source.execute(f'INSERT INTO {source.qualified("keyed")} VALUES (3, %s, %s, 42)', ["c", datetime(2024, 1, 1, 3)])
    with pytest.raises(SchemaMismatchError,
                       match=r"table .*keyed: source has a new column 'New Col' .* and schema_changes is 'fail'"):
        _sync(source, target, write_project, mode, schema_changes="fail")
    assert _state(target) == before
    columns = target.query("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                           "AND table_name = 'keyed' ORDER BY ordinal_position", [target.schema])
    assert columns == [("k",), ("v",), ("ts",)]
    result = _sync(source, target, write_project, mode)  # the default, evolve, adds it
    assert result.columns_added == ["New Col"]
