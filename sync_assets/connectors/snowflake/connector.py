"""Snowflake as a source: catalog, sizing, Arrow reads and the stage-unload fast path.

Snowflake is read-only in sync_assets: this connector lists tables, describes columns and
streams query results; ``write`` and ``ddl_type`` refuse. A session only runs SELECT, SHOW,
DESC and, for the fast path, a temporary stage of its own (see ``sync_assets.snowflake_stage``).
Snowflake has no read-only session mode, so least privilege comes from the configured ``role``.

Identifiers: every name is double-quoted exactly as written in the config, so it is
case-sensitive. Snowflake stores unquoted names in upper case, so a table created as
``create table orders`` is written ``ANALYTICS.ORDERS`` in a stream name. A stream name may
have three parts (``DB.SCHEMA.TABLE``); two parts use the connection's ``database``, one part
its ``database`` and ``schema``.

Types (canonical Arrow; the Snowflake type travels in the field metadata):

==========================  =====================================================================
NUMBER(p,s)                 decimal128(p,s), exact for all 38 digits (the driver's int64 for
                            small scale-0 numbers is widened back to the declared decimal)
FLOAT / DOUBLE / REAL       float64
VARCHAR / STRING / CHAR     string
BINARY / VARBINARY          binary
BOOLEAN                     bool
DATE                        date32
TIME(p)                     time64[us]
TIMESTAMP_NTZ(p)            timestamp[us] without time zone (wall-clock value, as stored)
TIMESTAMP_LTZ / _TZ(p)      timestamp[us, UTC]: the instant, converted to UTC (a TZ value's own
                            offset is not kept)
VARIANT / OBJECT / ARRAY    string holding compact JSON text (``TO_JSON``), logical type ``json``
anything else               string, read through ``TO_VARCHAR``
==========================  =====================================================================

Timestamps and times are read at microseconds (what DuckDB and PostgreSQL targets hold, and
what keeps 9999-12-31 sentinels representable); a value with non-zero nanoseconds fails the read
with a DataError naming the column instead of being truncated silently.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from sync_assets.config.connection_options import SnowflakeOptions
from sync_assets.config.names import TableName
from sync_assets.connectors.interface import Connector, SchemaInfo, TableInfo, WriteOp, WriteResult
from sync_assets.connectors.requests import ReadRequest, SourceStream
from sync_assets.connectors.snowflake.types import (
    arrow_type_for,
    declared_length,
    declared_type_from_description,
    quote_ident,
)
from sync_assets.errors import ConfigError, ConnectionFailed, DataError, SyncAssetsError
from sync_assets.types.arrow import conform_batch, logical_type, make_field, native_type

KIND = "snowflake"


log = logging.getLogger("sync_assets")


TABLE_NOT_FOUND = 2003
"""Snowflake's error number for 'does not exist or not authorized'."""


class SnowflakeConnector(Connector):
    """A Snowflake database as a read-only source."""

    kind = KIND
    param_style = "qmark"

    def __init__(self, name, spec, *, read_only: bool = False):
        super().__init__(name, spec, read_only=read_only)
        self.opts = SnowflakeOptions.model_validate(self.options)

    # -- connections ---------------------------------------------------------------------------
    def connect_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``snowflake.connector.connect``."""
        o = self.opts
        session_parameters: dict[str, Any] = {"TIMEZONE": "UTC", "QUOTED_IDENTIFIERS_IGNORE_CASE": False,
                                              "MULTI_STATEMENT_COUNT": 1}  # one statement per query, always
        if o.statement_timeout_s:
            session_parameters["STATEMENT_TIMEOUT_IN_SECONDS"] = o.statement_timeout_s
        arguments: dict[str, Any] = {
            "account": o.account, "user": o.user, "database": o.database, "schema": o.schema_,
            "login_timeout": o.login_timeout, "request_timeout": o.network_timeout,
            "paramstyle": "qmark", "session_parameters": session_parameters,
            "application": "sync_assets",
            "enable_server_session_keep_alive_auto_detection": False,
        }
        if o.password is not None:
            arguments["password"] = o.password
        else:
            arguments["authenticator"] = "SNOWFLAKE_JWT"
            arguments["private_key_file"] = o.private_key_file
            if o.private_key_passphrase:
                arguments["private_key_file_pwd"] = o.private_key_passphrase
        for key in ("warehouse", "role", "host", "port", "protocol"):
            value = getattr(o, key)
            if value is not None:
                arguments[key] = value
        return arguments

    def connect(self):
        import snowflake.connector

        try:
            return snowflake.connector.connect(**self.connect_arguments())
        except snowflake.connector.errors.Error as exc:
            raise ConnectionFailed(
                f"connection {self.name!r}: cannot connect to Snowflake account {self.opts.account!r} "
                f"as {self.opts.user!r}: {exc}"
            ) from exc

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.session() as conn, contextlib.closing(conn.cursor()) as cur:
            cur.execute(sql, list(params) if params else None)
            return cur.fetchall()

    # -- catalog -------------------------------------------------------------------------------
    def quote(self, identifier: str) -> str:
        return quote_ident(identifier)

    def parts(self, table: TableName) -> tuple[str, str, str]:
        """(database, schema, table) with the connection's defaults filled in."""
        if table.schema is None:
            return self.opts.database, self.opts.schema_, table.name
        if "." in table.schema:
            database, schema = table.schema.split(".", 1)
            return database, schema, table.name
        return self.opts.database, table.schema, table.name

    def qualified(self, table: TableName) -> str:
        return ".".join(self.quote(p) for p in self.parts(table))

    def describe(self, table: TableName) -> list[tuple] | None:
        """DESC TABLE rows, or None when the table does not exist (or is not visible to the role)."""
        import snowflake.connector

        try:
            return self.fetch(f"DESC TABLE {self.qualified(table)}")
        except snowflake.connector.errors.ProgrammingError as exc:
            if exc.errno == TABLE_NOT_FOUND:
                return None
            raise

    def table_schema(self, table: TableName) -> pa.Schema | None:
        columns = [row for row in self.describe(table) or () if row[2] == "COLUMN"]
        if not columns:
            self._suggest_case(table)
            return None
        return pa.schema([self._field(row[0], row[1], nullable=row[3] == "Y") for row in columns])

    def _suggest_case(self, table: TableName) -> None:
        """Quoted names are case-sensitive: name the table the user most likely meant."""
        database, schema, name = self.parts(table)
        matches = self.fetch(
            f"SELECT table_name FROM {self.quote(database)}.INFORMATION_SCHEMA.TABLES "
            "WHERE table_schema = ? AND UPPER(table_name) = UPPER(?) AND table_name <> ?",
            (schema, name, name),
        )
        if matches:
            raise ConfigError(
                f"connection {self.name!r}: table {table} does not exist; names are case-sensitive "
                f"(quoted), did you mean {schema}.{matches[0][0]}?"
            )

    def _field(self, name: str, declared: str, *, nullable: bool) -> pa.Field:
        arrow_type, logical = arrow_type_for(declared)
        return make_field(name, arrow_type, nullable=nullable, native_kind=KIND,
                          native_type=declared.upper(), logical=logical, max_length=declared_length(declared))

    def query_schema(self, sql: str) -> pa.Schema:
        with self.session() as conn, contextlib.closing(conn.cursor()) as cur:
            cur.execute(f"SELECT * FROM ({sql}) AS sync_query LIMIT 0")
            description = cur.description
        return pa.schema([
            self._field(col.name, declared_type_from_description(col.type_code, col.precision, col.scale),
                        nullable=bool(col.is_nullable))
            for col in description
        ])

    @property
    def database_name(self) -> str:
        return self.opts.database

    def list_databases(self) -> list[str]:
        """The account's databases that the session's role can access (INFORMATION_SCHEMA.DATABASES)."""
        return [row[0] for row in self.fetch(
            f"SELECT database_name FROM {self.quote(self.opts.database)}.INFORMATION_SCHEMA.DATABASES "
            "ORDER BY database_name"
        )]

    def list_schemas(self) -> list[SchemaInfo]:
        """The database's schemas visible to the role, with the tables and views of each that
        INFORMATION_SCHEMA.TABLES lists (the INFORMATION_SCHEMA itself left out)."""
        information_schema = f"{self.quote(self.opts.database)}.INFORMATION_SCHEMA"
        rows = self.fetch(
            f"SELECT s.schema_name, COUNT(t.table_name) FROM {information_schema}.SCHEMATA AS s "
            f"LEFT JOIN {information_schema}.TABLES AS t ON t.table_schema = s.schema_name "
            "WHERE s.schema_name <> 'INFORMATION_SCHEMA' GROUP BY s.schema_name ORDER BY s.schema_name"
        )
        return [SchemaInfo(name, count) for name, count in rows]

    def list_tables(self, schema: str | None = None) -> list[TableInfo]:
        """Tables and views with Snowflake's own row counts, bytes and last-altered times."""
        rows = self.fetch(
            f"SELECT table_schema, table_name, row_count, bytes, table_type, last_altered "
            f"FROM {self.quote(self.opts.database)}.INFORMATION_SCHEMA.TABLES "
            "WHERE table_schema <> 'INFORMATION_SCHEMA' AND (CAST(? AS VARCHAR) IS NULL OR table_schema = ?) "
            "ORDER BY table_schema, table_name",
            (schema, schema),
        )
        return [
            TableInfo(TableName(s, t), None if n is None else int(n), None if b is None else int(b),
                         "view" if "VIEW" in (kind or "") else "table", altered)
            for s, t, n, b, kind, altered in rows
        ]

    # -- reading -------------------------------------------------------------------------------
    def select_expression(self, field: pa.Field) -> str:
        column = self.quote(field.name)
        logical = logical_type(field)
        if logical == "json":
            return f"TO_JSON({column}) AS {column}"
        if logical == "text_cast":
            return f"TO_VARCHAR({column}) AS {column}"
        return column

    def column_type_for_filter(self, field: pa.Field) -> str:
        declared = native_type(field, KIND)
        if declared:
            return declared
        raise ConfigError(f"connection {self.name!r}: column {field.name!r} has no Snowflake type to compare in")

    def open_stream(self, request: ReadRequest, schema: pa.Schema) -> SourceStream:
        def open_batches() -> pa.RecordBatchReader:
            if self.use_unload(request, schema):
                from sync_assets.connectors.snowflake.stage import unload_batches

                return pa.RecordBatchReader.from_batches(schema, unload_batches(self, request, schema))
            return pa.RecordBatchReader.from_batches(schema, self._query_batches(request, schema))

        return SourceStream(schema=schema, open_batches=open_batches)

    def use_unload(self, request: ReadRequest, schema: pa.Schema) -> bool:
        """The stage fast path pays for large unfiltered reads; it cannot take bound filters."""
        threshold = self.opts.unload_min_rows
        if threshold is None or request.filters or request.limit is not None:
            return False
        rows = self.count(request, schema)
        log.info("%s: %s rows; stage unload %s (threshold %s)", request.label, f"{rows:,}",
                 "chosen" if rows >= threshold else "not chosen", f"{threshold:,}")
        return rows >= threshold

    def _query_batches(self, request: ReadRequest, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        sql, params = self.render_select(request, schema)
        with self.session() as conn, contextlib.closing(conn.cursor()) as cur:
            cur.execute(sql, params or None)
            for table in cur.fetch_arrow_batches():
                for batch in table.to_batches():
                    yield self.conform(batch, schema, request)

    def conform(self, batch: pa.RecordBatch, schema: pa.Schema, request: ReadRequest) -> pa.RecordBatch:
        """Cast a driver batch to the canonical schema; a lossy cast names its column."""
        try:
            return conform_batch(batch, schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            field = next((f for f, col in zip(schema, batch.columns, strict=True)
                          if not _casts_cleanly(col, f.type)), None)
            what = f"column {field.name!r} ({native_type(field, KIND)}) as {field.type}" if field else "a column"
            raise DataError(
                f"connection {self.name!r}: {request.label}: cannot read {what} without loss: {exc}; "
                "cast it in the stream's 'sql' if truncation is acceptable"
            ) from exc

    # -- a source only -------------------------------------------------------------------------
    def write(self, op: WriteOp, stream: SourceStream, reads=None) -> WriteResult:
        raise self._read_only_error()

    def ddl_type(self, field: pa.Field) -> str:
        raise self._read_only_error()

    def _read_only_error(self) -> SyncAssetsError:
        return ConfigError(
            f"connection {self.name!r}: Snowflake is a source-only connection in sync_assets and is never "
            "written; use it as a replication 'source'"
        )


def _casts_cleanly(column: pa.Array, target: pa.DataType) -> bool:
    if column.type == target:
        return True
    try:
        column.cast(target)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
