"""Target row counts kept by the sync, so that a run never counts a whole target table.

``_sync_row_counts`` (one row per table, in the target table's schema) holds the number of rows
in the table as of its last committed write. It is written in the apply transaction, so it
commits or rolls back with the rows: a replace records the count its swap took of the new table;
a merge, append, window overwrite or ``hash_delta`` adds the rows it inserted and subtracts the
rows it deleted. A table that has no entry yet (synced by an earlier version, or created by hand)
is counted once, inside that transaction. This is what ``dagster/row_count`` reports.

A change made to the target by anything but the sync is not seen until the table's next full
load; the ``row_count_parity`` check, executed on its own, counts the target itself.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from sync_assets.config.names import TableName
from sync_assets.connectors.interface import SqlTarget, WriteResult

ROW_COUNT_TABLE = "_sync_row_counts"
ROW_COUNT_SCHEMA = pa.schema([pa.field("table_name", pa.string()), pa.field("row_count", pa.int64())])


def counts_table(table: TableName) -> TableName:
    return TableName(table.schema, ROW_COUNT_TABLE)


def prepare_sql(target: SqlTarget, table: TableName) -> list[str]:
    """Statements run before the load: the counts table, when the target schema lacks it."""
    if target.table_schema(counts_table(table)) is not None:
        return []
    return [target.create_table_sql(counts_table(table), ROW_COUNT_SCHEMA,
                                    [target.ddl_type(f) for f in ROW_COUNT_SCHEMA])]


def record(target: SqlTarget, conn: Any, table: TableName, result: WriteResult, rebuilt: bool) -> int:
    """Inside the apply transaction: the table's row count after this write, stored for the next.
    ``rebuilt``: the write built the table anew and ``result.rows_inserted`` counted it."""
    counts = target.qualified(counts_table(table))
    where = f"WHERE table_name = {target.placeholder(1)}"
    if rebuilt:
        rows = result.rows_inserted
    else:
        kept = target.fetch_on(conn, f"SELECT row_count FROM {counts} {where}", (table.name,))
        rows = (int(kept[0][0]) + result.rows_inserted - result.rows_deleted if kept
                else target.count_rows(conn, table))
    target.execute(conn, f"DELETE FROM {counts} {where}", (table.name,))
    target.execute(conn, f"INSERT INTO {counts} (table_name, row_count) "
                         f"VALUES ({target.placeholder(1)}, {target.placeholder(2)})", (table.name, rows))
    return rows
