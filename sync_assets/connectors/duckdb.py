"""DuckDB: an embedded file as a source or a target, through DuckDB's own Arrow scans.

Reads stream with ``fetch_record_batch`` (DuckDB exports UUID and JSON losslessly when
``arrow_lossless_conversion`` is on); writes let DuckDB scan an Arrow ``RecordBatchReader``
directly (no copy, no Python rows). DuckDB allows one writing process per file: a sync holds a
write connection open as its writer lock (retried while another process holds the file, up to
the table's ``lock_timeout``), and the Dagster wiring gives each DuckDB target a writer pool of
size 1. Targets get no PRIMARY KEY constraint:
DuckDB's ART indexes slow bulk loads and cost memory; merges match keys with a join instead.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from sync_assets.config.connection_options import DuckDBOptions
from sync_assets.config.names import TableName
from sync_assets.connectors.interface import SchemaInfo, TableInfo
from sync_assets.connectors.locking import wait_until_acquired, waited
from sync_assets.connectors.requests import ReadRequest, SourceStream
from sync_assets.connectors.sql_write import SqlConnector
from sync_assets.errors import ConfigError, TargetLocked
from sync_assets.types.arrow import conforming_reader, logical_type, make_field, native_type, simple_type_name

KIND = "duckdb"


_DUCKDB_NAMES = {
    "bool": "BOOLEAN", "int8": "TINYINT", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT",
    "uint8": "UTINYINT", "uint16": "USMALLINT", "uint32": "UINTEGER", "uint64": "UBIGINT", "float16": "FLOAT",
    "float32": "FLOAT", "float64": "DOUBLE", "date": "DATE", "uuid": "UUID", "binary": "BLOB", "interval": "INTERVAL",
}


def duckdb_type_for(field: pa.Field) -> str:
    native = native_type(field, KIND)
    if native:
        return native
    t = field.type
    if logical_type(field) == "json":
        return "JSON"
    simple = simple_type_name(t, _DUCKDB_NAMES)
    if simple:
        return simple
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})" if t.precision <= 38 else "VARCHAR"
    if pa.types.is_timestamp(t):
        if t.tz:
            return "TIMESTAMPTZ"
        return {"s": "TIMESTAMP_S", "ms": "TIMESTAMP_MS", "us": "TIMESTAMP", "ns": "TIMESTAMP_NS"}[t.unit]
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return duckdb_type_for(pa.field("item", t.value_type)) + "[]"
    return "VARCHAR"


_LOSSLESS_EXPORTS = {"BOOLEAN": pa.bool_(), "JSON": pa.string()}
"""DuckDB's lossless Arrow export wraps these in extension types (bool8, json); we use the plain ones."""


_READ_AS_TEXT = {"HUGEINT": "decimal", "UHUGEINT": "decimal", "BIGNUM": "decimal", "VARINT": "decimal",
                 "TIME WITH TIME ZONE": None, "BIT": None}
"""Types read as exact text (logical tag: ``decimal`` for numbers): HUGEINT and UHUGEINT reach 39
digits but DuckDB exports them as decimal128(38, 0); BIGNUM (VARINT), TIMETZ and BIT export as
bytes no other engine reads. A DuckDB target keeps the native type (DuckDB casts the text back)."""


def _arrow_type_for(duck_type: str) -> pa.DataType | None:
    """Only types whose Arrow export needs help; everything else comes from DuckDB's own export."""
    if duck_type in _READ_AS_TEXT:
        return pa.string()
    m = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", duck_type)
    if m:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    return None


_FILE_WRITERS: dict[str, threading.RLock] = {}
"""One writer at a time per DuckDB file among the threads of this process (they share its instance)."""


_FILE_WRITERS_GUARD = threading.Lock()


_FILE_LOCK_HELD = "Could not set lock on file"


_FILE_BEING_CREATED = "is not a valid DuckDB database file"
"""What a process opening a new file sees while another process is still writing its header."""


def _holder_pid(refusal: str | None) -> str:
    """`` (PID n)`` from DuckDB's lock refusal, which names the process holding the file."""
    pid = re.search(r"PID (\d+)", refusal) if refusal else None
    return f" (PID {pid.group(1)})" if pid else ""


def _open_waiting(open_once: Callable[[], Any], wait_s: float, refused_by: tuple[str, ...],
                  refusal_message: Callable[[str | None], str]) -> Any:
    """``open_once()`` retried for up to ``wait_s`` seconds while DuckDB refuses it with one of
    ``refused_by`` (another process holds the file); then ``TargetLocked`` with
    ``refusal_message(DuckDB's last refusal)``."""
    import duckdb

    opened: list[Any] = []
    refusal: list[str] = []

    def try_open() -> bool:
        try:
            opened.append(open_once())
            return True
        except duckdb.IOException as exc:
            if not any(reason in str(exc) for reason in refused_by):
                raise
            refusal[:] = [str(exc)]
            return False

    wait_until_acquired(try_open, wait_s, lambda: refusal_message(refusal[-1] if refusal else None))
    return opened[0]


class DuckDBConnector(SqlConnector):
    kind = KIND
    param_style = "qmark"
    keys_per_read = 10_000

    def __init__(self, name, spec, *, read_only: bool = False):
        super().__init__(name, spec, read_only=read_only)
        self.opts = DuckDBOptions.model_validate(self.options)

    @property
    def path(self) -> Path:
        return Path(self.opts.path)

    def connect(self, *, for_write: bool = False, wait_s: float | None = None):
        """A connection to the file, waiting up to ``open_wait_s`` (or ``wait_s``) while another
        process holds it. A read-only connector's connection is read-only: the file is
        opened ``read_only`` when this process never writes it (``role: source`` or protected);
        otherwise (``role: both``, possibly open for writing by another stream in this process,
        and DuckDB cannot open one file read-only and read-write at once) the connection runs in a
        transaction that is never committed. Either way it runs single SELECTs only (``checked``)."""
        import duckdb

        if self.read_only and not self.path.exists():
            raise ConfigError(f"connection {self.name!r}: DuckDB file {self.path} does not exist")
        if for_write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"memory_limit": self.opts.memory_limit, "arrow_lossless_conversion": True}
        if self.opts.threads:
            config["threads"] = self.opts.threads
        file_read_only = self.read_only and not self.spec.writable
        wait_s = self.opts.open_wait_s if wait_s is None else wait_s

        def open_once() -> Any:
            return duckdb.connect(str(self.path), read_only=file_read_only, config=config)

        conn = open_once() if wait_s <= 0 else _open_waiting(
            open_once, wait_s, (_FILE_LOCK_HELD,),
            lambda refusal: f"connection {self.name!r}: DuckDB file {self.path} is held by another process"
                            f"{_holder_pid(refusal)}; waited {wait_s:g}s (open_wait_s)")
        conn.execute("SET enable_progress_bar = false").fetchall()
        if self.read_only and not file_read_only:
            conn.execute("BEGIN TRANSACTION").fetchall()  # closed without a commit: rolled back
        return conn

    def checked(self, conn, sql: str) -> str:
        """``sql``, once DuckDB's own parser has confirmed, for a read-only connector, that it is
        one SELECT (a ``COPY ... TO``, ``ATTACH`` or ``COMMIT`` would write even on a read-only file)."""
        import duckdb

        if self.read_only:
            statements = conn.extract_statements(sql)
            if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                kinds = ", ".join(s.type.name for s in statements)
                raise ConfigError(f"connection {self.name!r}: a source runs one SELECT only, not {kinds}: {sql}")
        return sql

    @contextlib.contextmanager
    def session(self):
        """A connection that, like a DB-API one, always runs in a transaction: statements take
        effect at ``commit`` and ``rollback`` undoes them. (DuckDB's Python connections otherwise
        commit each statement on its own, which would split the one apply transaction: a failed
        RENAME after the DROP would lose the target.) A read-only connector's connection is
        already inside its never-committed transaction (``connect``)."""
        conn = self.connect(for_write=not self.read_only)
        if not (self.read_only and self.spec.writable):
            conn.begin()
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def acquire_writer_lock(self, table: TableName, timeout_s: float) -> Iterator[None]:
        """DuckDB's own file lock: a write connection held open for the whole sync (the other
        connections of this process share its database instance). While another process holds
        the file (or is still creating it), opening is retried up to ``timeout_s`` seconds; DuckDB's
        refusal names that process's PID, which the ``TargetLocked`` message repeats. Threads take
        turns per file."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with _FILE_WRITERS_GUARD:
            in_process = _FILE_WRITERS.setdefault(str(self.path.resolve()), threading.RLock())
        if not in_process.acquire(timeout=max(timeout_s, 0.0)):
            raise TargetLocked(f"table {table}: another run in this process is writing DuckDB file {self.path}; "
                               f"{waited(timeout_s)}")
        def message(refusal: str | None) -> str:
            if refusal and _FILE_BEING_CREATED in refusal:
                return f"table {table}: DuckDB file {self.path}: {refusal}; {waited(timeout_s)}"
            return (f"table {table}: another process{_holder_pid(refusal)} is writing DuckDB "
                    f"file {self.path} (DuckDB takes one writing process per file); {waited(timeout_s)}")

        try:
            conn = _open_waiting(lambda: self.connect(for_write=True, wait_s=0), max(deadline - time.monotonic(), 0.0),
                                 (_FILE_LOCK_HELD, _FILE_BEING_CREATED), message)
            try:
                yield
            finally:
                conn.close()
        finally:
            in_process.release()

    def execute(self, conn, sql: str, params: Sequence[Any] = ()) -> int:
        rows = conn.execute(sql, list(params) if params else None).fetchall()
        if sql.lstrip().upper().startswith(("DELETE", "INSERT", "UPDATE")) and rows:
            return int(rows[0][0])
        return -1

    def commit(self, conn) -> None:
        conn.commit()
        conn.begin()

    def rollback(self, conn) -> None:
        conn.rollback()
        conn.begin()

    def fetch_on(self, conn, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return conn.execute(self.checked(conn, sql), list(params) if params else None).fetchall()

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        if not self.path.exists() and not self.read_only:
            return []
        with contextlib.closing(self.connect()) as conn:
            return self.fetch_on(conn, sql, params)

    # -- catalog -------------------------------------------------------------------------------
    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def qualified(self, table: TableName) -> str:
        """Catalog-qualified: a schema named like the file (``tgt`` in ``tgt.duckdb``) is unambiguous."""
        return f"{self.quote(self.database_name)}.{self.quote(table.schema or 'main')}.{self.quote(table.name)}"

    def create_schema_sql(self, schema: str) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {self.quote(self.database_name)}.{self.quote(schema)}"

    def _schema_of(self, conn, relation_sql: str) -> pa.Schema:
        arrow_schema = conn.sql(self.checked(conn, f"SELECT * FROM {relation_sql} LIMIT 0")).to_arrow_table().schema
        described = conn.execute(f"DESCRIBE SELECT * FROM {relation_sql}").fetchall()
        fields = []
        for arrow_field, row in zip(arrow_schema, described, strict=True):
            duck_type = row[1]
            arrow_type = _arrow_type_for(duck_type) or arrow_field.type
            logical = "json" if duck_type == "JSON" else _READ_AS_TEXT.get(duck_type)
            if duck_type in _LOSSLESS_EXPORTS:
                arrow_type = _LOSSLESS_EXPORTS[duck_type]
            fields.append(make_field(arrow_field.name, arrow_type, nullable=row[2] != "NO",
                                     native_kind=KIND, native_type=duck_type, logical=logical))
        return pa.schema(fields)

    def enforces_primary_key(self, table: TableName, key: Sequence[str]) -> bool:
        rows = self.fetch("SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = ? AND "
                          "table_name = ? AND constraint_type = 'PRIMARY KEY'", (table.schema or "main", table.name))
        return bool(rows) and set(rows[0][0]) == set(key)

    def table_schema(self, table: TableName) -> pa.Schema | None:
        if not self.path.exists() and not self.read_only:
            return None
        with contextlib.closing(self.connect()) as conn:
            exists = conn.execute(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                [table.schema or "main", table.name],
            ).fetchall()[0][0]
            return self._schema_of(conn, self.qualified(table)) if exists else None

    def native_column_types(self, table: TableName) -> dict[str, str]:
        rows = self.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position", (table.schema or "main", table.name))
        return dict(rows)

    def query_schema(self, sql: str) -> pa.Schema:
        with contextlib.closing(self.connect()) as conn:
            return self._schema_of(conn, f"({sql}) AS sync_query")

    def schema_exists(self, schema: str) -> bool:
        return bool(self.fetch("SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", (schema,)))

    @property
    def database_name(self) -> str:
        """The file's catalog, named after the file (``tgt`` for ``tgt.duckdb``)."""
        return self.path.stem

    def list_databases(self) -> list[str]:
        """The attached catalogs (the file's own; ``system`` and ``temp`` left out); none while
        the file does not exist yet."""
        return [row[0] for row in self.fetch(
            "SELECT database_name FROM duckdb_databases() WHERE NOT internal ORDER BY database_name")]

    def list_schemas(self) -> list[SchemaInfo]:
        """The schemas of the file's own catalog (``main`` included) with their tables and views."""
        rows = self.fetch(
            "SELECT s.schema_name, COUNT(t.table_name) FROM information_schema.schemata AS s "
            "LEFT JOIN information_schema.tables AS t "
            "ON t.table_catalog = s.catalog_name AND t.table_schema = s.schema_name "
            "WHERE s.catalog_name = ? GROUP BY s.schema_name ORDER BY s.schema_name", (self.database_name,))
        return [SchemaInfo(name, count) for name, count in rows]

    def list_tables(self, schema: str | None = None) -> list[TableInfo]:
        rows = self.fetch(
            "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() "
            "WHERE (? IS NULL OR schema_name = ?) ORDER BY 1, 2", (schema, schema))
        return [TableInfo(TableName(s, t), n, None) for s, t, n in rows]

    # -- reading -------------------------------------------------------------------------------
    def select_expression(self, field: pa.Field) -> str:
        if native_type(field, KIND) in _READ_AS_TEXT:
            return f"CAST({self.quote(field.name)} AS VARCHAR) AS {self.quote(field.name)}"
        return self.quote(field.name)

    def open_stream(self, request: ReadRequest, schema: pa.Schema) -> SourceStream:
        def open_batches() -> pa.RecordBatchReader:
            sql, params = self.render_select(request, schema)
            conn = self.connect()
            raw = conn.sql(self.checked(conn, sql), params=params or None).to_arrow_reader(request.batch_size)

            def batches():
                try:
                    yield from raw
                finally:
                    conn.close()

            return conforming_reader(pa.RecordBatchReader.from_batches(raw.schema, batches()), schema)

        return SourceStream(schema=schema, open_batches=open_batches)

    # -- writing -------------------------------------------------------------------------------
    def ddl_type(self, field: pa.Field) -> str:
        return duckdb_type_for(field)

    def column_type_for_filter(self, field: pa.Field) -> str:
        return duckdb_type_for(field)

    def bulk_load(self, conn, staging: TableName, stream: SourceStream, schema: pa.Schema) -> tuple[int, bool]:
        """DuckDB scans the Arrow stream itself, in parallel and without insertion order."""
        conn.execute("SET preserve_insertion_order = false").fetchall()
        if not self.opts.string_compression:
            conn.execute("SET disabled_compression_methods = 'dict_fsst'").fetchall()
        conn.register("sync_assets_batches", stream.counted_batches())
        try:
            conn.execute(f"INSERT INTO {self.qualified(staging)} SELECT * FROM sync_assets_batches").fetchall()
        except BaseException:
            self.rollback(conn)  # first: DuckDB runs nothing in an aborted transaction, not even unregister
            raise
        finally:
            conn.unregister("sync_assets_batches")
        self.commit(conn)
        return stream.rows_read, False
