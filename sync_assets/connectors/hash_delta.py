"""The ``hash_delta`` mode: the source hashes its rows, the target compares the hashes with the
ones it stored, and only the changed rows travel and are written, in one transaction.

1. The source computes, inside its own database, every row's key and hash
   (``hashes_sql``: ``v2:`` and the MD5 of the row's canonical text, ``types.canonical``, over the
   non-key columns in the stream's order); those narrow rows stream into a hashes staging table
   next to the target (the normal bulk path).
2. The target counts the keys whose hash differs from its stored ``_sync_row_hash`` (or that it
   lacks). Up to ``DELTA_KEYS_LIMIT`` of them, just those rows are read from the source, by key;
   beyond it (a first run, a full refresh before, a new hash version) the whole source is staged,
   and the new table is built from it and swapped in (``rewrite``), as a full refresh does.
3. One transaction: delete the target rows whose key is not among the hashes, update the rows
   whose stored hash differs, insert the new keys, each written row with its source hash. The
   rows left are unchanged and are not written.

The hash is the source's, so the target never computes one, and it is defined here (canonical
text, MD5), not an engine's internal hash; its version is part of the stored value, so a future
form never matches an old hash: its first run rewrites every row once instead of skipping a
changed one. A row that changes between the hashing and its read is stored with the older hash,
so the next run reads it again: a race costs a re-read, never a missed change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sync_assets.config.names import TableName
from sync_assets.connectors.interface import SqlTarget, WriteResult
from sync_assets.connectors.locking import TYPED_STAGE_SUFFIX
from sync_assets.errors import DataError
from sync_assets.types.canonical import md5_hex_sql, row_text_sql, value_text_sql

ROW_HASH_COLUMN = "_sync_row_hash"
ROW_HASH_FIELD = pa.field(ROW_HASH_COLUMN, pa.string())
ROW_HASH_VERSION = 2
"""The form of the stored hash (its ``v2:`` prefix): 1 hashed the target's own text of the row,
2 the source's canonical text."""
REPLACES_CHANGED_ROWS = {"duckdb"}
"""Engines whose apply deletes and re-inserts the changed rows instead of updating them: DuckDB's
UPDATE of 20,000 scattered rows of a 2 M-row keyed table took 56 s here, its delete and insert
0.23 s."""
DELTA_KEYS_LIMIT = 50_000
"""Read at most this many changed rows by key; more, and the whole source is staged instead."""


@dataclass(frozen=True)
class DeltaHashes:
    """The source's row hashes of one run, staged next to the target."""

    table: TableName
    rows: int
    """Source rows hashed."""
    by_key: bool
    """Only the changed rows were read (by key); else the whole source was staged."""


def hashes_sql(source: Any, relation: str, where: str, key: Sequence[str],
               columns: Sequence[tuple[str, pa.DataType]]) -> str:
    """The source query of every key and row hash: ``relation`` (a qualified table, or a query
    in parentheses with an alias) with ``where`` (`` WHERE ...`` or empty); ``columns``: the
    stream's (name, Arrow type) pairs, key included."""
    kind, quote = source.kind, source.quote
    data = [(name, type_) for name, type_ in columns if name not in key]
    text = row_text_sql(kind, [value_text_sql(kind, quote(name), type_) for name, type_ in data],
                        [type_ for _, type_ in data])
    concat = " + " if kind == "mssql" else " || "
    keys = ", ".join(quote(k) for k in key)
    return (f"SELECT {keys}, 'v{ROW_HASH_VERSION}:'{concat}{md5_hex_sql(kind, text)} AS {quote(ROW_HASH_COLUMN)} "
            f"FROM {relation}{where}")


def changed_keys_sql(target: SqlTarget, table: TableName, hashes: TableName, key: Sequence[str],
                     count: bool) -> str:
    """The keys among ``hashes`` whose row the target lacks or stores with another hash (or
    their number, ``count``: a LIMIT would turn the hash anti-join into index probes per key)."""
    q, t, h = target.quote, target.qualified(table), target.qualified(hashes)
    same = " AND ".join(f"tt.{q(k)} = h.{q(k)}" for k in key)
    listed = "COUNT(*)" if count else ", ".join(f"h.{q(k)}" for k in key)
    return (f"SELECT {listed} FROM {h} AS h WHERE NOT EXISTS (SELECT 1 FROM {t} AS tt WHERE {same} "
            f"AND tt.{q(ROW_HASH_COLUMN)} = h.{q(ROW_HASH_COLUMN)})")


def statements(target: SqlTarget, table: TableName, staging: TableName, hashes: TableName, columns: Sequence[str],
               key: Sequence[str], casts: dict[str, str]) -> tuple[str, str, str]:
    """(delete, update, insert): the three set-based statements of one hash-delta apply (on an
    engine in ``REPLACES_CHANGED_ROWS``, "update" deletes the changed rows and the insert puts
    them back with the new ones)."""
    q, t, s, h = target.quote, target.qualified(table), target.qualified(staging), target.qualified(hashes)
    data = [c for c in columns if c not in key]
    hash_column = q(ROW_HASH_COLUMN)

    def value(column: str) -> str:
        """The staged column as the target stores it (cast where the staging type differs)."""
        return target.cast_expression(column, casts[column], "s") if column in casts else f"s.{q(column)}"

    hashed = f"{s} AS s INNER JOIN {h} AS h ON " + " AND ".join(f"h.{q(k)} = s.{q(k)}" for k in key)
    delete = (f"DELETE FROM {t} WHERE NOT EXISTS (SELECT 1 FROM {h} AS h WHERE "
              + " AND ".join(f"h.{q(k)} = {t}.{q(k)}" for k in key) + ")")
    assignments = ", ".join([*(f"{q(c)} = {value(c)}" for c in data), f"{hash_column} = h.{hash_column}"])
    if target.kind in REPLACES_CHANGED_ROWS:
        match = " AND ".join(f"s.{q(k)} = {t}.{q(k)}" for k in key)
        update = (f"DELETE FROM {t} WHERE EXISTS (SELECT 1 FROM {hashed} WHERE {match} "
                  f"AND {t}.{hash_column} IS DISTINCT FROM h.{hash_column})")
    elif target.kind == "mssql":
        match = " AND ".join(f"s.{q(k)} = tt.{q(k)}" for k in key)
        update = (f"UPDATE tt SET {assignments} FROM {t} AS tt INNER JOIN {hashed} ON {match} "
                  f"WHERE tt.{hash_column} IS NULL OR tt.{hash_column} <> h.{hash_column}")
    else:
        match = " AND ".join(f"s.{q(k)} = {t}.{q(k)}" for k in key)
        update = (f"UPDATE {t} SET {assignments} FROM {hashed} WHERE {match} "
                  f"AND {t}.{hash_column} IS DISTINCT FROM h.{hash_column}")
    insert_columns = ", ".join(q(c) for c in [*columns, ROW_HASH_COLUMN])
    insert = (f"INSERT INTO {t} ({insert_columns}) SELECT "
              + ", ".join([*(value(c) for c in columns), f"h.{hash_column}"])
              + f" FROM {hashed} WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE "
              + " AND ".join(f"{t}.{q(k)} = s.{q(k)}" for k in key) + ")")
    return delete, update, insert


def create_sql(target: SqlTarget, table: TableName, columns: Sequence[str], key: Sequence[str],
               target_types: dict[str, str]) -> list[str]:
    """A new target: the source's columns, the hash column and the primary key."""
    schema = pa.schema([*(pa.field(c, pa.null()) for c in columns), ROW_HASH_FIELD])
    types = [*(target_types[c] for c in columns), target.ddl_type(ROW_HASH_FIELD)]
    return [target.create_table_sql(table, schema, types), *target.add_primary_key_sql(table, key, table.name),
            *target.after_swap_sql(table, key)]


def rewrite(target: SqlTarget, conn: Any, table: TableName, staging: TableName, hashes: TableName,
            columns: Sequence[str], key: Sequence[str], casts: dict[str, str], target_types: dict[str, str],
            existing: pa.Schema, staged_rows: int, result: WriteResult) -> None:
    """Inside the apply transaction, when the whole source was staged into an existing target
    (it held no hashes, an older hash version, or too many rows changed): count what changed,
    then build the new table from staging with the source hashes and swap it in, as a full
    refresh does. Updating or deleting and re-inserting every row in place would take far longer,
    and DuckDB runs out of its default 64 MB memory doing it for 2 M rows."""
    q, t, s, h = target.quote, target.qualified(table), target.qualified(staging), target.qualified(hashes)
    on_key = " AND ".join(f"h.{q(k)} = s.{q(k)}" for k in key)
    at_target = " AND ".join(f"tt.{q(k)} = s.{q(k)}" for k in key)
    gone = " AND ".join(f"h.{q(k)} = tt.{q(k)}" for k in key)
    counts = [f"SELECT COUNT(*) FROM {t} AS tt WHERE NOT EXISTS (SELECT 1 FROM {h} AS h WHERE {gone})",
              f"SELECT COUNT(*) FROM {s} AS s WHERE EXISTS (SELECT 1 FROM {t} AS tt WHERE {at_target})"]
    if ROW_HASH_COLUMN in existing.names:
        counts.append(f"SELECT COUNT(*) FROM {s} AS s INNER JOIN {h} AS h ON {on_key} WHERE EXISTS (SELECT 1 FROM "
                      f"{t} AS tt WHERE {at_target} AND tt.{q(ROW_HASH_COLUMN)} = h.{q(ROW_HASH_COLUMN)})")
    deleted, matched, *same = (int(target.fetch_on(conn, sql)[0][0]) for sql in counts)
    unchanged = same[0] if same else 0
    rebuilt = TableName(staging.schema, staging.name + TYPED_STAGE_SUFFIX)
    schema = pa.schema([*(pa.field(c, pa.null()) for c in columns), ROW_HASH_FIELD])
    values = [target.cast_expression(c, casts[c], "s") if c in casts else f"s.{q(c)}" for c in columns]
    insert = (f"INSERT INTO {target.qualified(rebuilt)} SELECT {', '.join(values)}, h.{q(ROW_HASH_COLUMN)} "
              f"FROM {s} AS s LEFT JOIN {h} AS h ON {on_key}")  # a row new since the hashing: hashed next run
    target.execute(conn, target.drop_table_sql(rebuilt))
    target.execute(conn, target.create_table_sql(rebuilt, schema, [*(target_types[c] for c in columns),
                                                                   target.ddl_type(ROW_HASH_FIELD)]))
    written = target.execute(conn, insert)
    if written >= 0 and written != staged_rows:
        raise DataError(f"table {table}: the rebuilt table holds {written:,} rows but {staged_rows:,} were staged; "
                        "the transaction was rolled back and the target is unchanged")
    swap = target.swap_in_sql(rebuilt, table, key, replaces=True)
    for sql in swap:
        target.execute(conn, sql)
    result.statements += [insert, *swap]
    result.rows_deleted, result.rows_unchanged = deleted, unchanged
    result.rows_updated, result.rows_inserted = matched - unchanged, staged_rows - matched


def apply(target: SqlTarget, conn: Any, table: TableName, staging: TableName, hashes: TableName,
          columns: Sequence[str], key: Sequence[str], casts: dict[str, str], target_types: dict[str, str],
          existing: pa.Schema | None, source_rows: int, result: WriteResult) -> None:
    """Inside the apply transaction: create the target or add its hash column if it lacks it,
    then delete, update and insert; counts from the statements themselves (``source_rows``: the
    rows the source hashed)."""
    prepare = []
    if existing is None:
        prepare += create_sql(target, table, columns, key, target_types)
    elif ROW_HASH_COLUMN not in existing.names:
        prepare.append(target.add_column_sql(table, ROW_HASH_COLUMN, target.ddl_type(ROW_HASH_FIELD)))
    for sql in prepare:
        target.execute(conn, sql)
        result.statements.append(sql)
    counts = []
    for sql in statements(target, table, staging, hashes, columns, key, casts):
        counts.append(max(target.execute(conn, sql), 0))
        result.statements.append(sql)
    result.rows_deleted, result.rows_updated, result.rows_inserted = counts
    if target.kind in REPLACES_CHANGED_ROWS:  # the insert put the changed rows back too
        result.rows_inserted -= result.rows_updated
    result.rows_unchanged = source_rows - result.rows_updated - result.rows_inserted
