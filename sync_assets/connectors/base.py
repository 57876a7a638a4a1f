"""The connector interface every database implements, and the SQL write path they share.

A connector knows one database: its catalog (the server's databases, its schemas, tables,
columns), how to read a request as a stream of Arrow record batches, and how to write a stream
with a write operation. Everything dialect-specific (quoting, types, bulk load, merge syntax)
stays inside the connector; the shared ``SqlConnector.write`` runs the same safe sequence on
every engine:

    create staging -> bulk load the stream into it -> one transaction: evolve the target and
    apply (swap, append, merge or window overwrite) -> drop staging

so a target is never half-loaded, and a failure leaves it exactly as it was.
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

from sync_assets.arrow_types import fits_in
from sync_assets.errors import ConfigError, DataError, SchemaMismatchError, SyncAssetsError
from sync_assets.spec import ConnectionSpec, TableName

log = logging.getLogger("sync_assets")

STAGING_SUFFIX = "__sync_staging"


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

    def with_filters(self, *filters: Filter | KeysetFilter) -> ReadRequest:
        return dataclasses.replace(self, filters=self.filters + filters)

    @property
    def label(self) -> str:
        return str(self.table) if self.table else "custom SQL"


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
    failure: SyncAssetsError | None = None
    """Our own error raised while a driver consumed the batches: drivers wrap it in theirs, so
    ``reraise_failure`` gives it back as it was."""

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
            except SyncAssetsError as exc:
                self.failure = exc
                raise

        return pa.RecordBatchReader.from_batches(self.schema, batches())

    @contextlib.contextmanager
    def reraise_failure(self) -> Iterator[None]:
        """Around a driver consuming ``counted_batches``: our own error, not the driver's wrapper."""
        try:
            yield
        except Exception:
            if self.failure is not None:
                raise self.failure from None
            raise

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


StructureKeepingReplace = Callable[[TableName, pa.Schema, dict[str, str]], list[str]]
"""(staging table, schema, casts) -> the statements that replace a target's rows in place."""


@dataclass
class WriteResult:
    rows_written: int
    rows_deleted: int = 0
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

    def __init__(self, name: str, spec: ConnectionSpec):
        self.name = name
        self.spec = spec
        self.options = spec.options

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
            field_ = schema.field(flt.column)
            params.append(self.bind_value(flt.value, field_))
            clauses.append(f"{self.quote(flt.column)} {flt.op} {self.typed_placeholder(len(params), field_, style)}")
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def _keyset_clause(self, flt: KeysetFilter, schema: pa.Schema, params: list[Any], style: str | None) -> str:
        def compare(column: str, value: Any, op: str) -> str:
            field_ = schema.field(column)
            params.append(self.bind_value(value, field_))
            return f"{self.quote(column)} {op} {self.typed_placeholder(len(params), field_, style)}"

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
        return TableName(table.schema, f"{table.name}{STAGING_SUFFIX}")

    def write(self, op: WriteOp, stream: SourceStream) -> WriteResult:
        staging = self.staging_for(op.table)
        schema = stream.schema
        result = WriteResult(rows_written=0)
        with self.session() as conn:
            existing = self.table_schema(op.table)
            keeper = (self.structure_keeping_replace(conn, op, schema.names)
                      if existing is not None and op.kind == "replace" else None)
            final_types = [self.ddl_type(f) for f in schema]
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
            prepare = [self.drop_table_sql(staging)]
            if op.table.schema and not self.schema_exists(op.table.schema):
                prepare.insert(0, self.create_schema_sql(op.table.schema))
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
                self.rollback(conn)
                if self.keys_enforced_by_constraint and self.is_key_violation(exc):
                    self._check_unique(conn, op, staging)
                raise
            finally:
                with contextlib.suppress(Exception):
                    self.execute(conn, self.drop_table_sql(staging))
                    self.commit(conn)
        return result

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
                types[field_.name] = self.ddl_type(field_)
                continue
            target_field = existing.field(field_.name)
            if not fits_in(field_.type, target_field.type):
                raise SchemaMismatchError(
                    f"table {op.table}: column {field_.name!r} is {field_.type} in the source but "
                    f"{existing_native.get(field_.name, target_field.type)} in the target, which "
                    "cannot hold every source value; run a full refresh to rebuild the table, "
                    "or change the column"
                )
            types[field_.name] = existing_native[field_.name]
        return types

    @abstractmethod
    def native_column_types(self, table: TableName) -> dict[str, str]:
        """Column name -> the type as this database spells it in DDL."""

    def _apply(self, conn: Any, op: WriteOp, staging: TableName, schema: pa.Schema,
               existing: pa.Schema | None, casts: dict[str, str], target_types: dict[str, str],
               rows: int, result: WriteResult, keeper: StructureKeepingReplace | None) -> None:
        columns = schema.names
        statements: list[str] = []
        if keeper is not None:
            self._check_unique_before_apply(conn, op, staging)
            statements += keeper(staging, schema, casts)
            result.rows_written = rows
        elif op.kind == "replace" or existing is None:
            self._check_unique_before_apply(conn, op, staging)
            source_table = staging
            if casts:
                cast_stage = TableName(staging.schema, staging.name + "_typed")
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
            result.rows_written = rows
        else:
            for name in result.columns_added:
                statements.append(self.add_column_sql(op.table, name, target_types[name]))
            if op.kind == "merge":
                self._check_unique_before_apply(conn, op, staging)
                statements += self.merge_sql(op.table, staging, columns, op.primary_key, casts)
            elif op.kind == "overwrite_window":
                low, high = op.window  # type: ignore[misc]
                field_ = schema.field(op.window_column)
                statements.append(
                    f"DELETE FROM {self.qualified(op.table)} WHERE {self.quote(op.window_column)} >= "
                    f"{self.typed_placeholder(1, field_)} AND {self.quote(op.window_column)} < "
                    f"{self.typed_placeholder(2, field_)}"
                )
                statements.append(self.insert_select_sql(op.table, staging, columns, casts))
            else:
                statements.append(self.insert_select_sql(op.table, staging, columns, casts))
            result.rows_written = rows
        for sql in statements:
            params = ()
            if op.kind == "overwrite_window" and sql.startswith("DELETE") and op.window:
                params = (self.bind_value(op.window[0], field_), self.bind_value(op.window[1], field_))
                result.rows_deleted = max(self.execute(conn, sql, params), 0)
                result.statements.append(sql)
                continue
            self.execute(conn, sql, params)
            result.statements.append(sql)
        self.commit(conn)

    def is_key_violation(self, exc: BaseException) -> bool:
        return False

    def _check_unique_before_apply(self, conn: Any, op: WriteOp, staging: TableName) -> None:
        if not self.keys_enforced_by_constraint:
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
