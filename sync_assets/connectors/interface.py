"""The connector interface every database implements: catalog, reads as Arrow streams, writes.

A connector knows one database: its catalog (the server's databases, its schemas, tables,
columns), how to read a ``ReadRequest`` as a stream of Arrow record batches, and how to write a
stream with a ``WriteOp``. Everything dialect-specific stays inside the connector; SQL targets
share the write path in ``sql_write``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import pyarrow as pa

from sync_assets.config.models import ConnectionSpec, HttpEndpoint
from sync_assets.config.names import TableName
from sync_assets.config.project import ParentKey
from sync_assets.connectors.locking import DEFAULT_LOCK_TIMEOUT_S
from sync_assets.connectors.requests import KEYS_PER_READ, KeysetFilter, KeysIn, ReadRequest, SourceReads, SourceStream
from sync_assets.errors import ConfigError


@dataclass(frozen=True)
class DeletePlan:
    """What one merge run does about source deletes (``connectors.deletes``): ``check_now``
    compares the key sets this run; either way the run is counted (a check resets the count)."""

    detect: Literal["hard", "soft"]
    check_now: bool


@dataclass(frozen=True)
class WriteOp:
    """How a stream lands in its target table."""

    kind: Literal["replace", "append", "merge", "overwrite_window", "hash_delta"]
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
    deletes: DeletePlan | None = None
    """A merge that mirrors source deletes (``deletes``); the keys come from ``write``'s ``reads``."""
    on_bad_rows: Literal["fail", "quarantine"] = "fail"
    """``quarantine``: rows the target cannot take go to its dead letters (``dead_letters``)."""
    run_id: str = ""
    """The run writing (Dagster's run id, or one the CLI makes): recorded with each dead letter."""
    retried_keys: frozenset[str] = frozenset()
    """A dead-letter retry: the keys (``dead_letters.key_text``) it re-read, whose dead letters it supersedes."""
    unique_columns: tuple[str, ...] = ()
    """Columns with the ``validate`` rule ``unique``: no two rows of the run share a value (checked in staging)."""
    parent_keys: tuple[ParentKey, ...] = ()
    """Columns holding a parent's key: a row whose parent the parent's target table lacks is an orphan."""
    orphans: Literal["fail", "quarantine", "wait"] = "fail"
    orphan_attempts: int = 5
    """``orphans: wait``: runs that try a pending orphan before it stays failed."""
    watermark_column: str | None = None
    """An incremental table's update key: the target keeps an index on it where the engine needs
    one, so reading the watermark (its maximum) does not scan the table."""


class SqlTarget(Protocol):
    """What the apply modules (``deletes``, ``hash_delta``) need of a SQL target; the shared
    write path (``sql_write.SqlConnector``) provides it and hands itself in."""

    kind: str

    def quote(self, identifier: str) -> str: ...
    def qualified(self, table: TableName) -> str: ...
    def placeholder(self, index: int, style: str | None = None) -> str: ...
    def ddl_type(self, field: pa.Field) -> str: ...
    def table_schema(self, table: TableName) -> pa.Schema | None: ...
    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...
    def fetch_on(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...
    def execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> int: ...
    def create_table_sql(self, table: TableName, schema: pa.Schema, types: Sequence[str]) -> str: ...
    def add_column_sql(self, table: TableName, column: str, column_type: str) -> str: ...
    def cast_expression(self, column: str, target_type: str, qualifier: str = "") -> str: ...
    def add_primary_key_sql(self, table: TableName, key: Sequence[str], final_name: str) -> list[str]: ...
    def after_swap_sql(self, table: TableName, key: Sequence[str]) -> list[str]: ...
    def swap_in_sql(self, built: TableName, table: TableName, key: Sequence[str], replaces: bool) -> list[str]: ...
    def drop_table_sql(self, table: TableName) -> str: ...
    def render_select(self, request: ReadRequest, schema: pa.Schema) -> tuple[str, list[Any]]: ...
    def limit_clause(self, limit: int) -> str: ...
    def count_rows(self, conn: Any, table: TableName) -> int: ...


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
    rows_unchanged: int = 0
    """Staged rows a ``hash_delta`` apply found identical in the target, and did not write."""
    rows_soft_deleted: int = 0
    rows_restored: int = 0
    """Soft-deleted rows whose key is back at the source (their ``_sync_deleted_at`` cleared)."""
    deletes_checked: bool = False
    rows_read: int = 0
    """Rows the write read from the stream it loaded (a ``hash_delta`` read by key: only those)."""
    rows_quarantined: int = 0
    """Rows this run put in the dead letters instead of the target (``on_bad_rows: quarantine``)."""
    columns_added: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    native_path: bool = False
    target_rows: int | None = None
    """Rows in the table after the commit, as the apply kept count (``connectors.row_counts``)."""


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


WINDOWS_PER_SCAN = 200
"""Windows one ``count_by_window`` query counts (two bind parameters each: SQL Server takes 2,100)."""


class Connector(ABC):
    """One database connection, as a source and (unless read-only) as a target."""

    kind: str = ""
    param_style: Literal["format", "qmark", "numeric"] = "qmark"
    keys_per_read: int = KEYS_PER_READ
    """Keys a ``KeysIn`` read binds in one statement (within the engine's parameter limit)."""

    def __init__(self, name: str, spec: ConnectionSpec, *, read_only: bool = False):
        self.name = name
        self.spec = spec
        self.options = spec.options
        self._held_locks: dict[TableName, int] = {}
        self._idle: list[Any] | None = None
        """Connections kept for the next ``session`` while ``reusing_connections`` is in force."""
        self.read_only = read_only or not spec.writable
        """Every session this connector opens is read-only (as far as its engine allows): it reads
        a source, or the connection is never written (``role: source``, ``protected``)."""

    @abstractmethod
    def connect(self) -> Any:
        """A new DB-API connection, transactions under the caller's control."""

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A connection for control statements, closed afterwards; inside ``reusing_connections``
        one kept from an earlier session, given back (its transaction rolled back) if it ended well."""
        idle = self._idle
        conn = idle.pop() if idle else self.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if idle is None or self._idle is not idle or not self.reset_for_reuse(conn):
            conn.close()
        else:
            idle.append(conn)

    def reset_for_reuse(self, conn: Any) -> bool:
        """Make a session's connection ready for the next one (nothing left of its transaction);
        False when it cannot be reused. Safe for DB-API connections whose sessions set nothing
        beyond their own transaction; a connector whose sessions do overrides this."""
        try:
            self.rollback(conn)
            return True
        except Exception:
            return False

    @contextlib.contextmanager
    def reusing_connections(self) -> Iterator[None]:
        """Sessions opened inside reuse one another's connections (threads each take their own),
        which saves a connection set-up per catalog query when many small tables sync in one step;
        every kept connection is closed on the way out."""
        if self._idle is not None:
            yield
            return
        self._idle = idle = []
        try:
            yield
        finally:
            self._idle = None
            for conn in idle:
                with contextlib.suppress(Exception):
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

    def endpoint_schema(self, endpoint: HttpEndpoint, stream: str) -> pa.Schema:
        """The columns of an HTTP endpoint's records (HTTP sources; a database has tables instead)."""
        raise ConfigError(f"stream {stream!r}: connection {self.name!r} is a {self.kind} database, not an HTTP API")

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

    def fetch_canonical(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """``fetch`` for a query over ``types.canonical`` texts (verification): under the session
        settings those texts assume, and tuned for grouped scans of whole tables."""
        return self.fetch(sql, params)

    def count(self, request: ReadRequest, schema: pa.Schema) -> int:
        sql, params = self.render_select(request, schema, count_only=True)
        return int(self.scalar(sql, params) or 0)

    def count_by_window(self, request: ReadRequest, schema: pa.Schema, column: str,
                        bounds: Sequence[tuple[Any, Any]]) -> list[int]:
        """The request's rows in each ``[low, high)`` window of ``column``, counted in one scan per
        ``WINDOWS_PER_SCAN`` windows (a ``SUM(CASE ...)`` each; every engine takes it). The bounds
        are a one-row table joined after the request's own query, so their bind parameters follow
        the request's in every parameter style."""
        field = schema.field(column)
        inner, inner_params = self.render_select(request, schema, select_list=self.quote(column))
        quoted = self.quote(column)
        counts: list[int] = []
        for start in range(0, len(bounds), WINDOWS_PER_SCAN):
            part = bounds[start:start + WINDOWS_PER_SCAN]
            first = len(inner_params) + 1
            columns = ", ".join(f"{self.typed_placeholder(first + i, field)} AS b{i}" for i in range(2 * len(part)))
            sums = ", ".join(f"SUM(CASE WHEN w.{quoted} >= b.b{2 * i} AND w.{quoted} < b.b{2 * i + 1} "
                             "THEN 1 ELSE 0 END)" for i in range(len(part)))
            params = [self.bind_value(v, field) for window in part for v in window]
            row = self.fetch(f"SELECT {sums} FROM ({inner}) AS w CROSS JOIN (SELECT {columns}) AS b",
                             [*inner_params, *params])[0]
            counts += [int(value or 0) for value in row]
        return counts

    def enforces_primary_key(self, table: TableName, key: Sequence[str]) -> bool:
        """True when ``table``'s own PRIMARY KEY constraint is on exactly ``key``, so it cannot
        hold two rows with one key (False: no such constraint, or the engine does not say)."""
        return False

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
            if isinstance(flt, KeysIn):
                clauses.append(self._keys_in_clause(flt, schema, params, style))
                continue
            value = self.bound_value_sql(flt.value, schema.field(flt.column), params, style)
            clauses.append(f"{self.quote(flt.column)} {flt.op} {value}")
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def bound_value_sql(self, value: Any, field: pa.Field, params: list[Any], style: str | None) -> str:
        """The SQL standing for a filter value compared in ``field``'s type: a typed placeholder,
        with the value appended to ``params``."""
        params.append(self.bind_value(value, field))
        return self.typed_placeholder(len(params), field, style)

    def _keys_in_clause(self, flt: KeysIn, schema: pa.Schema, params: list[Any], style: str | None) -> str:
        """``k IN (...)``, or ``(k1 = v1 AND k2 = v2) OR ...`` for a composite key (no row-value IN:
        T-SQL lacks it)."""
        if not flt.keys:
            return "1 = 0"
        fields = [schema.field(c) for c in flt.columns]
        if len(fields) == 1:
            marks = ", ".join(self.bound_value_sql(v, fields[0], params, style) for (v,) in flt.keys)
            return f"{self.quote(fields[0].name)} IN ({marks})"
        return "(" + " OR ".join(
            "(" + " AND ".join(f"{self.quote(f.name)} = {self.bound_value_sql(v, f, params, style)}"
                               for f, v in zip(fields, key, strict=True)) + ")"
            for key in flt.keys) + ")"

    def _keyset_clause(self, flt: KeysetFilter, schema: pa.Schema, params: list[Any], style: str | None) -> str:
        def compare(column: str, value: Any, op: str) -> str:
            return f"{self.quote(column)} {op} {self.bound_value_sql(value, schema.field(column), params, style)}"

        strict, last = ("<", "<=") if flt.op == "<=" else (">", ">")
        pairs = list(zip(flt.columns, flt.values, strict=True))

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
        order = ""
        if request.order_by:
            order = " ORDER BY " + ", ".join(self.quote(c) + direction for c in request.order_by)
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
    def write(self, op: WriteOp, stream: SourceStream, reads: SourceReads | None = None) -> WriteResult:
        """Load ``stream`` into ``op.table`` atomically; ``reads`` opens the further reads of the
        source the write may need (every key when ``op.deletes`` checks this run; key hashes and
        rows by key for ``hash_delta``)."""

    @abstractmethod
    def ddl_type(self, field: pa.Field) -> str:
        """The column type this database uses to store a canonical Arrow field."""

    def close(self) -> None:  # noqa: B027  (an optional hook: most connectors pool nothing)
        """Release pooled connections (connectors open connections per operation by default)."""
