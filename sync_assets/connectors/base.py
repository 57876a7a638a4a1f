"""The connector interface every database implements, and the SQL write path they share.

A connector knows one database: its catalog (the server's databases, its schemas, tables,
columns), how to read a request as a stream of Arrow record batches, and how to write a stream
with a write operation. Everything dialect-specific (quoting, types, bulk load, merge syntax)
stays inside the connector; the shared ``SqlConnector.write`` runs the same safe sequence on
every engine:

    take the table's writer lock -> drop leftover staging of dead runs -> create this run's
    staging -> bulk load the stream into it -> one transaction: evolve the target, apply (swap,
    append, merge or window overwrite) and check the applied counts -> drop staging

so a target is never half-loaded, and a failure leaves it exactly as it was. The writer lock
(``locking``) makes two runs of one table take turns; the sync of a table holds it from planning
on (``Connector.writer_lock`` is re-entrant), so the watermark is read under it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from datetime import datetime
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from sync_assets.arrow_types import declared_type, fits_in
from sync_assets.connectors.locking import (
    DEFAULT_LOCK_TIMEOUT_S, LEGACY_STAGING_SUFFIX, TYPED_STAGE_SUFFIX, is_staging_name, new_staging, staging_prefix,
)
from sync_assets.errors import ConfigError, DataError, SchemaMismatchError
from sync_assets.spec import ConnectionSpec, TableName

log = logging.getLogger("sync_assets")


@dataclass(frozen=True)
class Filter:
    """``column op value``; the value is bound as a parameter, compared in the column's own type."""

    column: str
    op: Literal[">", ">=", "<", "<=", "="]
    value: Any


@dataclass(frozen=True)
class KeysetFilter:
    """``(columns) op (values)`` in lexicographic order: keyset pagination on an update key with
    the primary key as tiebreak. Rendered as ``c1 >= v1 AND (c1 > v1 OR (c1 = v1 AND ...))`` (the
    leading range keeps it an index seek on engines without row-value comparison, T-SQL)."""

    columns: tuple[str, ...]
    op: Literal[">", "<="]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class ReadRequest:
    """What to read from a source, free of any SQL dialect."""

    table: TableName | None = None
    sql: str | None = None
    columns: tuple[str, ...] | None = None
    filters: tuple[Filter | KeysetFilter, ...] = ()
    where: str | None = None
    order_by: tuple[str, ...] = ()
    limit: int | None = None
    batch_size: int = 100_000
    offset: int = 0
    """Rows skipped after ordering (with ``limit``): how a keyset page finds its last row."""
    descending: bool = False
    """Order by ``order_by`` descending."""
    stream: str | None = None
    """The configured stream this read serves, for messages."""

    def with_filters(self, *filters: Filter | KeysetFilter) -> ReadRequest:
        return dataclasses.replace(self, filters=self.filters + filters)

    @property
    def label(self) -> str:
        """What messages call this read: the stream, and its source table or "custom SQL"."""
        source = str(self.table) if self.table else "custom SQL"
        if not self.stream:
            return source
        return f"stream {self.stream!r}" + ("" if self.stream == source else f" ({source})")


@dataclass
class SourceStream:
    """A stream being read: its canonical schema, its Arrow batches, and optionally the same
    rows in a database-native bulk format that a target of the same kind can take unchanged."""

    schema: pa.Schema
    open_batches: Callable[[], pa.RecordBatchReader]
    native_format: str | None = None
    open_native: Callable[[], Iterator[bytes]] | None = None
    rows_read: int = 0
    label: str = "custom SQL"
    """The stream's name in error messages (the engine sets it to the stream's name, a source
    connector to its table, the IO manager to the asset)."""
    key_columns: tuple[str, ...] = ()
    """The primary key, so a value error can name the row that holds it."""
    failure: Exception | None = None
    """The error that ended the read (the source's, or a target's refusal of a value): a target
    whose driver consumes the batches (DuckDB's scan, ADBC's ingest, arrow-odbc) reports it only
    as text inside its own error, so ``write`` raises this one."""

    def counted_batches(self, check: Callable[[pa.RecordBatch], None] | None = None) -> pa.RecordBatchReader:
        """The Arrow reader, counting rows as they pass (no copies) and logging progress;
        ``check`` (a target's refusal of values it cannot store) sees every batch first."""
        reader = self.open_batches()
        progress = Progress("rows")

        def batches():
            try:
                for batch in reader:
                    if check is not None:
                        check(batch)
                    self.rows_read += batch.num_rows
                    progress.advance(batch.num_rows)
                    yield batch
            except Exception as exc:
                self.failure = exc
                raise

        return pa.RecordBatchReader.from_batches(self.schema, batches())

    def counted_native(self) -> Iterator[bytes]:
        """The native bulk stream, logging progress in bytes (rows are known when it ends)."""
        progress = Progress("bytes")
        for chunk in self.open_native():  # type: ignore[misc]
            progress.advance(len(chunk))
            yield chunk


class Progress:
    """Logs how far a long load has got, at most every ``every_s`` seconds (to the run log)."""

    def __init__(self, unit: str, every_s: float = 10.0):
        self.unit, self.every_s, self.done = unit, every_s, 0
        self.started = self.last = time.monotonic()

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            rate = self.done / (now - self.started)
            log.info("... %s %s so far (%s %s/s)", f"{self.done:,}", self.unit, f"{rate:,.0f}", self.unit)


@dataclass(frozen=True)
class WriteOp:
    """How a stream lands in its target table."""

    kind: Literal["replace", "append", "merge", "overwrite_window"]
    table: TableName
    primary_key: tuple[str, ...] = ()
    window_column: str | None = None
    window: tuple[Any, Any] | None = None
    schema_changes: Literal["evolve", "fail"] = "evolve"
    load_method: Literal["auto", "rename", "switch"] = "auto"
    """How a replace lands: ``rename`` rebuilds the table from staging; ``switch`` keeps the
    existing target's structure and swaps its rows (SQL Server); ``auto`` lets the engine choose."""
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    """How long to wait for another run's writer lock on the table before failing."""


StructureKeepingReplace = Callable[[TableName, pa.Schema, dict[str, str]], list[str]]
"""(staging table, schema, casts) -> the statements that replace a target's rows in place."""


@dataclass
class WriteResult:
    rows_written: int
    """Rows the apply wrote: inserted + updated."""
    rows_deleted: int = 0
    """Rows the apply removed: a partition window's old rows, a full refresh's old table."""
    rows_inserted: int = 0
    rows_updated: int = 0
    columns_added: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    native_path: bool = False


@dataclass(frozen=True)
class TableInfo:
    table: TableName
    row_count: int | None
    size_bytes: int | None
    kind: str = "table"
    last_altered: datetime | None = None


@dataclass(frozen=True)
class SchemaInfo:
    """A schema of the connection's database and how many tables and views the catalog lists in it."""

    name: str
    table_count: int


@dataclass(frozen=True)
class ForeignKey:
    """``child`` (``columns``) references ``parent``, as the source catalog declares it."""

    child: TableName
    parent: TableName
    constraint: str
    columns: tuple[str, ...] = ()


_FOREIGN_KEYS_SQL = """
SELECT child.table_schema, child.table_name, parent.table_schema, parent.table_name, rc.constraint_name,
       kcu.column_name
FROM information_schema.referential_constraints rc
JOIN information_schema.table_constraints child
  ON child.constraint_schema = rc.constraint_schema AND child.constraint_name = rc.constraint_name
JOIN information_schema.table_constraints parent
  ON parent.constraint_schema = rc.unique_constraint_schema AND parent.constraint_name = rc.unique_constraint_name
LEFT JOIN information_schema.key_column_usage kcu
  ON kcu.constraint_schema = rc.constraint_schema AND kcu.constraint_name = rc.constraint_name
ORDER BY child.table_schema, child.table_name, rc.constraint_name, kcu.ordinal_position
"""


def foreign_keys_from_rows(rows: Sequence[tuple]) -> list[ForeignKey]:
    """Rows of (child schema, child table, parent schema, parent table, constraint, column)."""
    grouped: dict[tuple, list[str]] = {}
    for child_schema, child, parent_schema, parent, constraint, column in rows:
        columns = grouped.setdefault((child_schema, child, parent_schema, parent, constraint), [])
        if column is not None:
            columns.append(column)
    return [ForeignKey(TableName(cs, c), TableName(ps, p), name, tuple(cols))
            for (cs, c, ps, p, name), cols in grouped.items()]


class Connector(ABC):
    """One database connection, as a source and (unless read-only) as a target."""

    kind: str = ""
    param_style: Literal["format", "qmark", "numeric"] = "qmark"

    def __init__(self, name: str, spec: ConnectionSpec, *, read_only: bool = False):
        self.name = name
        self.spec = spec
        self.options = spec.options
        self._held_locks: dict[TableName, int] = {}
        self.read_only = read_only or not spec.writable
        """Every session this connector opens is read-only (as far as its engine allows): it reads
        a source, or the connection is never written (``role: source``, ``protected``)."""

    @abstractmethod
    def connect(self) -> Any:
        """A new DB-API connection, transactions under the caller's control."""

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A connection for control statements, closed afterwards."""
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    # -- catalog -------------------------------------------------------------------------------
    @abstractmethod
    def table_schema(self, table: TableName) -> pa.Schema | None:
        """The table's columns as a canonical Arrow schema, or None when it does not exist."""

    @abstractmethod
    def query_schema(self, sql: str) -> pa.Schema:
        """The result columns of a custom SQL query."""

    @property
    @abstractmethod
    def database_name(self) -> str:
        """The database this connection works in, named as ``list_databases`` names it."""

    @abstractmethod
    def list_databases(self) -> list[str]:
        """Names of the databases on the server that this login can use (its own included), sorted."""

    @abstractmethod
    def list_schemas(self) -> list[SchemaInfo]:
        """The schemas of the connection's database, sorted by name, with their number of tables and
        views from the catalog; empty schemas included, the engine's system schemas left out."""

    @abstractmethod
    def list_tables(self, schema: str | None = None) -> list[TableInfo]:
        """Tables with row counts and sizes from the catalog (estimates where the engine keeps them)."""

    def foreign_keys(self) -> list[ForeignKey]:
        """Foreign keys between tables, from the standard ``information_schema`` views."""
        return foreign_keys_from_rows(self.fetch(_FOREIGN_KEYS_SQL))

    # -- reading -------------------------------------------------------------------------------
    @abstractmethod
    def open_stream(self, request: ReadRequest, schema: pa.Schema) -> SourceStream:
        """Start reading ``request``; ``schema`` is the canonical schema of the selected columns."""

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.fetch(sql, params)
        return rows[0][0] if rows else None

    @abstractmethod
    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run a small query and return its rows (catalog lookups, counts, maxima)."""

    def count(self, request: ReadRequest, schema: pa.Schema) -> int:
        sql, params = self.render_select(request, schema, count_only=True)
        return int(self.scalar(sql, params) or 0)

    def max_value(self, table: TableName, column: str) -> Any:
        return self.scalar(f"SELECT MAX({self.quote(column)}) FROM {self.qualified(table)}")

    # -- SQL rendering -------------------------------------------------------------------------
    @abstractmethod
    def quote(self, identifier: str) -> str:
        """Quote one identifier, escaping the quote character inside it."""

    def qualified(self, table: TableName) -> str:
        return (f"{self.quote(table.schema)}." if table.schema else "") + self.quote(table.name)

    def placeholder(self, index: int, style: str | None = None) -> str:
        return {"format": "%s", "qmark": "?", "numeric": f"${index}"}[style or self.param_style]

    def typed_placeholder(self, index: int, field: pa.Field, style: str | None = None) -> str:
        """A bind placeholder cast to the column's own type (the value is bound as text)."""
        return f"CAST({self.placeholder(index, style)} AS {self.column_type_for_filter(field)})"

    def column_type_for_filter(self, field: pa.Field) -> str:
        return self.ddl_type(field)

    def bind_value(self, value: Any, field: pa.Field | None = None) -> Any:
        """Watermarks are bound as text and cast in SQL, so they compare in the column's type."""
        if value is None:
            return None
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return str(value)

    def select_list(self, schema: pa.Schema) -> str:
        return ", ".join(self.select_expression(f) for f in schema)

    def select_expression(self, field: pa.Field) -> str:
        return self.quote(field.name)

    def where_clause(self, request: ReadRequest, schema: pa.Schema, style: str | None = None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if request.where:
            clauses.append(f"({request.where})")
        for flt in request.filters:
            if isinstance(flt, KeysetFilter):
                clauses.append(self._keyset_clause(flt, schema, params, style))
                continue
            value = self.bound_value_sql(flt.value, schema.field(flt.column), params, style)
            clauses.append(f"{self.quote(flt.column)} {flt.op} {value}")
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def bound_value_sql(self, value: Any, field: pa.Field, params: list[Any], style: str | None) -> str:
        """The SQL standing for a filter value compared in ``field``'s type: a typed placeholder,
        with the value appended to ``params``."""
        params.append(self.bind_value(value, field))
        return self.typed_placeholder(len(params), field, style)

    def _keyset_clause(self, flt: KeysetFilter, schema: pa.Schema, params: list[Any], style: str | None) -> str:
        def compare(column: str, value: Any, op: str) -> str:
            return f"{self.quote(column)} {op} {self.bound_value_sql(value, schema.field(column), params, style)}"

        strict, last = ("<", "<=") if flt.op == "<=" else (">", ">")
        pairs = list(zip(flt.columns, flt.values))

        def from_column(i: int) -> str:  # built in text order: placeholders and params line up
            column, value = pairs[i]
            if i == len(pairs) - 1:
                return compare(column, value, last)
            earlier = compare(column, value, strict)
            tied = compare(column, value, "=")
            return f"({earlier} OR ({tied} AND {from_column(i + 1)}))"

        if len(pairs) == 1:
            return from_column(0)
        leading = compare(*pairs[0], ">=" if flt.op == ">" else "<=")
        return f"{leading} AND {from_column(0)}"

    def render_select(
        self, request: ReadRequest, schema: pa.Schema, *, count_only: bool = False,
        param_style: str | None = None, select_list: str | None = None,
    ) -> tuple[str, list[Any]]:
        """The SELECT (or COUNT) for a request, with its bind parameters in ``param_style``;
        ``select_list`` replaces the default column expressions (a connector's own read path)."""
        source = self.qualified(request.table) if request.table else f"({request.sql}) AS sync_query"
        where, params = self.where_clause(request, schema, param_style)
        if count_only:
            return self.count_sql(source, where, request.limit), params
        direction = " DESC" if request.descending else ""
        order = (" ORDER BY " + ", ".join(self.quote(c) + direction for c in request.order_by)) if request.order_by else ""
        columns = select_list or self.select_list(schema)
        return self.select_sql(columns, source, where, order, request.limit, request.offset), params

    def select_sql(self, columns: str, source: str, where: str, order: str, limit: int | None, offset: int = 0) -> str:
        paging = self.limit_clause(limit) + (f" OFFSET {int(offset)}" if offset else "") if limit is not None else ""
        return f"SELECT {columns} FROM {source}{where}{order}{paging}"

    def count_sql(self, source: str, where: str, limit: int | None) -> str:
        inner = f"SELECT 1 AS one FROM {source}{where}{self.limit_clause(limit) if limit is not None else ''}"
        return f"SELECT COUNT(*) FROM ({inner}) AS sync_count"

    def limit_clause(self, limit: int) -> str:
        return f" LIMIT {int(limit)}"

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer_lock(self, table: TableName, timeout_s: float) -> Iterator[None]:
        """Hold ``table``'s one-writer lock (re-entrant for this connector): wait for another run's
        lock up to ``timeout_s`` seconds, then raise ``TargetLocked``."""
        if table in self._held_locks:
            self._held_locks[table] += 1
            try:
                yield
            finally:
                self._held_locks[table] -= 1
            return
        with self.acquire_writer_lock(table, timeout_s):
            self._held_locks[table] = 1
            try:
                yield
            finally:
                del self._held_locks[table]

    def acquire_writer_lock(self, table: TableName, timeout_s: float) -> contextlib.AbstractContextManager:
        """The engine's lock on ``table`` (a source-only connection writes nothing and needs none)."""
        return contextlib.nullcontext()

    @abstractmethod
    def write(self, op: WriteOp, stream: SourceStream) -> WriteResult:
        """Load ``stream`` into ``op.table`` atomically."""

    @abstractmethod
    def ddl_type(self, field: pa.Field) -> str:
        """The column type this database uses to store a canonical Arrow field."""

    def close(self) -> None:
        """Release pooled connections (connectors open connections per operation by default)."""


class SqlConnector(Connector):
    """The shared write path for SQL engines; subclasses fill in the dialect hooks below."""

    max_identifier_bytes: int | None = None
    """The engine's limit on identifier length (PostgreSQL: 63 bytes); staging names keep to it."""
    default_schema = "main"
    """The schema a table without one lives in."""

    keys_enforced_by_constraint = False
    """True when the target's own PRIMARY KEY constraint rejects duplicate keys during apply;
    otherwise staging is checked for NULL and duplicate keys before applying."""

    # dialect hooks --------------------------------------------------------------------------

    @abstractmethod
    def execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement on ``conn``; returns the affected row count where known."""

    @abstractmethod
    def commit(self, conn: Any) -> None: ...

    @abstractmethod
    def rollback(self, conn: Any) -> None: ...

    @abstractmethod
    def bulk_load(self, conn: Any, staging: TableName, stream: SourceStream, schema: pa.Schema) -> tuple[int, bool]:
        """Load the stream into ``staging`` and commit; returns (rows, used the native path)."""

    def column_ddl_type(self, table: TableName, field: pa.Field) -> str:
        """The type a column of ``table`` gets for a canonical field (``ddl_type``, unless the type
        belongs to the target's schema, like a PostgreSQL enum)."""
        return self.ddl_type(field)

    def create_types_sql(self, conn: Any, table: TableName, schema: pa.Schema,
                         target_types: dict[str, str]) -> list[str]:
        """Statements creating the types the ``target_types`` of ``table``'s columns need and its
        schema lacks, run (and committed) before staging is created; raises SchemaMismatchError
        when a type of that name exists but differs."""
        return []

    def load_type(self, field: pa.Field) -> str:
        """The staging column type the Arrow bulk path can write (defaults to the final type)."""
        return self.ddl_type(field)

    def native_load_possible(self, stream: SourceStream, staging_types: list[str]) -> bool:
        return False

    def rename_table_sql(self, table: TableName, new_name: str) -> list[str]:
        return [f"ALTER TABLE {self.qualified(table)} RENAME TO {self.quote(new_name)}"]

    def add_primary_key_sql(self, table: TableName, key: Sequence[str], final_name: str) -> list[str]:
        return []

    def add_column_sql(self, table: TableName, column: str, column_type: str) -> str:
        return f"ALTER TABLE {self.qualified(table)} ADD COLUMN {self.quote(column)} {column_type}"

    def after_swap_sql(self, table: TableName, key: Sequence[str]) -> list[str]:
        return []

    def structure_keeping_replace(self, conn: Any, op: WriteOp, columns: Sequence[str]) -> StructureKeepingReplace | None:
        """For a replace of an existing target with the source ``columns``: the builder of statements
        that swap its rows and keep its structure (indexes, partitioning), or None to rebuild the
        table from staging, which is what every engine but SQL Server (``load_method: switch``) does.
        Called before the load, so a target that cannot take the rows fails before any is read."""
        if op.load_method == "switch":
            raise ConfigError(f"table {op.table}: load_method 'switch' needs a SQL Server target, not {self.kind}")
        return None

    def merge_sql(self, target: TableName, staging: TableName, columns: Sequence[str],
                  key: Sequence[str], casts: dict[str, str]) -> list[str]:
        """Upsert every staging row into the target on ``key`` (default: delete then insert)."""
        match = " AND ".join(f"{self.qualified(target)}.{self.quote(k)} = s.{self.quote(k)}" for k in key)
        return [
            f"DELETE FROM {self.qualified(target)} WHERE EXISTS "
            f"(SELECT 1 FROM {self.qualified(staging)} AS s WHERE {match})",
            self.insert_select_sql(target, staging, columns, casts),
        ]

    def create_schema_sql(self, schema: str) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}"

    def drop_table_sql(self, table: TableName) -> str:
        return f"DROP TABLE IF EXISTS {self.qualified(table)}"

    def schema_exists(self, schema: str) -> bool:
        return True

    def cast_expression(self, column: str, target_type: str) -> str:
        return f"CAST({self.quote(column)} AS {target_type})"

    # shared implementation ------------------------------------------------------------------
    def create_table_sql(self, table: TableName, schema: pa.Schema, types: Sequence[str]) -> str:
        cols = ", ".join(f"{self.quote(f.name)} {t}" for f, t in zip(schema, types))
        return f"CREATE TABLE {self.qualified(table)} ({cols})"

    def insert_select_sql(self, target: TableName, staging: TableName, columns: Sequence[str],
                          casts: dict[str, str]) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        exprs = ", ".join(self.cast_expression(c, casts[c]) if c in casts else self.quote(c) for c in columns)
        return f"INSERT INTO {self.qualified(target)} ({cols}) SELECT {exprs} FROM {self.qualified(staging)}"

    def staging_for(self, table: TableName) -> TableName:
        """A staging table for one run of ``table``, named so that no other run uses it."""
        return new_staging(table, self.max_identifier_bytes)

    def leftover_staging(self, conn: Any, table: TableName) -> list[TableName]:
        """Staging tables of ``table`` left by runs that died (and the pre-per-run fixed name).
        Only called while holding the table's writer lock, so no live run's staging is among them."""
        prefix = staging_prefix(table.name, self.max_identifier_bytes)
        rows = self.fetch_on(
            conn,
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = {self.placeholder(1)} "
            f"AND (LEFT(table_name, {len(prefix)}) = {self.placeholder(2)} OR table_name = {self.placeholder(3)})",
            (table.schema or self.default_schema, prefix, table.name + LEGACY_STAGING_SUFFIX),
        )
        return [TableName(table.schema, name) for (name,) in rows if is_staging_name(name, prefix, table.name)]

    def write(self, op: WriteOp, stream: SourceStream) -> WriteResult:
        with self.writer_lock(op.table, op.lock_timeout_s):
            return self._write_locked(op, stream)

    def _write_locked(self, op: WriteOp, stream: SourceStream) -> WriteResult:
        staging = self.staging_for(op.table)
        schema = stream.schema
        result = WriteResult(rows_written=0)
        with self.session() as conn:
            existing = self.table_schema(op.table)
            keeper = (self.structure_keeping_replace(conn, op, schema.names)
                      if existing is not None and op.kind == "replace" else None)
            final_types = [self.column_ddl_type(op.table, f) for f in schema]
            if existing is None or (op.kind == "replace" and keeper is None):
                target_types = dict(zip(schema.names, final_types))
            else:
                target_types = self._reconcile(op, schema, existing, result)
            staging_types = [target_types[f.name] for f in schema]
            native = self.native_load_possible(stream, staging_types)
            if not native:
                staging_types = [self.load_type(f) for f in schema]
            casts = {f.name: target_types[f.name] for f, st in zip(schema, staging_types)
                     if st != target_types[f.name]}
            prepare = [self.drop_table_sql(leftover) for leftover in self.leftover_staging(conn, op.table)]
            if op.table.schema and not self.schema_exists(op.table.schema):
                prepare.append(self.create_schema_sql(op.table.schema))
            prepare += self.create_types_sql(conn, op.table, schema, target_types)
            prepare.append(self.create_table_sql(staging, schema, staging_types))
            self._run(conn, prepare, result)
            self.commit(conn)
            try:
                started = time.monotonic()
                rows, result.native_path = self.bulk_load(conn, staging, stream, schema)
                log.info("loaded %s rows into staging %s in %.2fs (%s path)", f"{rows:,}", staging,
                         time.monotonic() - started, "native" if result.native_path else "arrow")
                self._apply(conn, op, staging, schema, existing, casts, target_types, rows, result, keeper)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    self.rollback(conn)
                if self.keys_enforced_by_constraint and self.is_key_violation(exc):
                    self._check_unique(conn, op, staging)
                if stream.failure is not None and stream.failure is not exc:
                    stream.failure.__suppress_context__ = True  # the driver's wrapper only repeats it as text
                    raise stream.failure
                raise
            finally:
                self._drop_staging(conn, op.table, staging)
        return result

    def _drop_staging(self, conn: Any, table: TableName, staging: TableName) -> None:
        """Drop this run's staging on its session, or on a fresh connection when the session died
        (e.g. the connection dropped mid-load). When the database cannot be reached at all, the
        staging table stays until the next run of ``table`` drops it."""
        drop = self.drop_table_sql(staging)
        try:
            self.execute(conn, drop)
            self.commit(conn)
            return
        except Exception:
            with contextlib.suppress(Exception):  # its transaction would hold the staging table's lock
                conn.close()
        try:
            with self.session() as fresh:
                self.execute(fresh, drop)
                self.commit(fresh)
        except Exception as exc:
            log.warning("staging table %s stays (%s); the next run of %s drops it", staging, exc, table)

    def _reconcile(self, op: WriteOp, schema: pa.Schema, existing: pa.Schema, result: WriteResult) -> dict[str, str]:
        """Check source columns against the existing target: add new ones, refuse lossy ones."""
        types: dict[str, str] = {}
        existing_native = self.native_column_types(op.table)
        for field_ in schema:
            if field_.name not in existing.names:
                if op.schema_changes == "fail":
                    raise SchemaMismatchError(
                        f"table {op.table}: source has a new column {field_.name!r} "
                        f"({field_.type}) and schema_changes is 'fail'"
                    )
                result.columns_added.append(field_.name)
                types[field_.name] = self.column_ddl_type(op.table, field_)
                continue
            target_field = existing.field(field_.name)
            if not fits_in(field_, target_field):
                raise SchemaMismatchError(
                    f"table {op.table}: column {field_.name!r} is {declared_type(field_)} in the source but "
                    f"{existing_native.get(field_.name, declared_type(target_field))} in the target, which "
                    "cannot hold every source value unchanged (it would truncate or round them); run a "
                    "full refresh to rebuild the table, or widen the column; nothing was written"
                )
            types[field_.name] = existing_native[field_.name]
        return types

    @abstractmethod
    def native_column_types(self, table: TableName) -> dict[str, str]:
        """Column name -> the type as this database spells it in DDL."""

    def _apply(self, conn: Any, op: WriteOp, staging: TableName, schema: pa.Schema,
               existing: pa.Schema | None, casts: dict[str, str], target_types: dict[str, str],
               rows: int, result: WriteResult, keeper: StructureKeepingReplace | None) -> None:
        """One transaction: apply the staged ``rows`` and take the inserted / updated / deleted
        counts from the apply statements themselves; a count that disagrees with the staged rows
        raises before the commit, so the target stays as it was."""
        columns = schema.names
        if keeper is not None or op.kind == "replace" or existing is None:
            self._check_unique_before_apply(conn, op, staging)
            previous = self.count_rows(conn, op.table) if existing is not None else 0
            statements = (keeper(staging, schema, casts) if keeper is not None
                          else self._swap_sql(op, staging, schema, existing, casts, target_types))
            self._run(conn, statements, result)
            result.rows_inserted, result.rows_deleted = self.count_rows(conn, op.table), previous
            self._expect(op, "the new table holds", result.rows_inserted, rows)
        else:
            self._run(conn, [self.add_column_sql(op.table, name, target_types[name])
                             for name in result.columns_added], result)
            if op.kind in ("merge", "overwrite_window"):
                self._check_unique_before_apply(conn, op, staging, into=op.table)
            if op.kind == "merge":
                result.rows_inserted, result.rows_updated = self.apply_merge(
                    conn, op.table, staging, columns, op.primary_key, casts, result)
                applied = result.rows_inserted + result.rows_updated
                key_only = set(columns) <= set(op.primary_key)
                if not (key_only and applied <= rows):  # a key-only row already present is left as it is
                    self._expect(op, "the merge inserted and updated", applied, rows)
            else:
                if op.kind == "overwrite_window":
                    result.rows_deleted = self._delete_window(conn, op, schema, result)
                insert = self.insert_select_sql(op.table, staging, columns, casts)
                result.rows_inserted = self.execute(conn, insert)
                result.statements.append(insert)
                self._expect(op, "the insert added", result.rows_inserted, rows)
        result.rows_written = result.rows_inserted + result.rows_updated
        self.commit(conn)

    def _swap_sql(self, op: WriteOp, staging: TableName, schema: pa.Schema, existing: pa.Schema | None,
                  casts: dict[str, str], target_types: dict[str, str]) -> list[str]:
        """Statements that put the staged rows in place of the target (built from staging)."""
        columns = schema.names
        statements: list[str] = []
        source_table = staging
        if casts:
            cast_stage = TableName(staging.schema, staging.name + TYPED_STAGE_SUFFIX)
            statements += [
                self.drop_table_sql(cast_stage),
                self.create_table_sql(cast_stage, schema, [target_types[c] for c in columns]),
                self.insert_select_sql(cast_stage, staging, columns, casts),
                self.drop_table_sql(staging),
            ]
            source_table = cast_stage
        statements += self.add_primary_key_sql(source_table, op.primary_key, op.table.name)
        if existing is not None:
            statements.append(self.drop_table_sql(op.table))
        statements += self.rename_table_sql(source_table, op.table.name)
        statements += self.after_swap_sql(op.table, op.primary_key)
        return statements

    def _delete_window(self, conn: Any, op: WriteOp, schema: pa.Schema, result: WriteResult) -> int:
        field_ = schema.field(op.window_column)
        low, high = op.window  # type: ignore[misc]
        column = self.quote(op.window_column)  # type: ignore[arg-type]
        sql = (f"DELETE FROM {self.qualified(op.table)} WHERE {column} >= {self.typed_placeholder(1, field_)} "
               f"AND {column} < {self.typed_placeholder(2, field_)}")
        deleted = self.execute(conn, sql, (self.bind_value(low, field_), self.bind_value(high, field_)))
        result.statements.append(sql)
        return max(deleted, 0)

    def apply_merge(self, conn: Any, target: TableName, staging: TableName, columns: Sequence[str],
                    key: Sequence[str], casts: dict[str, str], result: WriteResult) -> tuple[int, int]:
        """Run the merge of ``merge_sql``; returns (inserted, updated). By default the matching
        rows are deleted (the updated ones) and every staged row is inserted."""
        delete, insert = self.merge_sql(target, staging, columns, key, casts)
        matched = self.execute(conn, delete)
        written = self.execute(conn, insert)
        result.statements += [delete, insert]
        return written - matched, matched

    def count_rows(self, conn: Any, table: TableName) -> int:
        return int(self.fetch_on(conn, f"SELECT COUNT(*) FROM {self.qualified(table)}")[0][0])

    @staticmethod
    def _expect(op: WriteOp, what: str, applied: int, staged: int) -> None:
        """Refuse to commit when the apply did not account for exactly the staged rows (a driver
        that cannot tell, rowcount -1, is not checked)."""
        if applied >= 0 and applied != staged:
            raise DataError(f"table {op.table}: {what} {applied:,} rows but {staged:,} rows were staged; "
                            "the transaction was rolled back and the target is unchanged")

    def is_key_violation(self, exc: BaseException) -> bool:
        return False

    def primary_key_columns(self, conn: Any, table: TableName) -> set[str]:
        """The columns of ``table``'s PRIMARY KEY constraint (empty: none, or not looked up)."""
        return set()

    def _check_unique_before_apply(self, conn: Any, op: WriteOp, staging: TableName,
                                   into: TableName | None = None) -> None:
        """Check staging for NULL and duplicate keys, unless a constraint will refuse them: on
        engines that enforce keys by constraint, a replace's new table gets its PRIMARY KEY before
        the swap, and rows merged or inserted ``into`` an existing table meet that table's own
        PRIMARY KEY, if it has one on exactly these columns (a target created without one, or
        keyed on other columns, is checked here)."""
        if not op.primary_key:
            return
        if self.keys_enforced_by_constraint and (
                into is None or self.primary_key_columns(conn, into) == set(op.primary_key)):
            return
        self._check_unique(conn, op, staging)

    def _check_unique(self, conn: Any, op: WriteOp, staging: TableName) -> None:
        """Raise a DataError naming the table, key columns and offending keys, if any."""
        if not op.primary_key:
            return
        keys = ", ".join(self.quote(k) for k in op.primary_key)
        not_null = " OR ".join(f"{self.quote(k)} IS NULL" for k in op.primary_key)
        nulls = self.fetch_on(conn, f"SELECT COUNT(*) FROM {self.qualified(staging)} WHERE {not_null}")
        if nulls and nulls[0][0]:
            raise DataError(
                f"table {op.table}: {nulls[0][0]} source rows have NULL in primary key column(s) "
                f"{', '.join(op.primary_key)}; nothing was written"
            )
        dupes = self.fetch_on(
            conn,
            f"SELECT {keys}, COUNT(*) FROM {self.qualified(staging)} GROUP BY {keys} HAVING COUNT(*) > 1"
            f"{self.limit_clause(5)}",
        )
        if dupes:
            shown = "; ".join(
                ", ".join(f"{k}={v!r}" for k, v in zip(op.primary_key, row[:-1])) + f" ({row[-1]} rows)"
                for row in dupes
            )
            raise DataError(
                f"table {op.table}: primary key ({', '.join(op.primary_key)}) is not unique in the "
                f"source rows: {shown}; nothing was written"
            )

    @abstractmethod
    def fetch_on(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """``fetch`` on an open session connection."""

    def _run(self, conn: Any, statements: Sequence[str], result: WriteResult) -> None:
        for sql in statements:
            self.execute(conn, sql)
            result.statements.append(sql)
