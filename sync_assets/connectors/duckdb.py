"""DuckDB: an embedded file as a source or a target, through DuckDB's own Arrow scans.

Reads stream with ``fetch_record_batch`` (DuckDB exports UUID and JSON losslessly when
``arrow_lossless_conversion`` is on); writes let DuckDB scan an Arrow ``RecordBatchReader``
directly (no copy, no Python rows). DuckDB allows one writing process per file, so the Dagster
wiring gives each DuckDB target a writer pool of size 1. Targets get no PRIMARY KEY constraint:
DuckDB's ART indexes slow bulk loads and cost memory; merges match keys with a join instead.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from sync_assets.arrow_types import conforming_reader, logical_type, make_field, native_type, simple_type_name
from sync_assets.connectors.base import ReadRequest, SchemaInfo, SourceStream, SqlConnector, TableInfo
from sync_assets.spec import TableName

KIND = "duckdb"


class DuckDBOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    memory_limit: str = "64MB"
    threads: int | None = None
    string_compression: bool = True
    """False skips DuckDB's dictionary+FSST string compression on loads: about 1.15-1.6x faster
    bulk loads of text-heavy tables (less CPU), for files about 60% larger (measured in bench/)."""


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


class DuckDBConnector(SqlConnector):
    kind = KIND
    param_style = "qmark"

    def __init__(self, name, spec):
        super().__init__(name, spec)
        self.opts = DuckDBOptions.model_validate(self.options)

    @property
    def path(self) -> Path:
        return Path(self.opts.path)

    @property
    def read_only(self) -> bool:
        return not self.spec.writable

    def connect(self, *, for_write: bool = False):
        import duckdb

        if for_write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"memory_limit": self.opts.memory_limit, "arrow_lossless_conversion": True}
        if self.opts.threads:
            config["threads"] = self.opts.threads
        read_only = not for_write and self.path.exists() and self.read_only
        conn = duckdb.connect(str(self.path), read_only=read_only, config=config)
        conn.execute("SET enable_progress_bar = false").fetchall()
        return conn

    @contextlib.contextmanager
    def session(self):
        conn = self.connect(for_write=True)
        try:
            yield conn
        finally:
            conn.close()

    def execute(self, conn, sql: str, params: Sequence[Any] = ()) -> int:
        rows = conn.execute(sql, list(params) if params else None).fetchall()
        if sql.lstrip().upper().startswith(("DELETE", "INSERT", "UPDATE")) and rows:
            return int(rows[0][0])
        return -1

    def commit(self, conn) -> None:
        with contextlib.suppress(Exception):
            conn.commit()

    def rollback(self, conn) -> None:
        with contextlib.suppress(Exception):
            conn.rollback()

    def fetch_on(self, conn, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return conn.execute(sql, list(params) if params else None).fetchall()

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        if not self.path.exists():
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
        arrow_schema = conn.sql(f"SELECT * FROM {relation_sql} LIMIT 0").to_arrow_table().schema
        described = conn.execute(f"DESCRIBE SELECT * FROM {relation_sql}").fetchall()
        fields = []
        for arrow_field, row in zip(arrow_schema, described):
            duck_type = row[1]
            arrow_type = _arrow_type_for(duck_type) or arrow_field.type
            logical = "json" if duck_type == "JSON" else _READ_AS_TEXT.get(duck_type)
            if duck_type in _LOSSLESS_EXPORTS:
                arrow_type = _LOSSLESS_EXPORTS[duck_type]
            fields.append(make_field(arrow_field.name, arrow_type, nullable=row[2] != "NO",
                                     native_kind=KIND, native_type=duck_type, logical=logical))
        return pa.schema(fields)

    def table_schema(self, table: TableName) -> pa.Schema | None:
        if not self.path.exists():
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
            raw = conn.sql(sql, params=params or None).to_arrow_reader(request.batch_size)

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
            with stream.reraise_failure():
                conn.execute(f"INSERT INTO {self.qualified(staging)} SELECT * FROM sync_assets_batches").fetchall()
        finally:
            conn.unregister("sync_assets_batches")
        conn.commit()
        return stream.rows_read, False
