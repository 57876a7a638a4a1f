"""SQL Server: connection, catalog discovery, Arrow reads and the T-SQL write path.

Two layers live here:

- The ODBC plumbing, free of any SQL dialect: choosing the driver, building the connection
  string, connecting with a login and a query timeout (``odbc_connect``), streaming a query as
  Arrow record batches (``read_arrow_batches``, arrow-odbc: the ODBC driver fills column buffers
  that become Arrow arrays in Rust, no Python object per value) and bulk-inserting Arrow batches
  (``bulk_insert``, arrow-odbc's array-bound INSERT). The tests run these for real against
  PostgreSQL through psqlODBC.
- ``MssqlConnector``: the T-SQL dialect (``[quoting]``, ``TOP``, ``sp_rename`` swap, ``MERGE``,
  ``IDENTITY_INSERT``) and the catalog views; the structure-keeping full refresh (staging +
  partition switch) is scripted by ``mssql_switch``.

Types and value conversions are in ``mssql_types``. Driver choice: ``options.driver`` (a name
registered with unixODBC or a path to the driver library), else Microsoft ODBC Driver 18/17 when
registered, else the Microsoft driver shipped in the PyPI wheel ``mssql-python-odbc`` (loaded by
path), else FreeTDS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import pyarrow as pa

from sync_assets.config.connection_options import MssqlOptions
from sync_assets.config.names import TableName
from sync_assets.connectors.interface import (
    ForeignKey,
    SchemaInfo,
    StructureKeepingReplace,
    TableInfo,
    WriteOp,
    WriteResult,
    foreign_keys_from_rows,
)
from sync_assets.connectors.locking import lock_resource, wait_until_acquired, waited
from sync_assets.connectors.mssql import switch, types
from sync_assets.connectors.mssql.odbc import (
    OdbcLimits,
    bulk_insert,
    connection_string,
    odbc_connect,
    read_arrow_batches,
    resolve_driver,
)
from sync_assets.connectors.mssql.types import nstring
from sync_assets.connectors.requests import ReadRequest, SourceStream
from sync_assets.connectors.sql_write import SqlConnector
from sync_assets.types.arrow import native_type

KIND = types.KIND


# -- the connector ---------------------------------------------------------------------------
_COLUMNS_SQL = (
    "SELECT c.name, TYPE_NAME(CASE WHEN c.system_type_id = 240 THEN c.user_type_id ELSE c.system_type_id END), "
    "c.max_length, c.precision, c.scale, c.is_nullable "
    "FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(?) ORDER BY c.column_id"
)


_DESCRIBE_SQL = (
    "SELECT name, system_type_name, is_nullable FROM sys.dm_exec_describe_first_result_set(?, NULL, 0) "
    "WHERE is_hidden = 0 ORDER BY column_ordinal"
)


_TABLES_SQL = (
    "SELECT s.name, o.name, rc.row_count, sz.size_bytes, "
    "CASE o.type WHEN 'V' THEN 'view' ELSE 'table' END, o.modify_date "
    "FROM sys.objects AS o JOIN sys.schemas AS s ON s.schema_id = o.schema_id "
    "OUTER APPLY (SELECT SUM(p.rows) AS row_count FROM sys.partitions AS p "
    "WHERE p.object_id = o.object_id AND p.index_id IN (0, 1)) AS rc "
    "OUTER APPLY (SELECT SUM(a.total_pages) * 8192 AS size_bytes FROM sys.partitions AS p "
    "JOIN sys.allocation_units AS a ON a.container_id = p.partition_id WHERE p.object_id = o.object_id) AS sz "
    "WHERE o.type IN ('U', 'V') AND o.is_ms_shipped = 0"
)


_DATABASES_SQL = "SELECT name FROM sys.databases WHERE HAS_DBACCESS(name) = 1 AND state = 0 ORDER BY name"
"""Online databases (state 0) this login can open, system databases included."""


_SCHEMAS_SQL = (
    "SELECT s.name, COUNT(o.object_id) FROM sys.schemas AS s "
    "LEFT JOIN sys.objects AS o ON o.schema_id = s.schema_id AND o.type IN ('U', 'V') AND o.is_ms_shipped = 0 "
    "WHERE s.name NOT IN ('sys', 'INFORMATION_SCHEMA', 'guest') "
    "AND NOT EXISTS (SELECT 1 FROM sys.database_principals AS r "
    "WHERE r.principal_id = s.principal_id AND r.name = s.name AND r.is_fixed_role = 1) "
    "GROUP BY s.name ORDER BY s.name"
)
"""Schemas with the tables and views ``_TABLES_SQL`` lists in each; the built-in ``sys``,
``INFORMATION_SCHEMA`` and ``guest`` and the ``db_*`` schemas owned by their namesake fixed
database roles are left out."""


_PRIMARY_KEY_SQL = (
    "SELECT c.name FROM sys.indexes AS i "
    "JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id "
    "JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id "
    "WHERE i.object_id = OBJECT_ID(?) AND i.is_primary_key = 1 ORDER BY ic.key_ordinal"
)


_FOREIGN_KEYS_SQL = (
    "SELECT OBJECT_SCHEMA_NAME(fk.parent_object_id), OBJECT_NAME(fk.parent_object_id), "
    "OBJECT_SCHEMA_NAME(fk.referenced_object_id), OBJECT_NAME(fk.referenced_object_id), fk.name, pc.name "
    "FROM sys.foreign_keys AS fk "
    "JOIN sys.foreign_key_columns AS fkc ON fkc.constraint_object_id = fk.object_id "
    "JOIN sys.columns AS pc ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id "
    "ORDER BY 1, 2, fk.name, fkc.constraint_column_id"
)


_IDENTITY_SQL = "SELECT name FROM sys.identity_columns WHERE object_id = OBJECT_ID(?)"


_UNBOUNDED_KEY_TYPES = {"nvarchar(max)": "nvarchar(450)", "varchar(max)": "varchar(900)",
                        "varbinary(max)": "varbinary(900)"}


GET_WRITER_LOCK = ("SET NOCOUNT ON; DECLARE @granted int; EXEC @granted = sp_getapplock @Resource = ?, "
                   "@LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; SELECT @granted")
"""Try once to take a table's writer lock for the session (0 or 1: granted; -1: another session
holds it). Polled by ``acquire_writer_lock``, so the ODBC query timeout never cuts a long wait."""


class MssqlConnector(SqlConnector):
    kind = KIND
    param_style = "qmark"
    keys_enforced_by_constraint = False
    max_identifier_bytes = 128
    default_schema = "dbo"

    def __init__(self, name, spec, *, read_only: bool = False):
        super().__init__(name, spec, read_only=read_only)
        self.opts = MssqlOptions.model_validate(self.options)
        self.limits = OdbcLimits(self.opts.login_timeout_s, self.opts.query_timeout_s,
                                 self.opts.max_text_bytes, self.opts.max_binary_bytes)
        self._driver: str | None = None
        self._declared_types: dict[TableName, dict[str, str]] = {}

    # -- connections ---------------------------------------------------------------------------
    @property
    def application_intent_read_only(self) -> bool:
        """ApplicationIntent=ReadOnly (routing to a readable secondary); it does not stop writes."""
        intent = self.opts.application_intent or ("readonly" if self.spec.role == "source" else "readwrite")
        return intent == "readonly"

    def connection_string(self) -> str:
        if self._driver is None:
            self._driver = resolve_driver(self.opts.driver)
        return connection_string(self.opts, self._driver, self.application_intent_read_only)

    def connect(self) -> Any:
        label = f"connection {self.name!r}: SQL Server {self.opts.server}:{self.opts.port}/{self.opts.database}"
        return odbc_connect(self.connection_string(), self.limits, label)

    @contextlib.contextmanager
    def acquire_writer_lock(self, table: TableName, timeout_s: float) -> Iterator[None]:
        """``sp_getapplock`` owned by a session of its own, held for the whole sync (closing the
        session releases it, also when the process dies)."""
        resource = lock_resource(self.opts.database, self.qualified(TableName(table.schema or "dbo", table.name)))
        conn = self.connect()
        conn.autocommit = True
        try:
            wait_until_acquired(lambda: self.fetch_on(conn, GET_WRITER_LOCK, (resource,))[0][0] >= 0, timeout_s,
                                lambda: f"table {table}: another run is writing it (SQL Server application lock "
                                        f"{resource!r} is held by another session); {waited(timeout_s)}")
            yield
        finally:
            conn.close()

    def execute(self, conn, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = conn.cursor()
        cursor.execute(sql, *params) if params else cursor.execute(sql)
        return cursor.rowcount

    def commit(self, conn) -> None:
        conn.commit()

    def rollback(self, conn) -> None:
        conn.rollback()

    def fetch_on(self, conn, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = conn.cursor()
        cursor.execute(sql, *params) if params else cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.session() as conn:
            return self.fetch_on(conn, sql, params)

    # -- catalog -------------------------------------------------------------------------------
    def quote(self, identifier: str) -> str:
        return "[" + identifier.replace("]", "]]") + "]"

    def _columns(self, table: TableName) -> list[types.MssqlColumn]:
        return [types.MssqlColumn(name, type_name, max_length, precision, scale, bool(nullable))
                for name, type_name, max_length, precision, scale, nullable
                in self.fetch(_COLUMNS_SQL, (self.qualified(table),))]

    def table_schema(self, table: TableName) -> pa.Schema | None:
        columns = self._columns(table)
        return pa.schema([types.arrow_field(c) for c in columns]) if columns else None

    def native_column_types(self, table: TableName) -> dict[str, str]:
        return {c.name: c.ddl for c in self._columns(table)}

    def query_schema(self, sql: str) -> pa.Schema:
        rows = self.fetch(_DESCRIBE_SQL, (sql,))
        return pa.schema([types.arrow_field(types.column_from_type_text(name, type_text, bool(nullable)))
                          for name, type_text, nullable in rows])

    def schema_exists(self, schema: str) -> bool:
        return bool(self.fetch("SELECT 1 FROM sys.schemas WHERE name = ?", (schema,)))

    @property
    def database_name(self) -> str:
        """The server's spelling of ``options.database`` (names are usually case-insensitive)."""
        return self.scalar("SELECT DB_NAME()")

    def list_databases(self) -> list[str]:
        """Online databases of the server that this login can open (``sys.databases``)."""
        return [row[0] for row in self.fetch(_DATABASES_SQL)]

    def list_schemas(self) -> list[SchemaInfo]:
        """User schemas (``dbo`` included) with their tables and views, from ``sys.schemas``."""
        return [SchemaInfo(name, count) for name, count in self.fetch(_SCHEMAS_SQL)]

    def list_tables(self, schema: str | None = None) -> list[TableInfo]:
        sql, params = _TABLES_SQL, ()
        if schema is not None:
            sql, params = sql + " AND s.name = ?", (schema,)
        rows = self.fetch(sql + " ORDER BY s.name, o.name", params)
        return [TableInfo(TableName(s, t), None if n is None else int(n), None if size is None else int(size),
                          kind, modified)
                for s, t, n, size, kind, modified in rows]

    def primary_key(self, table: TableName) -> tuple[str, ...]:
        return tuple(row[0] for row in self.fetch(_PRIMARY_KEY_SQL, (self.qualified(table),)))

    def foreign_keys(self) -> list[ForeignKey]:
        """Foreign keys from ``sys.foreign_keys`` (child columns in constraint order)."""
        return foreign_keys_from_rows(self.fetch(_FOREIGN_KEYS_SQL))

    def identity_columns(self, table: TableName) -> set[str]:
        return {row[0] for row in self.fetch(_IDENTITY_SQL, (self.qualified(table),))}

    def max_value(self, table: TableName, column: str) -> Any:
        """``MAX(column)``; a ``datetime2`` maximum is read as text so its 7th digit survives."""
        native = self.native_column_types(table).get(column, "")
        if native.startswith("datetime2"):
            return types.parse_datetime2_text(self.scalar(
                f"SELECT CONVERT(varchar(27), MAX({self.quote(column)}), 121) FROM {self.qualified(table)}"
            ))
        return super().max_value(table, column)

    # -- reading -------------------------------------------------------------------------------
    def select_expression(self, field: pa.Field) -> str:
        return types.read_expression(self.quote(field.name), field)

    def bind_value(self, value: Any, field: pa.Field | None = None) -> Any:
        return types.bind_text(value, native_type(field, KIND) if field is not None else None)

    def typed_placeholder(self, index: int, field: pa.Field, style: str | None = None) -> str:
        """``?`` bound as text and converted to the column's own type (``datetime`` stays ``datetime``)."""
        column_type = native_type(field, KIND) or types.ddl_type(field)
        if column_type == "rowversion":
            return "CONVERT(binary(8), ?, 1)"
        if column_type.split("(")[0] in ("binary", "varbinary"):
            return f"CONVERT({column_type}, ?, 1)"
        return f"CAST(? AS {column_type})"

    def limit_clause(self, limit: int) -> str:
        return f" ORDER BY (SELECT NULL) OFFSET 0 ROWS FETCH NEXT {int(limit)} ROWS ONLY"

    def select_sql(self, columns: str, source: str, where: str, order: str, limit: int | None, offset: int = 0) -> str:
        """T-SQL has no LIMIT: ``TOP (n)``, or ``OFFSET .. FETCH`` after the ORDER BY to skip rows."""
        if offset and limit is not None and order:
            return (f"SELECT {columns} FROM {source}{where}{order} "
                    f"OFFSET {int(offset)} ROWS FETCH NEXT {int(limit)} ROWS ONLY")
        top = f"TOP ({int(limit)}) " if limit is not None else ""
        return f"SELECT {top}{columns} FROM {source}{where}{order}"

    def count_sql(self, source: str, where: str, limit: int | None) -> str:
        top = f"TOP ({int(limit)}) " if limit is not None else ""
        return f"SELECT COUNT_BIG(*) FROM (SELECT {top}1 AS one FROM {source}{where}) AS sync_count"

    def add_column_sql(self, table: TableName, column: str, column_type: str) -> str:
        return f"ALTER TABLE {self.qualified(table)} ADD {self.quote(column)} {column_type}"

    def open_stream(self, request: ReadRequest, schema: pa.Schema) -> SourceStream:
        def open_batches() -> pa.RecordBatchReader:
            sql, params = self.render_select(request, schema)
            fetch_schema = pa.schema([pa.field(f.name, types.fetch_type(f)) for f in schema])
            raw = read_arrow_batches(self.connection_string(), sql, params, fetch_schema, request.batch_size,
                                     self.limits)
            return pa.RecordBatchReader.from_batches(schema, (types.canonical_batch(b, schema) for b in raw))

        return SourceStream(schema=schema, open_batches=open_batches)

    # -- writing -------------------------------------------------------------------------------
    def ddl_type(self, field: pa.Field) -> str:
        return types.ddl_type(field)

    def load_type(self, field: pa.Field) -> str:
        return types.load_type(field)

    def cast_expression(self, column: str, target_type: str, qualifier: str = "") -> str:
        return types.cast_from_staging(f"{qualifier + '.' if qualifier else ''}{self.quote(column)}", target_type)

    def create_table_sql(self, table: TableName, schema: pa.Schema, types_: Sequence[str]) -> str:
        """Also remembers the declared types: the primary key step needs them for tables that
        are created in the same transaction (the typed stage), before the catalog shows them."""
        self._declared_types[table] = dict(zip(schema.names, types_, strict=True))
        return super().create_table_sql(table, schema, types_)

    def create_schema_sql(self, schema: str) -> str:
        return f"CREATE SCHEMA {self.quote(schema)}"

    def rename_table_sql(self, table: TableName, new_name: str) -> list[str]:
        return [f"EXEC sp_rename {nstring(self.qualified(table))}, {nstring(new_name)}, N'OBJECT'"]

    def add_primary_key_sql(self, table: TableName, key: Sequence[str], final_name: str) -> list[str]:
        """Key columns become NOT NULL (unbounded types get index-sized ones), then a PRIMARY KEY
        under a temporary name, renamed by ``after_swap_sql`` once the old table is gone."""
        if not key:
            return []
        declared = self._declared_types.get(table) or self.native_column_types(table)
        statements = [
            f"ALTER TABLE {self.qualified(table)} ALTER COLUMN {self.quote(k)} "
            f"{_UNBOUNDED_KEY_TYPES.get(declared[k], declared[k])} NOT NULL"
            for k in key
        ]
        statements.append(
            f"ALTER TABLE {self.qualified(table)} ADD CONSTRAINT {self.quote(_pk_name(final_name) + '__sync_new')} "
            f"PRIMARY KEY ({', '.join(self.quote(k) for k in key)})"
        )
        return statements

    def after_swap_sql(self, table: TableName, key: Sequence[str]) -> list[str]:
        if not key:
            return []
        temporary = TableName(table.schema, _pk_name(table.name) + "__sync_new")
        return [f"EXEC sp_rename {nstring(self.qualified(temporary))}, {nstring(_pk_name(table.name))}, N'OBJECT'"]

    def identity_insert_sql(self, table: TableName, enabled: bool) -> str:
        return f"SET IDENTITY_INSERT {self.qualified(table)} {'ON' if enabled else 'OFF'}"

    def _with_identity_insert(self, target: TableName, columns: Sequence[str], statements: list[str]) -> list[str]:
        if not self.identity_columns(target) & set(columns):
            return statements
        return [self.identity_insert_sql(target, True), *statements, self.identity_insert_sql(target, False)]

    def insert_select_sql(self, target: TableName, staging: TableName, columns: Sequence[str],
                          casts: dict[str, str]) -> str:
        """INSERT ... SELECT, inside ``IDENTITY_INSERT`` ON/OFF when it writes an identity column."""
        insert = super().insert_select_sql(target, staging, columns, casts)
        return "; ".join(self._with_identity_insert(target, columns, [insert]))

    def merge_sql(self, target: TableName, staging: TableName, columns: Sequence[str], key: Sequence[str],
                  casts: dict[str, str]) -> list[str]:
        """One MERGE on the primary key (HOLDLOCK: no concurrent insert of the same key slips in)."""
        identity = self.identity_columns(target)
        selected = ", ".join(
            f"{self.cast_expression(c, casts[c])} AS {self.quote(c)}" if c in casts else self.quote(c) for c in columns
        )
        match = " AND ".join(f"tgt.{self.quote(k)} = src.{self.quote(k)}" for k in key)
        updates = ", ".join(f"tgt.{self.quote(c)} = src.{self.quote(c)}"
                            for c in columns if c not in key and c not in identity)
        when_matched = f" WHEN MATCHED THEN UPDATE SET {updates}" if updates else ""
        column_list = ", ".join(self.quote(c) for c in columns)
        values = ", ".join(f"src.{self.quote(c)}" for c in columns)
        merge = (
            f"MERGE INTO {self.qualified(target)} WITH (HOLDLOCK) AS tgt "
            f"USING (SELECT {selected} FROM {self.qualified(staging)}) AS src ON {match}{when_matched} "
            f"WHEN NOT MATCHED BY TARGET THEN INSERT ({column_list}) VALUES ({values});"
        )
        if identity & set(columns):
            return [self.identity_insert_sql(target, True), merge, self.identity_insert_sql(target, False)]
        return [merge]

    def apply_merge(self, conn, target: TableName, staging: TableName, columns: Sequence[str], key: Sequence[str],
                    casts: dict[str, str], result: WriteResult) -> tuple[int, int]:
        """The MERGE in one batch that counts its own actions (``OUTPUT $action``)."""
        batch = merge_counting_batch(self.merge_sql(target, staging, columns, key, casts))
        inserted, updated = self.fetch_on(conn, batch)[0]
        result.statements.append(batch)
        return int(inserted), int(updated)

    def structure_keeping_replace(self, conn, op: WriteOp, columns: Sequence[str]) -> StructureKeepingReplace | None:
        """Staging + partition switch (``mssql_switch``) for ``switch``, and for ``auto`` when the
        target is partitioned (a rename would lose its partition scheme and indexes)."""
        catalog = partial(self.fetch_on, conn)
        if op.load_method == "rename" or (
                op.load_method == "auto" and not switch.is_partitioned(catalog, self.qualified(op.table))):
            return None
        layout = switch.read_layout(catalog, self.qualified(op.table))
        switch.check_switchable(layout, op.table, columns)  # before hours of loading, not after
        return lambda staging, schema, casts: switch.switch_replace_sql(self, layout, op.table, staging,
                                                                        schema.names, casts)

    def bulk_load(self, conn, staging: TableName, stream: SourceStream, schema: pa.Schema) -> tuple[int, bool]:
        rows = bulk_insert(stream.counted_batches(), self.qualified(staging), [self.quote(n) for n in schema.names],
                           self.connection_string(), self.limits, chunk_size=_insert_chunk_rows(schema))
        return rows, False


def merge_counting_batch(statements: Sequence[str]) -> str:
    """The merge statements as one batch whose only result is (rows inserted, rows updated)."""
    counted = [f"{sql.rstrip(';')} OUTPUT $action INTO @applied" if sql.startswith("MERGE") else sql
               for sql in statements]
    return ("SET NOCOUNT ON; DECLARE @applied TABLE (action nvarchar(10)); " + "; ".join(counted) +
            "; SELECT COUNT(CASE WHEN action = 'INSERT' THEN 1 END), COUNT(CASE WHEN action = 'UPDATE' THEN 1 END) "
            "FROM @applied")


def _pk_name(table_name: str) -> str:
    return f"PK_{table_name[:100]}"


def _insert_chunk_rows(schema: pa.Schema) -> int:
    """Rows per array-bound INSERT round trip: fewer for wide rows, so the bound buffers stay small."""
    unbounded = sum(1 for f in schema if types.ddl_type(f).endswith("(max)"))
    return 1_000 if unbounded else 10_000
