"""Mirroring source deletes into a merged target: the key comparison, the soft-delete column and
the per-table run counter, all applied inside the write path's one transaction.

A run that checks for deletes streams the complete set of source keys (key columns only, Arrow
batches, the normal bulk path) into a keys staging table next to the target. Inside the apply
transaction, after the merge:

- ``hard``: ``DELETE`` the target rows whose key is not among the source keys;
- ``soft``: set ``_sync_deleted_at`` (added to the target once) on those rows, and clear it on
  rows whose key is back at the source.

Deletes are never inferred from an incremental extract: only the complete key set decides.
``_sync_delete_runs`` (one row per table, in the target table's schema) counts the runs since the
last check, so ``every: N`` survives restarts and advances only with a commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from sync_assets.config.names import TableName
from sync_assets.connectors.interface import DeletePlan, SqlTarget, WriteResult

SOFT_DELETE_COLUMN = "_sync_deleted_at"
"""The timestamp (UTC) a soft-deleting table sets on rows whose key left the source."""
SOFT_DELETE_FIELD = pa.field(SOFT_DELETE_COLUMN, pa.timestamp("us", tz="UTC"))
RUN_COUNTER_TABLE = "_sync_delete_runs"
RUN_COUNTER_SCHEMA = pa.schema([pa.field("table_name", pa.string()), pa.field("runs_since_check", pa.int64())])

_NOW_SQL = {"mssql": "SYSDATETIMEOFFSET()"}


def live_rows_condition(target: SqlTarget, target_schema: pa.Schema) -> str | None:
    """The condition selecting the target rows still at the source (None: nothing soft-deleted)."""
    if SOFT_DELETE_COLUMN not in target_schema.names:
        return None
    return f"{target.quote(SOFT_DELETE_COLUMN)} IS NULL"


def counter_table(table: TableName) -> TableName:
    return TableName(table.schema, RUN_COUNTER_TABLE)


def runs_since_check(target: SqlTarget, table: TableName) -> int:
    """Merge runs of ``table`` committed since its last delete check (0 when never counted)."""
    counter = counter_table(table)
    if target.table_schema(counter) is None:
        return 0
    rows = target.fetch(
        f"SELECT runs_since_check FROM {target.qualified(counter)} WHERE table_name = {target.placeholder(1)}",
        (table.name,),
    )
    return int(rows[0][0]) if rows else 0


def prepare_sql(target: SqlTarget, table: TableName, existing: pa.Schema | None) -> list[str]:
    """Statements run before the load: the run counter table, when the target schema lacks it."""
    counter = counter_table(table)
    if target.table_schema(counter) is not None:
        return []
    return [target.create_table_sql(counter, RUN_COUNTER_SCHEMA, [target.ddl_type(f) for f in RUN_COUNTER_SCHEMA])]


def apply(target: SqlTarget, conn: Any, table: TableName, plan: DeletePlan, keys: TableName | None,
          key: Sequence[str], existing: pa.Schema | None, result: WriteResult) -> None:
    """Inside the apply transaction, after the merge: delete or mark the rows whose key is not in
    ``keys`` (the complete source key set, when this run checks), and count the run."""
    if plan.check_now and keys is not None:
        qualified = target.qualified(table)
        match = " AND ".join(f"{qualified}.{target.quote(k)} = k.{target.quote(k)}" for k in key)
        present = f"EXISTS (SELECT 1 FROM {target.qualified(keys)} AS k WHERE {match})"
        if plan.detect == "hard":
            delete = f"DELETE FROM {qualified} WHERE NOT {present}"
            (result.rows_deleted,) = _run_counted(target, conn, [delete], result)
        else:
            if existing is None or SOFT_DELETE_COLUMN not in existing.names:
                _run_counted(target, conn, [target.add_column_sql(
                    table, SOFT_DELETE_COLUMN, target.ddl_type(SOFT_DELETE_FIELD))], result)
            column = target.quote(SOFT_DELETE_COLUMN)
            result.rows_soft_deleted, result.rows_restored = _run_counted(target, conn, [
                f"UPDATE {qualified} SET {column} = {_NOW_SQL.get(target.kind, 'CURRENT_TIMESTAMP')} "
                f"WHERE {column} IS NULL AND NOT {present}",
                f"UPDATE {qualified} SET {column} = NULL WHERE {column} IS NOT NULL AND {present}",
            ], result)
        result.deletes_checked = True
    _count_run(target, conn, table, result)


def _run_counted(target: SqlTarget, conn: Any, statements: Sequence[str], result: WriteResult) -> list[int]:
    counts = []
    for sql in statements:
        counts.append(max(target.execute(conn, sql), 0))
        result.statements.append(sql)
    return counts


def _count_run(target: SqlTarget, conn: Any, table: TableName, result: WriteResult) -> None:
    counter = target.qualified(counter_table(table))
    rows = target.fetch_on(
        conn, f"SELECT runs_since_check FROM {counter} WHERE table_name = {target.placeholder(1)}", (table.name,))
    runs = 0 if result.deletes_checked else (int(rows[0][0]) if rows else 0) + 1
    target.execute(conn, f"DELETE FROM {counter} WHERE table_name = {target.placeholder(1)}", (table.name,))
    target.execute(conn, f"INSERT INTO {counter} (table_name, runs_since_check) "
                         f"VALUES ({target.placeholder(1)}, {target.placeholder(2)})", (table.name, runs))
