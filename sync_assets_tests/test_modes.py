"""Every sync mode on every source/target pair of real engines (PostgreSQL and DuckDB files).

The test table has awkward identifiers (mixed case, a space, the reserved word ``select``),
38-digit decimals, unicode, timestamps with and without time zone, UUIDs, bytes, JSON and a row
of NULLs in every non-key column. Each test compares the target with the source row by row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from sync_assets.errors import ConfigError, DataError, SchemaMismatchError
from sync_assets.sync.engine import sync_table
from sync_assets.sync.planning import RunOptions
from sync_assets_tests.conftest import connectors
from sync_assets_tests.engines import BASE_TIME, TABLE, Side, make_row

PAIRS = [("postgres", "postgres"), ("postgres", "duckdb"), ("duckdb", "postgres"), ("duckdb", "duckdb")]


def _side(kind: str, role: str, request, tmp_path) -> Side:
    if kind == "postgres":
        schema = request.getfixturevalue("schema_name")(role)
        return Side("postgres", schema, pg_conninfo=request.getfixturevalue("pg_conninfo"))
    return Side("duckdb", role, duckdb_path=tmp_path / f"{role}.duckdb")


def only_pairs(*chosen: tuple[str, str]):
    """Run a test on these (source, target) kinds only: the others have nothing to show for it."""
    return pytest.mark.parametrize("pair", chosen, indirect=True, ids=lambda p: f"{p[0]}-to-{p[1]}")


@pytest.fixture(params=PAIRS, ids=lambda p: f"{p[0]}-to-{p[1]}")
def pair(request, tmp_path) -> tuple[Side, Side]:
    source_kind, target_kind = request.param
    return _side(source_kind, "src", request, tmp_path), _side(target_kind, "tgt", request, tmp_path)


@pytest.fixture
def sync(pair, write_project):
    """Run one sync of the test table with the given stream options; returns the SyncResult."""
    source, target = pair

    def run(options: dict | None = None, run_options: RunOptions = RunOptions(), stream: str = TABLE,
            stream_name: str | None = None, extra: dict | None = None):
        project = write_project((extra or {}) | {
            "connections": {"src": source.connection_spec("source"), "tgt": target.connection_spec("target")},
            "source": "src", "target": "tgt",
            "defaults": {"object": f'"{target.schema}"."{{stream_table}}"'},
            "streams": {stream_name or f'"{source.schema}"."{stream}"': options or {}},
        })
        table = project.tables[0]
        run.project = project  # the last run's project, for tests that look at the table afterwards
        return sync_table(table, *connectors(project, table), run_options)

    return run


def _rows(n: int, start: int = 1) -> list[tuple]:
    return [make_row(i) for i in range(start, start + n)]


def test_full_refresh_copies_every_type_and_is_idempotent(pair, sync):
    source, target = pair
    source.create_test_table([*_rows(50), make_row(51, nulls=True)])
    result = sync({"mode": "full_refresh", "primary_key": "Id"})
    assert result.rows_read == result.rows_written == 51
    assert target.rows() == source.rows()
    again = sync({"mode": "full_refresh", "primary_key": "Id"})
    assert again.target_rows == 51
    assert target.rows() == source.rows()


def test_full_refresh_mirrors_deletes_and_updates(pair, sync):
    source, target = pair
    source.create_test_table(_rows(20))
    sync({"mode": "full_refresh", "primary_key": "Id"})
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" IN (3, 4)')
    source.execute(f'UPDATE {source.qualified()} SET "Name" = %s WHERE "Id" = 5', ["changed"])
    sync({"mode": "full_refresh", "primary_key": "Id"})
    assert target.rows() == source.rows()
    assert len(target.rows()) == 18


def test_incremental_merge_reads_only_changes(pair, sync):
    source, target = pair
    source.create_test_table(_rows(100))
    first = sync({"mode": "incremental", "primary_key": "Id", "update_key": "updatedAt"})
    assert first.plan.strategy == "full_refresh" and first.rows_written == 100
    later = BASE_TIME + timedelta(days=1)
    source.execute(f'UPDATE {source.qualified()} SET "Name" = %s, "updatedAt" = %s WHERE "Id" IN (7, 8)',
                   ["updated", later])
    source.insert([make_row(i, updated=later) for i in (101, 102)])
    second = sync({"mode": "incremental", "primary_key": "Id", "update_key": "updatedAt"})
    assert second.plan.strategy == "incremental"
    # the two updated and two new rows, plus the one row sitting exactly at the old watermark
    # (">=" re-reads it so rows committed late with the same timestamp are not lost)
    assert second.rows_read == 5
    assert target.rows() == source.rows()
    assert second.watermark_after is not None
    third = sync({"mode": "incremental", "primary_key": "Id", "update_key": "updatedAt"})
    assert third.rows_read == 4  # ">=" re-reads the rows at the watermark; merge keeps it idempotent
    assert target.rows() == source.rows()


def test_incremental_append_without_key_uses_strict_greater(pair, sync):
    source, target = pair
    source.create_test_table(_rows(10))
    options = {"mode": "incremental", "update_key": "Id"}
    sync(options)
    source.insert(_rows(5, start=11))
    second = sync(options)
    assert second.rows_read == 5
    assert second.plan.write.kind == "append"
    assert target.rows() == source.rows()


def test_incremental_lookback_rereads_a_window_and_stays_idempotent(pair, sync):
    source, target = pair
    source.create_test_table(_rows(30))
    options = {"mode": "incremental", "primary_key": "Id", "update_key": "Id", "lookback": 10}
    sync(options)
    source.insert(_rows(3, start=31))
    second = sync(options)
    assert second.rows_read == 14  # ids 20..33: watermark 30 minus a look-back of 10
    assert target.rows() == source.rows()


def test_smart_loads_fully_when_target_is_missing_then_incrementally(pair, sync):
    source, target = pair
    source.create_test_table(_rows(10))
    options = {"mode": "smart", "primary_key": "Id", "update_key": "Id"}
    assert sync(options).plan.strategy == "full_refresh"
    source.insert(_rows(2, start=11))
    second = sync(options)
    assert second.plan.strategy == "incremental"
    assert target.rows() == source.rows()


def test_date_partition_overwrites_exactly_its_window(pair, sync):
    source, target = pair
    source.create_test_table(_rows(27))  # d = 2024-01-02 .. 2024-01-28
    options = {"mode": "date_partitioned", "primary_key": "Id",
               "partition": {"column": "d", "start": "2024-01-01", "granularity": "daily"}}
    day = (datetime(2024, 1, 5, tzinfo=UTC), datetime(2024, 1, 6, tzinfo=UTC))
    range_ = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))
    sync(options, RunOptions(partition_window=range_))
    assert target.rows() == source.rows()
    source.execute(f'UPDATE {source.qualified()} SET "Name" = %s', ["everywhere"])
    source.insert([make_row(100)])  # d = 2024-01-17, outside the re-run window
    result = sync(options, RunOptions(partition_window=day))
    assert result.rows_written == 1 and result.rows_deleted == 1
    names = {row[0]: row[4] for row in target.rows()}
    assert names[4] == "everywhere"  # the row whose d is 2024-01-05
    assert names[3] != "everywhere" and 100 not in names
    sync(options, RunOptions(partition_window=day))  # re-running a partition is idempotent
    assert len(target.rows()) == 27


def test_empty_source_table(pair, sync):
    source, target = pair
    source.create_test_table([])
    result = sync({"mode": "full_refresh", "primary_key": "Id"})
    assert result.rows_written == 0 and result.target_rows == 0
    incremental = sync({"mode": "incremental", "primary_key": "Id", "update_key": "Id"})
    assert incremental.target_rows == 0


def test_dry_run_writes_nothing(pair, sync):
    source, target = pair
    source.create_test_table(_rows(5))
    result = sync({"mode": "full_refresh"}, RunOptions(dry_run=True))
    assert result.expected_rows == 5
    assert '"Order Items"' in result.source_sql
    assert target.query(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s", [target.schema])[0][0] == 0


def test_new_source_column_is_added_and_lossy_change_is_refused(pair, sync):
    source, target = pair
    source.create_test_table(_rows(5))
    options = {"mode": "incremental", "primary_key": "Id", "update_key": "Id"}
    sync(options)
    source.execute(f'ALTER TABLE {source.qualified()} ADD COLUMN "Extra Col" integer')
    source.execute(f'INSERT INTO {source.qualified()} ("Id", "Extra Col") VALUES (6, 42)')
    result = sync(options)
    assert result.columns_added == ["Extra Col"]
    assert target.query(f'SELECT "Extra Col" FROM {target.qualified()} WHERE "Id" = 6')[0][0] == 42
    source.execute(f'ALTER TABLE {source.qualified()} DROP COLUMN "select"')
    source.execute(f'ALTER TABLE {source.qualified()} ADD COLUMN "select" varchar(10)')
    source.execute(f'INSERT INTO {source.qualified()} ("Id", "select") VALUES (7, %s)', ["x"])
    with pytest.raises(SchemaMismatchError, match=r"column 'select'"):
        sync(options)


def test_duplicate_keys_are_refused_with_the_key_named(pair, sync):
    source, target = pair
    source.create_test_table([])
    source.execute(f'CREATE TABLE {source.qualified("dupes")} ("k" integer, "v" text)')
    source.execute(f'INSERT INTO {source.qualified("dupes")} VALUES (1, %s), (2, %s), (2, %s)', ["a", "b", "c"])
    with pytest.raises(DataError, match=r"dupes.*primary key \(k\).*k=2 \(2 rows\)"):
        sync({"mode": "full_refresh", "primary_key": "k"}, stream="dupes")


def test_custom_sql_source_with_columns_and_where(pair, sync):
    source, target = pair
    source.create_test_table(_rows(20))
    query = f'SELECT "Id", "Name", price * 2 AS "double price" FROM {source.qualified()} WHERE "Id" > 5'
    result = sync({"sql": query, "object": f'"{target.schema}"."from query"', "primary_key": "Id",
                   "where": '"Id" <= 15'}, stream_name="eu_orders")
    assert result.rows_written == 10
    got = target.query(f'SELECT "Id", "double price" FROM {target.qualified("from query")} ORDER BY "Id"')
    expected = source.query(
        f'SELECT "Id", price * 2 FROM {source.qualified()} WHERE "Id" BETWEEN 6 AND 15 ORDER BY "Id"'
    )
    # PostgreSQL numeric without a declared precision has no exact DuckDB type: it lands as text
    assert [(i, Decimal(str(v))) for i, v in got] == expected


def test_unknown_key_column_is_named_at_plan_time(pair, sync):
    source, _ = pair
    source.create_test_table(_rows(2))
    with pytest.raises(ConfigError, match=r"column 'no_such' is not in source"):
        sync({"mode": "incremental", "primary_key": "no_such", "update_key": "Id"})


def test_decimals_at_their_edges_copy_exactly(pair, sync):
    """Scales that are not multiples of 4, integer parts that are multiples of 10^9, the widest
    values each precision allows, and negatives: decimal encoders have got each of these wrong."""
    source, target = pair
    numeric = "numeric" if source.kind == "postgres" else "DECIMAL"
    source.ensure_schema()
    source.execute(f'CREATE TABLE {source.qualified("money")} (k integer PRIMARY KEY, a {numeric}(18,6), '
                   f'b {numeric}(18,0), c {numeric}(12,2), d {numeric}(38,10), e {numeric}(5,5))')
    values = [
        (
            1,
            "5000000000.000001",
            "999999999999999999",
            "9999999999.99",
            "1234567890123456789012345678.0000000001",
            "0.99999",
        ),
        (2, "-999999999999.999999", "-1000000000", "-0.01", "-5000000000.0000000010", "-0.00001"),
        (3, "1000000000.1", "0", "0.00", "0.0000000000", "0.00000"),
        (4, None, None, None, None, None),
    ]
    source.execute(f'INSERT INTO {source.qualified("money")} VALUES (%s, %s, %s, %s, %s, %s)', values, many=True)
    sync({"mode": "full_refresh", "primary_key": "k"}, stream="money")
    query = 'SELECT k, a, b, c, d, e FROM {} ORDER BY k'
    assert target.query(query.format(target.qualified("money"))) == source.query(
        query.format(source.qualified("money"))
    )


@pytest.mark.parametrize("string_compression", [True, False])
def test_duckdb_string_compression_option_changes_storage_not_data(write_project, tmp_path, string_compression):
    import duckdb

    source_path, target_path = tmp_path / "src.duckdb", tmp_path / "wh.duckdb"
    with duckdb.connect(str(source_path)) as con:
        con.execute(
            "CREATE TABLE main.notes AS SELECT i AS id, 'category ' || (i % 7) || ' of a repetitive label' AS label "
            "FROM range(150000) t(i)"
        )
    project = write_project({
        "connections": {"src": {"kind": "duckdb", "role": "source", "options": {"path": str(source_path)}},
                        "wh": {"kind": "duckdb", "options": {"path": str(target_path),
                                                            "string_compression": string_compression}}},
        "source": "src", "target": "wh", "streams": {"main.notes": {"object": "copy.notes"}}})
    table = project.tables[0]
    assert sync_table(table, *connectors(project, table)).rows_written == 150000
    with duckdb.connect(str(target_path)) as con:
        assert con.execute("SELECT count(*), sum(hash(id, label)) FROM copy.notes").fetchone() == \
            con.execute(f"ATTACH '{source_path}' AS s (READ_ONLY); "
                        "SELECT count(*), sum(hash(id, label)) FROM s.main.notes").fetchone()
        methods = {row[0] for row in con.execute(
            "SELECT DISTINCT compression FROM pragma_storage_info('copy.notes') WHERE column_name = 'label' "
            "AND segment_type = 'VARCHAR'").fetchall()}
    assert ("DICT_FSST" in methods) == string_compression, methods
