"""Orphans: staged child rows whose ``parent_key`` value the parent's target table lacks.

Found in the run's staging table with one ``NOT EXISTS`` scan per parent key (NULL is no
reference, so never an orphan), after the parents of the same run have loaded (they are the
child's asset deps). What happens to them is the stream's ``orphans``:

- ``fail``: the run fails naming the table, the column, the parent and example keys; nothing is written;
- ``quarantine``: they go to the dead letters (``failed``) and the other rows load;
- ``wait``: they go to the dead letters as ``pending``; every later run puts the pending rows back
  in its staging (unless the source sent the same key again, which is newer) and checks them
  again: a row whose parent has arrived loads, its dead letter is superseded; one still
  orphaned stays pending, until ``orphan_attempts`` runs have tried it: then it is ``failed``,
  with the reason. Pending rows come back from their raw JSON, cast to the staged columns' types.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from sync_assets.config.names import TableName
from sync_assets.connectors import dead_letters
from sync_assets.connectors.interface import SqlTarget, WriteOp
from sync_assets.connectors.requests import SourceStream
from sync_assets.errors import DataError


def orphan_condition(target: SqlTarget, staging: TableName, column: str, parent: TableName | None,
                     parent_column: str) -> str:
    """The staged rows of ``column`` that have no parent (all non-NULL ones while the parent table is missing)."""
    c = f"{target.qualified(staging)}.{target.quote(column)}"
    if parent is None or target.table_schema(parent) is None:
        return f"{c} IS NOT NULL"
    return (f"{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {target.qualified(parent)} AS parent "
            f"WHERE parent.{target.quote(parent_column)} = {c})")


def screen(target: SqlTarget, conn: Any, op: WriteOp, staging: TableName, columns: Sequence[str],
           quarantine: dead_letters.Quarantine | None, attempts: dict[str, int]) -> int:
    """Refuse (``fail``) or move to the dead letters the staged orphans; returns how many left staging.
    ``attempts``: the runs that tried each reloaded pending row before this one, by key text."""
    moved = 0
    names = ", ".join(target.quote(c) for c in columns)
    for key in op.parent_keys:
        condition = orphan_condition(target, staging, key.column, key.parent_table, key.parent_column)
        parent = f"{key.parent_table}.{key.parent_column}"
        if op.orphans == "fail" or quarantine is None:
            shown_columns = (*op.primary_key, key.column)
            examples = target.fetch_on(conn, f"SELECT {', '.join(target.quote(c) for c in shown_columns)} FROM "
                                             f"{target.qualified(staging)} WHERE {condition}{target.limit_clause(5)}")
            if examples:
                shown = "; ".join(", ".join(f"{n}={v!r}" for n, v in zip(shown_columns, row, strict=True))
                                  for row in examples)
                raise DataError(f"table {op.table}: column {key.column!r} references {parent}, which lacks the "
                                f"rows' values ({shown}); nothing was written. Load the parent first, or set "
                                "orphans: quarantine or wait")
            continue
        rows = dead_letters.staged_rows(target, conn, f"SELECT {names} FROM {target.qualified(staging)} "
                                                      f"WHERE {condition}", columns)
        for row in rows:
            text = dead_letters.key_text([row[k] for k in op.primary_key]) if op.primary_key else ""
            tries = attempts.get(text, 0) + 1
            waiting = op.orphans == "wait" and tries < op.orphan_attempts
            reason = f"{key.column!r} = {row[key.column]!r} has no parent in {parent}"
            if op.orphans == "wait":
                reason += (f"; pending, tried {tries} of {op.orphan_attempts} runs" if waiting
                           else f"; gave up after {tries} runs")
            quarantine.keep([row], key.column, reason, status="pending" if waiting else "failed", attempts=tries)
        if rows:
            target.execute(conn, f"DELETE FROM {target.qualified(staging)} WHERE {condition}")
            moved += len(rows)
    return moved


def pending_stream(target: SqlTarget, op: WriteOp, schema: pa.Schema) -> tuple[SourceStream | None, dict[str, int]]:
    """The table's pending orphans as a stream of ``schema`` rows (from their raw JSON; None when
    there are none), and the runs that tried each dead-lettered key, pending or failed, by key
    text (a failed orphan the source sends again stays failed)."""
    letters = dead_letters.outstanding(target, op.table)
    attempts = {letter["row_key"]: int(letter.get("attempts") or 1) for letter in letters}
    rows = [json.loads(letter["raw_row"]) for letter in letters if letter.get("status") == "pending"]
    if not rows:
        return None, attempts
    arrays = [_typed([row.get(f.name) for row in rows], f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    stream = SourceStream(schema, table.to_reader, label=f"{op.table} (pending orphans)",
                          key_columns=tuple(op.primary_key))
    return stream, attempts


def _typed(values: list, arrow_type: pa.DataType) -> pa.Array:
    """JSON values (``dead_letters.json_value``: dates, decimals and the like as text) in ``arrow_type``."""
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return pa.array([bytes.fromhex(v[2:]) if isinstance(v, str) else v for v in values], arrow_type)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], arrow_type)
    return pa.array(values).cast(arrow_type)
