"""The ``hash_delta`` apply: classify every staged row against the target by a stored row hash
and write only inserts, updates and deletes, in one transaction.

The target keeps one extra column, ``_sync_row_hash``: ``v1:`` and the lowercase hex MD5 of the
row's canonical text (the non-key columns, in the stream's column order). Canonical text, version
1: each column as ``<length>:<text>`` (``N`` for NULL, so NULL and the empty string differ, and no
value can fake a column boundary), concatenated; ``<text>`` is the database's own text form of the
value under pinned session settings (UTC time zone, ISO dates, shortest round-trip floats, hex
bytes), so a setting of the user's session cannot change a hash. The version prefix is part of the
stored value: a future canonical form never matches an old hash, so its first run rewrites every
row once instead of skipping a changed one.

Inside the transaction: delete the target rows whose key is not staged, update the rows whose
stored hash differs from the staged row's, insert the staged rows whose key is new; the staged rows
left are unchanged and are not written. PostgreSQL and DuckDB run it (tested); SQL Server gets the
same statements in T-SQL (``HASHBYTES('MD5', ...)`` over its own text forms; parsed in CI).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from sync_assets.config.names import TableName
from sync_assets.connectors.interface import SqlTarget, WriteResult
from sync_assets.types.canonical import engine_text_sql, md5_hex_sql, row_text_sql

ROW_HASH_COLUMN = "_sync_row_hash"
ROW_HASH_FIELD = pa.field(ROW_HASH_COLUMN, pa.string())
ROW_HASH_VERSION = 1
"""The form of the stored hash (the ``v1:`` prefix); a new form changes it, and then every row once."""

_PINNED_SETTINGS = {
    "postgres": ["SET LOCAL TimeZone = 'UTC'", "SET LOCAL DateStyle = 'ISO, YMD'",
                 "SET LOCAL IntervalStyle = 'iso_8601'", "SET LOCAL extra_float_digits = 1",
                 "SET LOCAL bytea_output = 'hex'"],
    "duckdb": ["SET TimeZone = 'UTC'"],
    "mssql": [],
}


def row_hash_sql(kind: str, values: Sequence[str]) -> str:
    """The SQL expression of a row's stored hash: ``v1:`` + MD5 hex of the canonical row text of
    ``values`` (SQL expressions of the non-key columns as the target stores them), each in the
    engine's own text form under the pinned settings."""
    text = row_text_sql(kind, [engine_text_sql(kind, v) for v in values])
    concat = " + " if kind == "mssql" else " || "
    return f"'v{ROW_HASH_VERSION}:'{concat}{md5_hex_sql(kind, text)}"


def statements(target: SqlTarget, table: TableName, staging: TableName, columns: Sequence[str],
               key: Sequence[str], casts: dict[str, str]) -> tuple[str, str, str]:
    """(delete, update, insert): the three set-based statements of one hash-delta apply."""
    q, t, s = target.quote, target.qualified(table), target.qualified(staging)
    data = [c for c in columns if c not in key]
    hash_column = q(ROW_HASH_COLUMN)

    def value(column: str) -> str:
        """The staged column as the target stores it (cast where the staging type differs)."""
        return target.cast_expression(column, casts[column], "s") if column in casts else f"s.{q(column)}"

    staged_hash = row_hash_sql(target.kind, [value(c) for c in data])
    staged_key_match = " AND ".join(f"s.{q(k)} = {t}.{q(k)}" for k in key)
    delete = f"DELETE FROM {t} WHERE NOT EXISTS (SELECT 1 FROM {s} AS s WHERE {staged_key_match})"
    changed = [*data, ROW_HASH_COLUMN]
    values = [*(value(c) for c in data), "s.h"]
    staged = f"(SELECT s.*, {staged_hash} AS h FROM {s} AS s)"
    if target.kind == "mssql":
        match = " AND ".join(f"s.{q(k)} = tt.{q(k)}" for k in key)
        update = ("UPDATE tt SET " + ", ".join(f"{q(c)} = {v}" for c, v in zip(changed, values, strict=True))
                  + f" FROM {t} AS tt INNER JOIN {staged} AS s ON {match} "
                  f"WHERE tt.{hash_column} IS NULL OR tt.{hash_column} <> s.h")
    else:
        update = (f"UPDATE {t} SET " + ", ".join(f"{q(c)} = {v}" for c, v in zip(changed, values, strict=True))
                  + f" FROM {staged} AS s WHERE {staged_key_match} AND {t}.{hash_column} IS DISTINCT FROM s.h")
    insert_columns = ", ".join(q(c) for c in [*columns, ROW_HASH_COLUMN])
    insert = (f"INSERT INTO {t} ({insert_columns}) SELECT "
              + ", ".join([*(value(c) for c in columns), staged_hash])
              + f" FROM {s} AS s WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {staged_key_match})")
    return delete, update, insert


def create_sql(target: SqlTarget, table: TableName, columns: Sequence[str], key: Sequence[str],
               target_types: dict[str, str]) -> list[str]:
    """A new target: the source's columns, the hash column and the primary key."""
    schema = pa.schema([*(pa.field(c, pa.null()) for c in columns), ROW_HASH_FIELD])
    types = [*(target_types[c] for c in columns), target.ddl_type(ROW_HASH_FIELD)]
    return [target.create_table_sql(table, schema, types), *target.add_primary_key_sql(table, key, table.name),
            *target.after_swap_sql(table, key)]


def apply(target: SqlTarget, conn: Any, table: TableName, staging: TableName, columns: Sequence[str],
          key: Sequence[str], casts: dict[str, str], target_types: dict[str, str], existing: pa.Schema | None,
          staged_rows: int, result: WriteResult) -> None:
    """Inside the apply transaction: pin the session's text forms, add the hash column to a
    target that lacks it, then delete, update and insert; counts from the statements themselves."""
    prepare = list(_PINNED_SETTINGS.get(target.kind, []))
    if existing is None:
        prepare += create_sql(target, table, columns, key, target_types)
    elif ROW_HASH_COLUMN not in existing.names:
        prepare.append(target.add_column_sql(table, ROW_HASH_COLUMN, target.ddl_type(ROW_HASH_FIELD)))
    for sql in prepare:
        target.execute(conn, sql)
        result.statements.append(sql)
    counts = []
    for sql in statements(target, table, staging, columns, key, casts):
        counts.append(max(target.execute(conn, sql), 0))
        result.statements.append(sql)
    result.rows_deleted, result.rows_updated, result.rows_inserted = counts
    result.rows_unchanged = staged_rows - result.rows_updated - result.rows_inserted
