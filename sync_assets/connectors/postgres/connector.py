"""PostgreSQL: catalog, Arrow reads, bulk writes and the PostgreSQL-to-PostgreSQL COPY fast path.

Drivers: psycopg 3 for control statements and COPY (``COPY ... TO STDOUT`` streams straight
into ``COPY ... FROM STDIN`` in ~1 MB chunks with bounded memory, on libpq directly: see
``postgres_copy``), and the ADBC PostgreSQL
driver for Arrow (it decodes binary COPY into Arrow batches, and encodes Arrow batches into
binary COPY, in C++; no Python object is made per row). ADBC is used through its low-level API:
its DB-API module imports polars eagerly, which costs ~60 MB of resident memory per process.

Types: every column maps to a canonical Arrow type; the exact PostgreSQL type travels in the
field metadata so a PostgreSQL target recreates ``varchar(40)`` or ``numeric(12,2)`` exactly, and
binary COPY bytes can pass through untouched when source and target types match. An enum column
is text everywhere else; a PostgreSQL target creates the enum (name and labels from the field
metadata) in the target table's schema, or uses the one there with exactly those labels, and
refuses one with other labels (``ALTER TYPE ... ADD VALUE`` is the owner's call, not ours).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from sync_assets.config.connection_options import PostgresOptions
from sync_assets.config.names import TableName
from sync_assets.connectors.interface import ForeignKey, SchemaInfo, TableInfo, foreign_keys_from_rows
from sync_assets.connectors.locking import lock_key, wait_until_acquired, waited
from sync_assets.connectors.postgres.adbc import (
    adbc_ingest,
    adbc_query,
    adbc_session,
    arrow_select_list,
    batch_bytes,
    travels_scaled,
    unscale,
)
from sync_assets.connectors.postgres.binary_copy import copy_in_chunks, copy_out_chunks
from sync_assets.connectors.postgres.types import (
    KIND,
    arrow_type_for,
    declared_limits,
    enum_takes,
    label_difference,
    label_list,
    pg_type_for,
    quote_ident,
)
from sync_assets.connectors.requests import ReadRequest, SourceStream
from sync_assets.connectors.sql_write import SqlConnector
from sync_assets.errors import ConnectionFailed, DataError, SchemaMismatchError, SourceReadError, SyncAssetsError
from sync_assets.types import value_edges
from sync_assets.types.arrow import conform_batch, enum_of, logical_type, make_field, native_type
from sync_assets.types.canonical import PINNED_SESSION

READ_ONLY_OPTION = "-c default_transaction_read_only=on"
"""Server option of a read-only connector's sessions: every transaction is read-only."""


NATIVE_COPY = "postgres-binary-copy"


_ENUM_LABELS = "ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)"
"""The labels of enum type ``t``, in their sort order."""


_CATALOG_COLUMNS = f"""
SELECT a.attname,
       format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
                   CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END),
       NOT a.attnotnull,
       t.typtype,
       t.typname,
       CASE WHEN t.typtype = 'e' THEN {_ENUM_LABELS} END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.oid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


_PRIMARY_KEY_COLUMNS = """
SELECT a.attname
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
"""


_LISTED_RELATIONS = "c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition"
"""Tables, partitioned tables, views and materialized views; partitions count as their parent."""


_USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'"
"""Every schema but the system catalogs, TOAST storage and sessions' temporary schemas."""


_LOCK_HOLDER = """
SELECT a.pid, a.application_name, a.client_addr, a.state_change
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s AND l.objid::bigint = %s
"""
"""Who holds a bigint advisory lock (its high and low 32 bits are ``classid`` and ``objid``). The
holder's session is idle from the moment it took the lock, so ``state_change`` is when it did."""


class PostgresConnector(SqlConnector):
    kind = KIND
    param_style = "format"
    keys_per_read = 10_000
    keys_enforced_by_constraint = True
    max_identifier_bytes = 63
    default_schema = "public"

    def __init__(self, name, spec, *, read_only: bool = False):
        super().__init__(name, spec, read_only=read_only)
        self.opts = PostgresOptions.model_validate(self.options)

    # -- connections ---------------------------------------------------------------------------
    def conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        o = self.opts
        return make_conninfo(
            host=o.host, port=o.port, dbname=o.database, user=o.user, password=o.password or None,
            sslmode=o.sslmode, connect_timeout=o.connect_timeout, application_name=o.application_name,
            options=READ_ONLY_OPTION if self.read_only else None,
        )

    def uri(self) -> str:
        from urllib.parse import quote

        o = self.opts
        auth = quote(o.user, safe="") + (":" + quote(o.password, safe="") if o.password else "")
        return (f"postgresql://{auth}@{o.host}:{o.port}/{quote(o.database, safe='')}"
                f"?sslmode={o.sslmode}&connect_timeout={o.connect_timeout}&application_name={o.application_name}"
                + (f"&options={quote(READ_ONLY_OPTION, safe='')}" if self.read_only else ""))

    def connect(self):
        import psycopg

        try:
            conn = psycopg.connect(self.conninfo())
        except psycopg.OperationalError as exc:
            raise ConnectionFailed(f"connection {self.name!r}: cannot connect to PostgreSQL "
                                   f"{self.opts.host}:{self.opts.port}/{self.opts.database}: {exc}") from exc
        if self.opts.statement_timeout_s:
            conn.execute(f"SET statement_timeout = {int(self.opts.statement_timeout_s) * 1000}")
            conn.commit()
        return conn

    def execute(self, conn, sql: str, params: Sequence[Any] = ()) -> int:
        cur = conn.execute(sql, params or None)
        return cur.rowcount

    @contextlib.contextmanager
    def acquire_writer_lock(self, table: TableName, timeout_s: float) -> Iterator[None]:
        """A session-level advisory lock on a key hashed from the database and table, held by a
        connection of its own for the whole sync (closing it releases the lock, also when the
        process dies). Polled with ``pg_try_advisory_lock`` up to ``timeout_s`` seconds."""
        key = lock_key(self.opts.database, self.qualified(TableName(table.schema or "public", table.name)))
        conn = self.connect()
        conn.autocommit = True
        try:
            wait_until_acquired(
                lambda: conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0], timeout_s,
                lambda: f"table {table}: another run is writing it{self._holder(conn, key)}; {waited(timeout_s)}")
            yield
        finally:
            conn.close()

    @staticmethod
    def _holder(conn, key: int) -> str:
        unsigned = key % (1 << 64)
        rows = conn.execute(_LOCK_HOLDER, (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchall()
        if not rows:
            return ""
        pid, application, client, since = rows[0]
        return (f" (PostgreSQL backend {pid}, application {application!r}"
                f"{f' from {client}' if client else ''}, since {since:%Y-%m-%d %H:%M:%S %Z})")

    def commit(self, conn) -> None:
        conn.commit()

    def rollback(self, conn) -> None:
        conn.rollback()

    def is_key_violation(self, exc: BaseException) -> bool:
        import psycopg.errors

        return isinstance(exc, (psycopg.errors.UniqueViolation, psycopg.errors.NotNullViolation,
                                psycopg.errors.CardinalityViolation))

    def fetch_on(self, conn, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """A read-only connector prepares every query: the extended protocol runs exactly one
        statement, so no ``COMMIT; SET default_transaction_read_only = off; ...`` can follow."""
        return conn.execute(sql, params or None, prepare=True if self.read_only else None).fetchall()

    def primary_key_columns(self, conn, table: TableName) -> set[str]:
        return {row[0] for row in self.fetch_on(conn, _PRIMARY_KEY_COLUMNS, (self.qualified(table),))}

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.session() as conn:
            return self.fetch_on(conn, sql, params)

    def fetch_canonical(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Under ``PINNED_SESSION`` (ISO dates, shortest floats, UTC), and with sorting off: the
        planner takes ``key % 64`` for as many groups as keys, and would sort whole rows to
        group them where a hash of 64 groups suffices (about a third of a 2 M-row diff)."""
        with self.session() as conn:
            for setting in [*PINNED_SESSION[KIND], "SET LOCAL enable_sort = off"]:
                conn.execute(setting)
            rows = self.fetch_on(conn, sql, params)
            conn.rollback()
            return rows

    # -- catalog -------------------------------------------------------------------------------
    def quote(self, identifier: str) -> str:
        return quote_ident(identifier)

    def _catalog(self, table: TableName) -> list[tuple]:
        return self.fetch(_CATALOG_COLUMNS, (self.qualified(TableName(table.schema or "public", table.name)),))

    def _schema_from_catalog(self, rows: list[tuple]) -> pa.Schema:
        """Rows of (name, ``format_type``, nullable, ``typtype``, type name, enum labels or NULL).
        An enum is read as text; its name and labels travel in the field (``enum_of``)."""
        fields = []
        for name, pg_type, nullable, typtype, type_name, labels in rows:
            arrow_type, logical, needs_cast = arrow_type_for(pg_type)
            native = "text" if typtype == "e" else pg_type
            max_length, fraction_digits = declared_limits(native)
            fields.append(make_field(name, arrow_type, nullable=nullable, native_kind=KIND,
                                     native_type=native, logical=logical or ("text_cast" if needs_cast else None),
                                     max_length=max_length, fraction_digits=fraction_digits,
                                     enum=(type_name, labels) if typtype == "e" else None))
        return pa.schema(fields)

    def table_schema(self, table: TableName) -> pa.Schema | None:
        rows = self._catalog(table)
        return self._schema_from_catalog(rows) if rows else None

    def native_column_types(self, table: TableName) -> dict[str, str]:
        return {row[0]: row[1] for row in self._catalog(table)}

    def query_schema(self, sql: str) -> pa.Schema:
        """The result columns as the server describes them (domains as their base types), from a
        prepared ``LIMIT 0`` run: nothing is created, so it works in a read-only session."""
        with self.session() as conn:
            result = conn.execute(f"SELECT * FROM ({sql}) AS sync_query LIMIT 0", prepare=True).pgresult
            columns = [(result.fname(i).decode(), result.ftype(i), result.fmod(i)) for i in range(result.nfields)]
            types = self.fetch_on(
                conn, "SELECT format_type(c.oid, c.typmod), t.typtype, t.typname, "
                      f"CASE WHEN t.typtype = 'e' THEN {_ENUM_LABELS} END "
                      "FROM unnest(%s::oid[], %s::int4[]) "
                      "WITH ORDINALITY AS c(oid, typmod, n) JOIN pg_type t ON t.oid = c.oid ORDER BY c.n",
                ([oid for _, oid, _ in columns], [typmod for _, _, typmod in columns]))
            conn.rollback()
        return self._schema_from_catalog([(name, pg_type, True, *enum_facts)
                                          for (name, _, _), (pg_type, *enum_facts) in zip(columns, types, strict=True)])

    def schema_exists(self, schema: str) -> bool:
        return bool(self.fetch("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)))

    @property
    def database_name(self) -> str:
        return self.opts.database

    def list_databases(self) -> list[str]:
        """Databases that accept connections and grant this login CONNECT (templates left out)."""
        return [row[0] for row in self.fetch(
            """SELECT datname FROM pg_database
               WHERE datallowconn AND NOT datistemplate AND has_database_privilege(oid, 'CONNECT')
               ORDER BY datname"""
        )]

    def list_schemas(self) -> list[SchemaInfo]:
        """Schemas with the number of relations ``list_tables`` would list in each."""
        rows = self.fetch(
            f"""SELECT n.nspname, COUNT(c.oid)
                FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND {_LISTED_RELATIONS}
                WHERE {_USER_SCHEMAS}
                GROUP BY n.nspname ORDER BY n.nspname"""
        )
        return [SchemaInfo(name, count) for name, count in rows]

    def list_tables(self, schema: str | None = None) -> list[TableInfo]:
        rows = self.fetch(
            f"""SELECT n.nspname, c.relname, GREATEST(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid),
                      CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' ELSE 'table' END
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE {_LISTED_RELATIONS} AND {_USER_SCHEMAS}
                 AND (%s::text IS NULL OR n.nspname = %s)
               ORDER BY 1, 2""",
            (schema, schema),
        )
        return [TableInfo(TableName(s, t), n, size, kind) for s, t, n, size, kind in rows]

    def foreign_keys(self) -> list[ForeignKey]:
        """From ``pg_constraint``: exact even where two tables of a schema share a constraint name."""
        return foreign_keys_from_rows(self.fetch(
            """SELECT cn.nspname, c.relname, pn.nspname, p.relname, con.conname, a.attname
               FROM pg_constraint con
               JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
               JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
               CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, position)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
               WHERE con.contype = 'f'
               ORDER BY 1, 2, 5, k.position"""
        ))

    # -- reading -------------------------------------------------------------------------------
    def select_expression(self, field: pa.Field) -> str:
        if logical_type(field) == "text_cast":
            return f"{self.quote(field.name)}::text AS {self.quote(field.name)}"
        return self.quote(field.name)

    def column_type_for_filter(self, field: pa.Field) -> str:
        return native_type(field, KIND) or pg_type_for(field)

    def bound_value_sql(self, value: Any, field: pa.Field, params: list[Any], style: str | None) -> str:
        """With ``style="literal"``: the value itself, quoted by psycopg as a string literal and
        cast to the column's type (data, never SQL), so a bound read is one COPY that streams."""
        if style != "literal":
            return super().bound_value_sql(value, field, params, style)
        from psycopg import sql

        literal = sql.Literal(self.bind_value(value, field)).as_string(None)
        return f"CAST({literal} AS {self.column_type_for_filter(field)})"

    def open_stream(self, request: ReadRequest, schema: pa.Schema) -> SourceStream:
        """Both paths run one ``COPY (SELECT ...) TO STDOUT``, which the server streams; a bound
        filter (watermark, partition window, keyset page) is written into it as typed literals,
        because a query with bind parameters goes through the extended protocol, whose result
        ADBC buffers whole (memory growing with the rows read)."""

        def open_batches() -> pa.RecordBatchReader:
            """ADBC decodes binary COPY into Arrow in C++; numeric(p<=18, s) travels as a scaled
            bigint (ADBC would format every numeric as text, costing ~1 s per 2 M values)."""
            sql, _ = self.render_select(request, schema, param_style="literal",
                                        select_list=arrow_select_list(self, schema))
            scaled = [i for i, f in enumerate(schema) if travels_scaled(f)]

            def batches():
                with self.reading(request), adbc_query(self.uri(), sql, batch_bytes(request.batch_size)) as raw:
                    try:
                        for batch in raw:
                            batch = conform_batch(unscale(batch, schema, scaled), schema)
                            yield value_edges.from_postgres_adbc(batch, stream.label, stream.key_columns)
                    except (OSError, pa.ArrowInvalid) as exc:  # the server's or Arrow's refusal of a value
                        problem = self._non_finite_numeric(request, schema, stream)
                        if problem is None:
                            raise
                        raise problem from exc

            return pa.RecordBatchReader.from_batches(schema, batches())

        def open_native() -> Iterator[bytes]:
            plain_columns = ", ".join(self.quote(f.name) for f in schema)  # binary COPY of the native values
            sql, _ = self.render_select(request, schema, param_style="literal", select_list=plain_columns)
            with self.reading(request), self.session() as conn:
                yield from copy_out_chunks(conn, f"COPY ({sql}) TO STDOUT (FORMAT binary)")

        stream = SourceStream(schema=schema, open_batches=open_batches, native_format=NATIVE_COPY,
                              open_native=open_native, label=request.label)
        return stream

    def _non_finite_numeric(self, request: ReadRequest, schema: pa.Schema, stream: SourceStream) -> DataError | None:
        """After a failed Arrow read: the first NaN or infinite value in a column that travels as
        an Arrow decimal (which has neither), as an error naming the column and the row key."""
        decimals = [f.name for f in schema if pa.types.is_decimal(f.type)]
        if not decimals:
            return None
        sql, _ = self.render_select(request, schema, param_style="literal")
        keys = [k for k in stream.key_columns if k in schema.names]
        shown = ", ".join(self.quote(k) for k in keys) or "1"
        for column in decimals:
            rows = self.fetch(f"SELECT {shown}, {self.quote(column)}::text FROM ({sql}) AS sync_diagnosis "
                              f"WHERE {self.quote(column)}::text IN ('NaN', 'Infinity', '-Infinity') LIMIT 1")
            if rows:
                key_values = rows[0][:len(keys)]
                where = (", ".join(f"{k}={v!r}" for k, v in zip(keys, key_values, strict=True))
                         or "a row (no primary key configured)")
                return DataError(f"stream {stream.label}: column {column!r} holds {rows[0][-1]} at {where}, which "
                                 f"{schema.field(column).type} (the column's exact type outside PostgreSQL) cannot "
                                 "hold; cast the column to text in a custom sql: to copy it as text")
        return None

    @contextlib.contextmanager
    def reading(self, request: ReadRequest) -> Iterator[None]:
        """Report a failed read in one line naming the connection and the stream, with the
        server's message (the driver's full error stays attached as the cause)."""
        try:
            yield
        except SyncAssetsError:
            raise
        except Exception as exc:
            server_says = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
            raise SourceReadError(f"connection {self.name!r}: reading {request.label} failed: {server_says}") from exc

    # -- writing -------------------------------------------------------------------------------
    def ddl_type(self, field: pa.Field) -> str:
        return pg_type_for(field)

    def load_type(self, field: pa.Field) -> str:
        """ADBC writes Arrow values in binary COPY format; JSON, and numbers carried as text, are
        staged as text and cast."""
        final = pg_type_for(field)
        return "text" if final in ("json", "jsonb") or logical_type(field) in ("text_cast", "decimal") else final

    def native_load_possible(self, stream: SourceStream, staging_types: list[str]) -> bool:
        """Binary COPY bytes pass through when each column's staging type is its source type; an
        enum's binary form is its label's text, which text and an enum of the same name (whose
        labels ``fits_in`` or ``create_types_sql`` checked) both take."""
        if stream.native_format != NATIVE_COPY:
            return False
        return all(native_type(f, KIND) == t or enum_takes(f, t)
                   for f, t in zip(stream.schema, staging_types, strict=True))

    def column_ddl_type(self, table: TableName, field: pa.Field) -> str:
        """An enum column's type is the enum of that name in the target table's schema."""
        enum = enum_of(field)
        if enum is None:
            return self.ddl_type(field)
        return self.qualified(TableName(table.schema or self.default_schema, enum[0]))

    def create_types_sql(self, conn, table: TableName, schema: pa.Schema, target_types: dict[str, str]) -> list[str]:
        """``CREATE TYPE ... AS ENUM`` for each enum a new column of ``table`` uses that its schema
        lacks (labels quoted as literals by psycopg); one of that name with other labels, or not an
        enum, is refused."""
        from psycopg import sql

        type_schema = table.schema or self.default_schema
        wanted: dict[str, tuple[str, list[str]]] = {}
        for field in schema:
            enum = enum_of(field)
            if enum is None or target_types[field.name] != self.column_ddl_type(table, field):
                continue
            name, labels = enum
            if name in wanted and wanted[name][1] != labels:
                raise SchemaMismatchError(
                    f"table {table}: columns {wanted[name][0]!r} and {field.name!r} are both enum {name!r} in the "
                    f"source but with different labels, {label_list(wanted[name][1])} and {label_list(labels)}; "
                    "one type in the target schema cannot be both; nothing was written")
            wanted[name] = (field.name, labels)
        statements = []
        for name, (column, labels) in wanted.items():
            found = self.fetch_on(conn, _TYPE_IN_SCHEMA, (type_schema, name))
            if not found:
                statements.append(sql.SQL("CREATE TYPE {} AS ENUM ({})").format(
                    sql.Identifier(type_schema, name), sql.SQL(", ").join(map(sql.Literal, labels))).as_string(conn))
            elif found[0][0] != "e" or found[0][1] != labels:
                raise SchemaMismatchError(
                    f"table {table}: column {column!r} is enum {name!r} "
                    f"with labels {label_list(labels)} in the source, "
                    f"but the target schema already has a type {type_schema}.{name} "
                    + (f"with labels {label_list(found[0][1])} ({label_difference(labels, found[0][1])})"
                       if found[0][0] == "e" else "that is not an enum")
                    + "; make the labels match (ALTER TYPE ... ADD VALUE) or drop that type; nothing was written")
        return statements

    def analyze_sql(self, table: TableName) -> list[str]:
        return [f"ANALYZE {self.qualified(table)}"]

    def add_primary_key_sql(self, table: TableName, key: Sequence[str], final_name: str) -> list[str]:
        if not key:
            return []
        cols = ", ".join(self.quote(k) for k in key)
        constraint = _constraint_name(final_name)
        return [
            f"ALTER TABLE {self.qualified(table)} "
            f"ADD CONSTRAINT {self.quote(constraint + '__new')} PRIMARY KEY ({cols})"
        ]

    def after_swap_sql(self, table: TableName, key: Sequence[str]) -> list[str]:
        if not key:
            return []
        constraint = _constraint_name(table.name)
        return [f"ALTER TABLE {self.qualified(table)} RENAME CONSTRAINT "
                f"{self.quote(constraint + '__new')} TO {self.quote(constraint)}"]

    def watermark_index_sql(self, table: TableName, column: str) -> list[str]:
        import hashlib

        digest = hashlib.sha1(f"{table.name}.{column}".encode()).hexdigest()[:8]
        name = f"{table.name[:40]}_{digest}_watermark"
        return [f"CREATE INDEX IF NOT EXISTS {self.quote(name)} ON {self.qualified(table)} ({self.quote(column)})"]

    def merge_sql(self, target, staging, columns, key, casts) -> list[str]:
        cols = ", ".join(self.quote(c) for c in columns)
        exprs = ", ".join(self.cast_expression(c, casts[c]) if c in casts else self.quote(c) for c in columns)
        updates = ", ".join(f"{self.quote(c)} = EXCLUDED.{self.quote(c)}" for c in columns if c not in key)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        return [
            f"INSERT INTO {self.qualified(target)} ({cols}) SELECT {exprs} FROM {self.qualified(staging)} "
            f"ON CONFLICT ({', '.join(self.quote(k) for k in key)}) {action}"
        ]

    def apply_merge(self, conn, target, staging, columns, key, casts, result) -> tuple[int, int]:
        """The upsert, its rows counted in SQL: ``xmax = 0`` marks a row it inserted (an updated
        row carries this transaction's id). A key-only table's existing rows are left out."""
        (upsert,) = self.merge_sql(target, staging, columns, key, casts)
        sql = (f"WITH applied AS ({upsert} RETURNING (xmax = 0) AS inserted) "
               "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM applied")
        inserted, updated = self.fetch_on(conn, sql)[0]
        result.statements.append(sql)
        return int(inserted), int(updated)

    def ingest_problems(self, batch: pa.RecordBatch) -> Iterator[value_edges.Problem]:
        return value_edges.postgres_ingest_problems(batch)

    def bulk_load(self, conn, staging: TableName, stream: SourceStream, schema: pa.Schema) -> tuple[int, bool]:
        if self.native_load_possible(stream, [native_type(f, KIND) or "" for f in schema]) and stream.open_native:
            rows = copy_in_chunks(conn, f"COPY {self.qualified(staging)} FROM STDIN (FORMAT binary)",
                                  stream.counted_native())
            conn.commit()
            stream.rows_read += rows
            return rows, True
        value_edges.check_schema_for_postgres_ingest(stream.schema, stream.label)
        with adbc_session(self.uri()) as connection:
            batches = stream.counted_batches(check=lambda batch: value_edges.check_for_postgres_ingest(
                batch, stream.label, stream.key_columns))
            rows = adbc_ingest(connection, staging, batches)
        return int(rows if rows is not None and rows >= 0 else stream.rows_read), False


_TYPE_IN_SCHEMA = f"""
SELECT t.typtype, {_ENUM_LABELS}
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = %s AND t.typname = %s
"""


def _constraint_name(table_name: str) -> str:
    return (table_name[:50] + "_pkey") if len(table_name) > 50 else f"{table_name}_pkey"
