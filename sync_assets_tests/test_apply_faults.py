"""Faults inside the one apply transaction: the target stays exactly as it was (rows, column
types, constraints), no staging table stays behind, and the next run converges.

``test_faults`` breaks the source stream while it is loaded into staging, before the apply
starts. These tests let the load finish and break one statement of the apply itself, after an
earlier statement of the same transaction has already changed the target:

- full refresh (and ``smart``'s full load into an existing, empty target): the RENAME of
  staging into the target's name, after the old target was dropped;
- merge (``incremental`` and ``smart``): the upsert, after a new source column was added to the
  target (and, on DuckDB, after the DELETE of the matched keys);
- ``date_partitioned``: the INSERT of the window's rows, after the DELETE of the window.

On PostgreSQL the fault comes from the database: an event trigger on the RENAME (event triggers
are database-wide: it fires only for the test's own schema and is dropped afterwards; dropping
the schema would drop it too), or a trigger on the target table. DuckDB has no triggers, so the
target connector's ``execute`` is patched to raise on exactly that one statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sync_assets.config.names import TableName
from sync_assets.sync.engine import sync_table
from sync_assets.sync.planning import RunOptions
from sync_assets_tests.conftest import connectors
from sync_assets_tests.engines import BASE_TIME, TABLE, Side, make_row
from sync_assets_tests.test_modes import pair  # noqa: F401  (fixture)


class InjectedFault(RuntimeError):
    pass


def snapshot(side: Side, table: str = TABLE) -> tuple[list, list, list]:
    """Everything a failed run must leave as it was: column names, exact types and nullability,
    constraints (PostgreSQL) and every row in every column."""
    qualified = side.qualified(table)
    if side.kind == "postgres":
        columns = side.query(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum", [qualified])
        constraints = side.query(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass(%s) "
            "ORDER BY conname", [qualified])
    else:
        columns = side.query(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", [side.schema, table])
        constraints = []
    assert columns, f"{qualified} does not exist"
    return columns, constraints, side.query(f'SELECT * FROM {qualified} ORDER BY "Id"')


class Faults:
    """Makes one statement of the target's apply transaction fail; each method is a context
    manager yielding the text the run's error must contain, and removes the fault on exit."""

    def __init__(self, target: Side, connector, pg: psycopg.Connection, monkeypatch):
        self.side, self.connector, self.pg, self.monkeypatch = target, connector, pg, monkeypatch
        self.function = f'"{target.schema}".sync_fault'

    @contextlib.contextmanager
    def rename_into_target(self) -> Iterator[str]:
        """The swap's RENAME of staging to the target's name (the old target is dropped by then)."""
        if self.side.kind == "duckdb":
            target = self.connector.quote(TABLE)
            with self._duckdb_statement(lambda sql: sql.startswith("ALTER TABLE") and " RENAME TO " in sql
                                        and sql.endswith(target),
                                        before=self.connector.drop_table_sql(self._table())):
                yield "injected fault"
            return
        trigger = f"sync_fault_{self.side.schema}"
        target = "'" + self.side.qualified().replace("'", "''") + "'"
        self.pg.execute(f"""
            CREATE FUNCTION {self.function}() RETURNS event_trigger LANGUAGE plpgsql AS $$
            DECLARE command record;
            BEGIN
                FOR command IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
                    IF command.schema_name = '{self.side.schema}' AND command.object_type = 'table'
                       AND command.objid = to_regclass({target}) THEN
                        RAISE EXCEPTION 'injected fault: % renamed into place after the old table was dropped',
                            command.object_identity;
                    END IF;
                END LOOP;
            END $$""")
        self.pg.execute(f'CREATE EVENT TRIGGER "{trigger}" ON ddl_command_end WHEN TAG IN (\'ALTER TABLE\') '
                        f"EXECUTE FUNCTION {self.function}()")
        try:
            yield "renamed into place after the old table was dropped"
        finally:
            self.pg.execute(f'DROP EVENT TRIGGER IF EXISTS "{trigger}"')
            self.pg.execute(f"DROP FUNCTION {self.function}()")

    @contextlib.contextmanager
    def merge_row(self, key: int) -> Iterator[str]:
        """The merge's write of the row with ``"Id" = key`` (DuckDB: its INSERT, after the DELETE)."""
        if self.side.kind == "duckdb":
            with self._insert_into_target(before=f"DELETE FROM {self.connector.qualified(self._table())}"):
                yield "injected fault"
            return
        with self._row_trigger(f"""IF NEW."Id" = {int(key)} THEN
                                       RAISE EXCEPTION 'injected fault: merging row %', NEW."Id";
                                   END IF;""", "BEFORE INSERT OR UPDATE", "FOR EACH ROW"):
            yield f"injected fault: merging row {key}"

    @contextlib.contextmanager
    def window_insert(self, window_predicate: str) -> Iterator[str]:
        """The partition overwrite's INSERT; the PostgreSQL trigger reports how many rows of the
        window the DELETE before it left (0: the window was emptied inside the transaction)."""
        if self.side.kind == "duckdb":
            with self._insert_into_target(before=f"DELETE FROM {self.connector.qualified(self._table())}"):
                yield "injected fault"
            return
        with self._row_trigger(f"""RAISE EXCEPTION 'injected fault: inserting the window, % of its rows left',
                                       (SELECT count(*) FROM {self.side.qualified()} WHERE {window_predicate});""",
                               "BEFORE INSERT", "FOR EACH STATEMENT"):
            yield "injected fault: inserting the window, 0 of its rows left"

    # -- helpers ---------------------------------------------------------------------------
    def _table(self) -> TableName:
        return TableName(self.side.schema, TABLE)

    @contextlib.contextmanager
    def _row_trigger(self, body: str, timing: str, level: str) -> Iterator[None]:
        self.pg.execute(f"""
            CREATE FUNCTION {self.function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {body} RETURN NEW; END $$;
            CREATE TRIGGER sync_fault {timing} ON {self.side.qualified()} {level} EXECUTE FUNCTION {self.function}();
        """)
        try:
            yield
        finally:
            self.pg.execute(f"DROP TRIGGER IF EXISTS sync_fault ON {self.side.qualified()}")
            self.pg.execute(f"DROP FUNCTION {self.function}()")

    @contextlib.contextmanager
    def _insert_into_target(self, before: str) -> Iterator[None]:
        insert = f"INSERT INTO {self.connector.qualified(self._table())} "
        with self._duckdb_statement(lambda sql: sql.startswith(insert), before=before):
            yield

    @contextlib.contextmanager
    def _duckdb_statement(self, matches, before: str) -> Iterator[None]:
        """Make the first statement that ``matches`` raise; the statement starting with ``before``
        must have run earlier in the same apply (so the fault really comes between the two)."""
        real, executed = self.connector.execute, []

        def execute(conn, sql, params=()):
            if matches(sql):
                assert any(done.startswith(before) for done in executed), (before, executed)
                raise InjectedFault(f"injected fault at: {sql[:80]}")
            executed.append(sql)
            return real(conn, sql, params)

        self.monkeypatch.setattr(self.connector, "execute", execute)
        try:
            yield
        finally:
            self.monkeypatch.setattr(self.connector, "execute", real)


@pytest.fixture
def sync_with_faults(pair, write_project, pg, monkeypatch):  # noqa: F811
    """``make(options)`` -> (run, faults): ``run(run_options)`` syncs the test table with ``options``
    through one pair of real connectors, and ``faults`` breaks that target connector's apply."""
    source, target = pair

    def make(options: dict):
        project = write_project({
            "connections": {"src": source.connection_spec("source"), "tgt": target.connection_spec("target")},
            "source": "src", "target": "tgt",
            "defaults": {"object": f'"{target.schema}"."{{stream_table}}"'},
            "streams": {f'"{source.schema}"."{TABLE}"': options},
        })
        table = project.tables[0]
        source_connector, target_connector = connectors(project, table)
        target.ensure_schema()

        def run(run_options: RunOptions = RunOptions()):
            return sync_table(table, source_connector, target_connector, run_options)

        return run, Faults(target, target_connector, pg, monkeypatch)

    return make


def _fails_and_leaves_target_as_it_was(target: Side, run, fault, run_options: RunOptions = RunOptions()) -> None:
    before = snapshot(target)
    with fault as expected, pytest.raises(Exception, match=expected):
        run(run_options)
    assert snapshot(target) == before
    assert target.staging_tables() == []


def _change_source(source: Side, ids: range, new_ids: range) -> None:
    """Add a column (the next run must evolve the target), update ``ids`` and insert ``new_ids``."""
    later = BASE_TIME + timedelta(days=2)
    source.execute(f'ALTER TABLE {source.qualified()} ADD COLUMN "Extra" integer')
    source.execute(f'UPDATE {source.qualified()} SET "Name" = %s, "updatedAt" = %s, "Extra" = "Id" * 10 '
                   f'WHERE "Id" BETWEEN %s AND %s', ["changed", later, ids.start, ids.stop - 1])
    source.insert([make_row(i, updated=later) for i in new_ids])
    source.execute(f'UPDATE {source.qualified()} SET "Extra" = "Id" * 10 WHERE "Id" >= %s', [new_ids.start])


def _converged(source: Side, target: Side) -> None:
    assert target.rows() == source.rows()
    extra = 'SELECT "Id", "Extra" FROM {} ORDER BY "Id"'
    assert target.query(extra.format(target.qualified())) == source.query(extra.format(source.qualified()))
    assert target.staging_tables() == []


@pytest.mark.parametrize("mode", ["full_refresh", "smart"])
def test_fault_between_the_swaps_drop_and_rename(pair, sync_with_faults, mode):  # noqa: F811
    """full_refresh replaces a loaded target; smart makes its full load into an existing empty
    target (a swap too). Either way the RENAME after the DROP fails, and the DROP is undone."""
    source, target = pair
    options = {"mode": mode, "primary_key": "Id", "update_key": "updatedAt"}
    run, faults = sync_with_faults(options)
    source.create_test_table([make_row(i) for i in range(1, 41)] if mode == "full_refresh" else [])
    run()
    if mode == "smart":
        assert snapshot(target)[2] == []  # the target exists and is empty: the next run is a full load
        source.insert([make_row(i) for i in range(1, 41)])
    else:
        source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" IN (3, 4)')
    _change_source(source, range(10, 20), range(41, 61))

    _fails_and_leaves_target_as_it_was(target, run, faults.rename_into_target())

    result = run()
    assert result.plan.strategy == "full_refresh"
    _converged(source, target)


@pytest.mark.parametrize("mode", ["incremental", "smart"])
def test_fault_during_the_merge(pair, sync_with_faults, mode):  # noqa: F811
    """The merge fails after the new column was added to the target (and, on DuckDB, after the
    matched keys were deleted): the column and the deletes are rolled back with it."""
    source, target = pair
    options = {"mode": mode, "primary_key": "Id", "update_key": "updatedAt"}
    run, faults = sync_with_faults(options)
    source.create_test_table([make_row(i) for i in range(1, 41)])
    run()
    _change_source(source, range(10, 20), range(41, 61))

    _fails_and_leaves_target_as_it_was(target, run, faults.merge_row(55))

    result = run()
    assert result.plan.strategy == "incremental" and result.columns_added == ["Extra"]
    _converged(source, target)


def test_fault_during_a_partition_overwrite(pair, sync_with_faults):  # noqa: F811
    """date_partitioned: the window's INSERT fails after its DELETE; the window's rows come back."""
    source, target = pair
    options = {"mode": "date_partitioned", "primary_key": "Id",
               "partition": {"column": "d", "start": "2024-01-01", "granularity": "daily"}}
    run, faults = sync_with_faults(options)
    source.create_test_table([make_row(i) for i in range(1, 57)])  # d = 2024-01-01 .. 2024-01-28, two rows each
    month = RunOptions(partition_window=(datetime(2024, 1, 1, tzinfo=UTC),
                                         datetime(2024, 2, 1, tzinfo=UTC)))
    run(month)
    week = RunOptions(partition_window=(datetime(2024, 1, 8, tzinfo=UTC),
                                        datetime(2024, 1, 15, tzinfo=UTC)))
    in_week = "d >= DATE '2024-01-08' AND d < DATE '2024-01-15'"
    source.execute(f'UPDATE {source.qualified()} SET "Name" = %s WHERE {in_week}', ["changed"])
    source.execute(f'DELETE FROM {source.qualified()} WHERE d = DATE \'2024-01-09\'')
    source.insert([make_row(i) for i in range(113, 120)])  # d = 2024-01-02 .. 2024-01-08: one in the week
    assert target.query(f"SELECT count(*) FROM {target.qualified()} WHERE {in_week}")[0][0] == 14

    _fails_and_leaves_target_as_it_was(target, run, faults.window_insert(in_week), week)

    result = run(week)
    assert result.rows_deleted == 14 and result.rows_written == 13
    query = f'SELECT "Id", "Name" FROM {{}} WHERE {in_week} ORDER BY "Id"'
    assert target.query(query.format(target.qualified())) == source.query(query.format(source.qualified()))
    outside = f'SELECT count(*) FROM {{}} WHERE NOT ({in_week})'
    assert target.query(outside.format(target.qualified()))[0][0] == 42  # 113..118, outside the week, not read
    assert target.staging_tables() == []
