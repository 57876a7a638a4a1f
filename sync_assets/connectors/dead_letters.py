"""Dead letters: the rows a target cannot take, kept with the reason on the target itself, so the
rest of the batch loads (``on_bad_rows: quarantine``) and nothing is dropped silently.

Bad rows are found on the way in, never by inserting row by row:

- in Arrow, per batch (vectorised, ``Quarantine.screen``): what the target's bulk load would
  refuse or change (``Connector.ingest_problems``: NUL in PostgreSQL text, dates out of its range,
  nanoseconds) and what the existing target columns cannot hold (``types.value_fit``: too long,
  out of range, too many digits, invalid UTF-8);
- in the run's staging table, in SQL (``Quarantine.screen_staging``): NULL keys, duplicate keys
  (every row of a duplicated key: which one is right is not ours to guess) and NULLs for NOT NULL
  columns of the target. Two scans of staging, whatever the data.

``_sync_dead_letters`` (in the target table's schema) holds one row per quarantined row: the
target table, the run id, the row's key (a JSON array, in key-column order), the column at fault,
the reason, the whole row as JSON, and when. It is written in the apply transaction, so it
commits or rolls back with the rows. A run supersedes the dead letters it re-read: a full refresh
all of the table's; a merge or ``hash_delta`` those of the keys it staged or quarantined again; a
retry (``sync-assets dead-letters TABLE --retry``) those of the keys it retried, found at the
source or not.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.config.names import TableName
from sync_assets.connectors.interface import SqlTarget, WriteOp, WriteResult
from sync_assets.connectors.requests import KEYS_PER_READ, KeysIn, ReadRequest, SourceStream
from sync_assets.types.value_edges import Problem

DEAD_LETTER_TABLE = "_sync_dead_letters"
DEAD_LETTER_SCHEMA = pa.schema([
    pa.field("table_name", pa.string()), pa.field("run_id", pa.string()), pa.field("row_key", pa.string()),
    pa.field("column_name", pa.string()), pa.field("reason", pa.string()), pa.field("raw_row", pa.string()),
    pa.field("quarantined_at", pa.timestamp("us", tz="UTC")),
    pa.field("status", pa.string()), pa.field("attempts", pa.int32()),
])
"""``status``: ``failed``, or ``pending`` (an orphan waiting for its parent: ``orphans``);
``attempts``: the runs that tried the row (an orphan's retries count)."""
LATER_COLUMNS = ("status", "attempts")
"""Columns added after the first release of the table: an older table gets them on its next write."""


def dead_letter_table(table: TableName) -> TableName:
    return TableName(table.schema, DEAD_LETTER_TABLE)


def json_value(value: Any) -> Any:
    """A value as JSON holds it: dates and times as ISO text (UTC when zoned), bytes as
    ``\\x``-prefixed hex, NaN and the infinities as text, decimals, UUIDs and the rest as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


def key_text(values: Sequence[Any]) -> str:
    """The stored ``row_key``: the key values as a JSON array (the same text for the same key,
    whether the values came from Arrow or from a database driver)."""
    return json.dumps([json_value(v) for v in values], ensure_ascii=False)


def row_text(row: dict[str, Any]) -> str:
    return json.dumps({name: json_value(value) for name, value in row.items()}, ensure_ascii=False)


class Quarantine:
    """The dead letters of one write: collected while the stream loads, written in its apply."""

    def __init__(self, op: WriteOp):
        self.op = op
        self.rows: list[dict[str, Any]] = []
        self.screened = 0
        """Rows ``screen`` kept out of the load."""
        self.staging: TableName | None = None
        """The staging table the dead letters are bulk-loaded into before the apply."""

    @property
    def count(self) -> int:
        return len(self.rows)

    def keep(self, rows: Iterable[dict[str, Any]], column: str, reason: str, *, status: str = "failed",
             attempts: int = 1) -> None:
        now = datetime.now(UTC)
        for row in rows:
            self.rows.append({
                "table_name": str(self.op.table), "run_id": self.op.run_id,
                "row_key": key_text([row.get(k) for k in self.op.primary_key]) if self.op.primary_key else None,
                "column_name": column, "reason": reason, "raw_row": row_text(row), "quarantined_at": now,
                "status": status, "attempts": attempts,
            })

    # -- in Arrow ------------------------------------------------------------------------------
    def screen(self, stream: SourceStream, problems: Callable[[pa.RecordBatch], Iterable[Problem]]) -> None:
        """Make ``stream`` yield only the rows without ``problems``; the others become dead
        letters here (``screened`` counts them: the load does not)."""
        open_batches = stream.open_batches

        def screened() -> pa.RecordBatchReader:
            reader = open_batches()
            batches = (self._good_rows(batch, problems(batch)) for batch in reader)
            return pa.RecordBatchReader.from_batches(stream.schema, batches)

        stream.open_batches = screened

    def _good_rows(self, batch: pa.RecordBatch, problems: Iterable[Problem]) -> pa.RecordBatch:
        flagged = None
        for problem in problems:
            mask = problem.mask if flagged is None else pc.and_(problem.mask, pc.invert(flagged))
            if not pc.any(mask).as_py():
                continue
            rows = _python_rows(batch.filter(mask))
            if problem.source_values is not None:  # keep the value as the source sent it, not the NULL the batch holds
                for row, sent in zip(rows, problem.source_values.filter(mask).to_pylist(), strict=True):
                    row[problem.column] = json.loads(sent)
            self.keep(rows, problem.column,
                      f"{problem.column!r} {problem.reason}" + (f" ({problem.hint})" if problem.hint else ""))
            flagged = mask if flagged is None else pc.or_(flagged, mask)
        if flagged is None:
            return batch
        self.screened += pc.sum(flagged.cast(pa.int64())).as_py()
        return batch.filter(pc.invert(flagged))

    # -- in staging ----------------------------------------------------------------------------
    def screen_staging(self, target: SqlTarget, conn: Any, staging: TableName, columns: Sequence[str],
                       not_null: Sequence[str]) -> int:
        """Move the staged rows with a NULL key, a NULL for a NOT NULL target column, a
        duplicated key or a value shared with another row in a ``unique`` column into the dead
        letters; returns how many left staging (committed by the caller with the next statements)."""
        q, s = target.quote, target.qualified(staging)
        key = self.op.primary_key
        names = ", ".join(q(c) for c in columns)
        moved = 0
        nullable_checked = [*key, *(c for c in not_null if c not in key)]
        if nullable_checked:
            condition = " OR ".join(f"{q(c)} IS NULL" for c in nullable_checked)
            for row in staged_rows(target, conn, f"SELECT {names} FROM {s} WHERE {condition}", columns):
                column = next(c for c in nullable_checked if row[c] is None)
                self.keep([row], column, f"{column!r} is NULL, but it is " + (
                    "a primary key column" if column in key else "NOT NULL in the target"))
                moved += 1
            if moved:
                target.execute(conn, f"DELETE FROM {s} WHERE {condition}")
        if key:
            keys = ", ".join(q(k) for k in key)
            match = " AND ".join(f"d.{q(k)} = {s}.{q(k)}" for k in key)
            duplicated = (f"EXISTS (SELECT 1 FROM (SELECT {keys} FROM {s} GROUP BY {keys} HAVING COUNT(*) > 1) "
                          f"AS d WHERE {match})")
            rows = staged_rows(target, conn, f"SELECT {names} FROM {s} WHERE {duplicated}", columns)
            if rows:
                texts = [key_text([row[k] for k in key]) for row in rows]
                copies = Counter(texts)
                for row, text in zip(rows, texts, strict=True):
                    self.keep([row], ", ".join(key), f"duplicate primary key: {copies[text]} source rows have this key")
                target.execute(conn, f"DELETE FROM {s} WHERE {duplicated}")
                moved += len(rows)
        for column in self.op.unique_columns:
            shared = shared_value_condition(target, staging, column)
            rows = staged_rows(target, conn, f"SELECT {names} FROM {s} WHERE {shared}", columns)
            if rows:
                copies = Counter(key_text([row[column]]) for row in rows)
                for row in rows:
                    self.keep([row], column, f"{column!r} breaks rule unique: "
                                             f"{copies[key_text([row[column]])]} rows have this value")
                target.execute(conn, f"DELETE FROM {s} WHERE {shared}")
                moved += len(rows)
        return moved

    @staticmethod
    def _fetch_rows(target: SqlTarget, conn: Any, sql: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        return [dict(zip(columns, row, strict=True)) for row in target.fetch_on(conn, sql)]

    def stream(self) -> SourceStream:
        """The dead letters as a stream for the target's bulk load."""
        table = pa.Table.from_pylist(self.rows, schema=DEAD_LETTER_SCHEMA)
        return SourceStream(DEAD_LETTER_SCHEMA, lambda: table.to_reader(), label=f"{self.op.table} (dead letters)")

    # -- in the apply transaction --------------------------------------------------------------
    def apply(self, target: SqlTarget, conn: Any, staging: TableName, schema: pa.Schema,
              result: WriteResult) -> None:
        """Supersede the dead letters this run re-read, and insert its own (``self.staging``)."""
        dead = target.qualified(dead_letter_table(self.op.table))
        name = target.placeholder(1)
        if self.op.kind == "replace":
            _run(target, conn, f"DELETE FROM {dead} WHERE table_name = {name}", (str(self.op.table),), result)
        elif self.op.primary_key:
            outstanding = [text for (text,) in target.fetch_on(
                conn, f"SELECT DISTINCT row_key FROM {dead} WHERE table_name = {name}", (str(self.op.table),))]
            again = {row["row_key"] for row in self.rows}
            superseded = [t for t in outstanding if t in again or t in self.op.retried_keys]
            superseded += _staged(target, conn, staging, schema, self.op.primary_key,
                                  [t for t in outstanding if t not in superseded])
            for chunk in range(0, len(superseded), KEYS_PER_READ):
                part = superseded[chunk:chunk + KEYS_PER_READ]
                marks = ", ".join(target.placeholder(i + 2) for i in range(len(part)))
                _run(target, conn, f"DELETE FROM {dead} WHERE table_name = {name} AND row_key IN ({marks})",
                     (str(self.op.table), *part), result)
        if self.staging is not None:
            names = ", ".join(target.quote(n) for n in DEAD_LETTER_SCHEMA.names)
            _run(target, conn, f"INSERT INTO {dead} ({names}) SELECT {names} FROM {target.qualified(self.staging)}",
                 (), result)
        result.rows_quarantined = self.count


def staged_rows(target: SqlTarget, conn: Any, sql: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The rows ``sql`` selects (``columns``, in order), as dicts."""
    return [dict(zip(columns, row, strict=True)) for row in target.fetch_on(conn, sql)]


def shared_value_condition(target: SqlTarget, staging: TableName, column: str) -> str:
    """The staged rows whose non-NULL ``column`` value another staged row shares (rule ``unique``)."""
    c, s = target.quote(column), target.qualified(staging)
    return f"{c} IN (SELECT {c} FROM {s} WHERE {c} IS NOT NULL GROUP BY {c} HAVING COUNT(*) > 1)"


def _staged(target: SqlTarget, conn: Any, staging: TableName, schema: pa.Schema, key: Sequence[str],
            texts: list[str]) -> list[str]:
    """Which of the keys ``texts`` are in ``staging`` (whose columns are ``schema``'s)."""
    found: list[str] = []
    for chunk in range(0, len(texts), KEYS_PER_READ):
        part = texts[chunk:chunk + KEYS_PER_READ]
        request = ReadRequest(table=staging, columns=tuple(key), filters=(KeysIn(tuple(key), tuple(
            tuple(json.loads(t)) for t in part)),))
        sql, params = target.render_select(request, pa.schema([schema.field(k) for k in key]))
        found += [key_text(row) for row in target.fetch_on(conn, sql, params)]
    wanted = set(texts)
    return [t for t in found if t in wanted]


def _run(target: SqlTarget, conn: Any, sql: str, params: Sequence[Any], result: WriteResult) -> None:
    target.execute(conn, sql, params)
    result.statements.append(sql)


def _python_rows(rows: pa.RecordBatch) -> list[dict[str, Any]]:
    """The rows as Python values; a text column holding invalid UTF-8 is read as bytes."""
    columns = {}
    for field, column in zip(rows.schema, rows.columns, strict=True):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                column = column.view(pa.large_binary() if pa.types.is_large_string(field.type) else pa.binary())
        columns[field.name] = column.to_pylist()
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def outstanding(target: SqlTarget, table: TableName, limit: int | None = None) -> list[dict[str, Any]]:
    """The table's dead letters, oldest first (none when the target has no dead-letter table)."""
    dead = dead_letter_table(table)
    existing = target.table_schema(dead)
    if existing is None:
        return []
    names = [n for n in DEAD_LETTER_SCHEMA.names if n in existing.names]  # an older table lacks LATER_COLUMNS
    sql = (f"SELECT {', '.join(names)} FROM {target.qualified(dead)} WHERE table_name = {target.placeholder(1)} "
           f"ORDER BY quarantined_at, row_key")
    rows = target.fetch(sql + (target.limit_clause(limit) if limit is not None else ""), (str(table),))
    return [dict(zip(names, row, strict=True)) for row in rows]


def count(target: SqlTarget, table: TableName) -> int:
    dead = dead_letter_table(table)
    if target.table_schema(dead) is None:
        return 0
    return int(target.fetch(f"SELECT COUNT(*) FROM {target.qualified(dead)} WHERE table_name = "
                            f"{target.placeholder(1)}", (str(table),))[0][0])


def prepare_sql(target: SqlTarget, table: TableName) -> list[str]:
    """Statements run before the load: the dead-letter table, when the target schema lacks it, or
    the columns an older one lacks."""
    dead = dead_letter_table(table)
    existing = target.table_schema(dead)
    if existing is None:
        return [target.create_table_sql(dead, DEAD_LETTER_SCHEMA, [target.ddl_type(f) for f in DEAD_LETTER_SCHEMA])]
    return [target.add_column_sql(dead, name, target.ddl_type(DEAD_LETTER_SCHEMA.field(name)))
            for name in LATER_COLUMNS if name not in existing.names]
