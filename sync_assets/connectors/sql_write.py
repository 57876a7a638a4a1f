"""The SQL write path every SQL target shares: staging, bulk load, and one transaction that applies.

``SqlConnector.write`` runs the same safe sequence on every engine:

    take the table's writer lock -> drop leftover staging of dead runs -> create this run's
    staging -> bulk load the stream into it -> one transaction: evolve the target, apply (swap,
    append, merge or window overwrite) and check the applied counts -> drop staging

so a target is never half-loaded, and a failure leaves it exactly as it was. The writer lock
(``locking``) makes two runs of one table take turns; the sync of a table holds it from planning
on (``Connector.writer_lock`` is re-entrant), so the watermark is read under it too. Engines fill
in the dialect: quoting, types, bulk load, merge syntax.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from sync_assets.config.models import ConnectionSpec
from sync_assets.config.names import TableName
from sync_assets.connectors import dead_letters, deletes, hash_delta, orphans, row_counts
from sync_assets.connectors.interface import Connector, StructureKeepingReplace, WriteOp, WriteResult
from sync_assets.connectors.locking import (
    LEGACY_STAGING_SUFFIX,
    TYPED_STAGE_SUFFIX,
    is_staging_name,
    new_staging,
    staging_prefix,
)
from sync_assets.connectors.requests import SourceReads, SourceStream
from sync_assets.errors import ConfigError, DataError, SchemaMismatchError
from sync_assets.types import value_fit
from sync_assets.types.arrow import declared_type, fits_in
from sync_assets.types.value_edges import Problem

log = logging.getLogger("sync_assets")


_SHARED_OBJECTS = threading.RLock()
"""Held while a write creates what the tables of a schema share (the schema itself, the dead
letters and delete-run counters): threads of one step that sync tables of a new schema at once
would otherwise each find it missing and all but one fail to create it."""


class SqlConnector(Connector):
    """The shared write path for SQL engines; subclasses fill in the dialect hooks below."""

    max_identifier_bytes: int | None = None
    """The engine's limit on identifier length (PostgreSQL: 63 bytes); staging names keep to it."""
    default_schema = "main"
    """The schema a table without one lives in."""

    keys_enforced_by_constraint = False
    """True when the target's own PRIMARY KEY constraint rejects duplicate keys during apply;
    otherwise staging is checked for NULL and duplicate keys before applying."""

    def __init__(self, name: str, spec: ConnectionSpec, *, read_only: bool = False):
        super().__init__(name, spec, read_only=read_only)
        self._schemas_ready: set[str | None] = set()
        """Schemas seen with what their tables share (the schema itself, the row counts table)."""

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

    def watermark_index_sql(self, table: TableName, column: str) -> list[str]:
        """Statements giving ``table`` an index on its watermark ``column`` unless it has one (run
        in every apply transaction of an incremental table; none where the engine finds a column's
        maximum without one)."""
        return []

    def structure_keeping_replace(self, conn: Any, op: WriteOp,
                                  columns: Sequence[str]) -> StructureKeepingReplace | None:
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

    def cast_expression(self, column: str, target_type: str, qualifier: str = "") -> str:
        """``column`` (of the table aliased ``qualifier``, if given) cast to ``target_type``."""
        return f"CAST({qualifier + '.' if qualifier else ''}{self.quote(column)} AS {target_type})"

    def ingest_problems(self, batch: pa.RecordBatch) -> Iterator[Problem]:
        """Values of ``batch`` this engine's bulk load would refuse or change (none by default);
        quarantine mode moves their rows to the dead letters before the load."""
        return iter(())

    def analyze_sql(self, table: TableName) -> list[str]:
        """Statements giving the planner statistics of a freshly loaded staging table, for the
        applies that join it with the whole target (delete detection, hash delta)."""
        return []

    # shared implementation ------------------------------------------------------------------
    def create_table_sql(self, table: TableName, schema: pa.Schema, types: Sequence[str]) -> str:
        cols = ", ".join(f"{self.quote(f.name)} {t}" for f, t in zip(schema, types, strict=True))
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

    def write(self, op: WriteOp, stream: SourceStream, reads: SourceReads | None = None) -> WriteResult:
        with self.writer_lock(op.table, op.lock_timeout_s):
            return self._write_locked(op, stream, reads or SourceReads())

    def _create_shared_objects(self, conn: Any, op: WriteOp, existing: pa.Schema | None, quarantines: bool,
                               result: WriteResult) -> None:
        """Create what the tables of a schema share, when missing: the schema, its row counts, its
        delete-run counters and dead letters. In this process one thread at a time; another
        process creating one at the same moment makes the statement fail, after which a second
        look finds it there."""
        with _SHARED_OBJECTS:
            for second_look in (False, True):
                shared = []
                if op.table.schema not in self._schemas_ready:
                    shared += self._schema_sql(op.table) + row_counts.prepare_sql(self, op.table)
                if op.deletes is not None and op.kind == "merge":
                    shared += deletes.prepare_sql(self, op.table, existing)
                if quarantines:
                    shared += dead_letters.prepare_sql(self, op.table)
                try:
                    if shared:
                        self._run(conn, shared, result)
                        self.commit(conn)
                    break
                except Exception:
                    self.rollback(conn)
                    if second_look:
                        raise
            self._schemas_ready.add(op.table.schema)

    def _staging_types(self, stream: SourceStream, target_types: Sequence[str]) -> list[str]:
        """Staging column types: the target's, when the stream's native bytes load into them as
        they are, else the types the Arrow bulk path writes; then the stream loses its native
        bytes, which only columns of the source's own types can take (binary COPY of a ``jsonb``
        into a ``text`` staging column would keep jsonb's version byte)."""
        if self.native_load_possible(stream, list(target_types)):
            return list(target_types)
        stream.open_native = None
        return [self.load_type(f) for f in stream.schema]

    def _write_locked(self, op: WriteOp, stream: SourceStream, reads: SourceReads) -> WriteResult:
        staging = self.staging_for(op.table)
        schema = stream.schema
        result = WriteResult(rows_written=0)
        with self.session() as conn, contextlib.ExitStack() as hashes_dropped:
            existing = self.table_schema(op.table)
            delta = None
            if op.kind == "hash_delta" and reads.hashes is not None:
                delta, stream = self._delta_rows(conn, op, existing, stream, reads, result)
                hashes_dropped.callback(self._drop_staging, conn, op.table, delta.table)
            keeper = (self.structure_keeping_replace(conn, op, schema.names)
                      if existing is not None and op.kind == "replace" else None)
            final_types = [self.column_ddl_type(op.table, f) for f in schema]
            if existing is None or (op.kind == "replace" and keeper is None):
                target_types = dict(zip(schema.names, final_types, strict=True))
            else:
                target_types = self._reconcile(op, schema, existing, result)
            staging_types = self._staging_types(stream, [target_types[f.name] for f in schema])
            casts = {f.name: target_types[f.name] for f, st in zip(schema, staging_types, strict=True)
                     if st != target_types[f.name]}
            quarantine = None
            if op.on_bad_rows == "quarantine" or (op.parent_keys and op.orphans != "fail"):
                quarantine = dead_letters.Quarantine(op)
            self._create_shared_objects(conn, op, existing, quarantine is not None, result)
            prepare = [self.drop_table_sql(leftover) for leftover in self.leftover_staging(conn, op.table)
                       if delta is None or leftover != delta.table]
            prepare += self.create_types_sql(conn, op.table, schema, target_types)
            prepare.append(self.create_table_sql(staging, schema, staging_types))
            if op.on_bad_rows == "quarantine":
                into = existing if existing is not None and (op.kind != "replace" or keeper is not None) else None
                self._screen(quarantine, stream, into)  # type: ignore[arg-type]
            self._run(conn, prepare, result)
            self.commit(conn)
            keys_staging = None
            try:
                started = time.monotonic()
                rows, result.native_path = self.bulk_load(conn, staging, stream, schema)
                log.debug("loaded %s rows into staging %s in %.2fs (%s path)", f"{rows:,}", staging,
                         time.monotonic() - started, "native" if result.native_path else "arrow")
                attempts: dict[str, int] = {}
                if op.parent_keys and op.orphans == "wait":
                    added, attempts = self._reload_pending(conn, op, staging, schema, result)
                    rows += added
                if quarantine is not None:
                    stream.rows_read += quarantine.screened  # read, but kept out of the load
                    rows = self._quarantine_staged(conn, quarantine, staging, schema, existing, rows, result, attempts)
                else:
                    self._check_unique_values(conn, op, staging)
                    orphans.screen(self, conn, op, staging, schema.names, None, {})  # raises on an orphan
                if op.deletes is not None and op.deletes.check_now and reads.keys is not None and op.kind == "merge":
                    keys_staging = self._load_keys(conn, op, reads.keys, result)
                if delta is not None:
                    self._run(conn, self.analyze_sql(staging), result)
                    self.commit(conn)
                result.rows_read = stream.rows_read
                started = time.monotonic()
                self._apply(conn, op, staging, schema, existing, casts, target_types, rows, result, keeper,
                            keys_staging, quarantine, delta)
                log.debug("applied %s staged rows to %s in %.2fs", f"{rows:,}", op.table, time.monotonic() - started)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    self.rollback(conn)
                if self.keys_enforced_by_constraint and self.is_key_violation(exc):
                    self._check_unique(conn, op, staging)
                if stream.failure is not None and stream.failure is not exc:
                    # the read's own error, with its cause; the driver's wrapper (the context) only repeats it
                    raise stream.failure from stream.failure.__cause__
                raise
            finally:
                for table in (staging, keys_staging, quarantine.staging if quarantine else None):
                    if table is not None:
                        self._drop_staging(conn, op.table, table)
        return result

    def _screen(self, quarantine: dead_letters.Quarantine, stream: SourceStream, into: pa.Schema | None) -> None:
        """Quarantine mode: the stream's batches lose the rows this engine's bulk load or the
        existing target columns (``into``, when the rows go into it) cannot take, before the load."""
        narrower = value_fit.narrower_columns(stream.schema, {f.name: f for f in into}) if into is not None else {}

        def problems(batch: pa.RecordBatch) -> Iterator[Problem]:
            if stream.rule_problems is not None:
                yield from stream.rule_problems(batch)
            yield from self.ingest_problems(batch)
            yield from value_fit.unfit_values(batch, narrower)

        quarantine.screen(stream, problems)

    def _quarantine_staged(self, conn: Any, quarantine: dead_letters.Quarantine, staging: TableName,
                           schema: pa.Schema, existing: pa.Schema | None, rows: int, result: WriteResult,
                           attempts: dict[str, int]) -> int:
        """Move staged rows with NULL or duplicate keys, NULLs for NOT NULL target columns (with
        ``on_bad_rows: quarantine``) and orphans (``orphans: quarantine | wait``) to the dead
        letters, and bulk-load the dead letters next to their table; returns the rows left."""
        op = quarantine.op
        if op.on_bad_rows == "quarantine":
            not_null = [f.name for f in existing if not f.nullable and f.name in schema.names] if existing else []
            rows -= quarantine.screen_staging(self, conn, staging, schema.names, not_null)
        else:
            self._check_unique_values(conn, op, staging)
        rows -= orphans.screen(self, conn, op, staging, schema.names, quarantine, attempts)
        self.commit(conn)
        if quarantine.count:
            quarantine.staging = self.staging_for(dead_letters.dead_letter_table(quarantine.op.table))
            letters = quarantine.stream()
            self._run(conn, [self.create_table_sql(quarantine.staging, letters.schema,
                                                   [self.load_type(f) for f in letters.schema])], result)
            self.commit(conn)
            self.bulk_load(conn, quarantine.staging, letters, letters.schema)
            log.warning("%s: %s rows quarantined (the target cannot take them); see sync-assets dead-letters %s",
                        quarantine.op.table, f"{quarantine.count:,}", quarantine.op.table.name)
        return rows

    def _reload_pending(self, conn: Any, op: WriteOp, staging: TableName, schema: pa.Schema,
                        result: WriteResult) -> tuple[int, dict[str, int]]:
        """``orphans: wait``: put the pending orphans back in staging, but not a key the source
        sent again this run (its row is newer); returns how many, and the runs that tried each."""
        pending, attempts = orphans.pending_stream(self, op, schema)
        if pending is None:
            return 0, attempts
        side = self._load_stream(conn, op, pending, result)
        try:
            names = ", ".join(self.quote(c) for c in schema.names)
            match = " AND ".join(f"staged.{self.quote(k)} = pending.{self.quote(k)}" for k in op.primary_key)
            added = self.execute(conn, f"INSERT INTO {self.qualified(staging)} ({names}) SELECT {names} FROM "
                                       f"{self.qualified(side)} AS pending WHERE NOT EXISTS (SELECT 1 FROM "
                                       f"{self.qualified(staging)} AS staged WHERE {match})")
            self.commit(conn)
        finally:
            self._drop_staging(conn, op.table, side)
        log.info("%s: %s pending orphans put back in staging to try their parents again", op.table, f"{added:,}")
        return added, attempts

    def _delta_rows(self, conn: Any, op: WriteOp, existing: pa.Schema | None, stream: SourceStream,
                    reads: SourceReads, result: WriteResult) -> tuple[hash_delta.DeltaHashes, SourceStream]:
        """``hash_delta``: stream every source key and row hash into a hashes staging table (bulk
        path, committed), count the keys whose hash the target lacks, and choose what to stage:
        just those rows, read by key, or (beyond ``DELTA_KEYS_LIMIT``) the whole ``stream``.
        Returns the hashes and the stream to stage."""
        started = time.monotonic()
        hashed = reads.hashes()  # type: ignore[misc]
        hashes = self._load_stream(conn, op, hashed, result)
        rows = hashed.rows_read
        known = existing is not None and hash_delta.ROW_HASH_COLUMN in existing.names
        changed = (int(self.fetch_on(conn, hash_delta.changed_keys_sql(self, op.table, hashes, op.primary_key,
                                                                        count=True))[0][0]) if known else rows)
        if not known or changed > hash_delta.DELTA_KEYS_LIMIT or reads.rows_for is None:
            chosen, how, by_key = stream, "the whole source is staged", False
        else:
            keys = self.fetch_on(conn, hash_delta.changed_keys_sql(self, op.table, hashes, op.primary_key,
                                                                   count=False))
            chosen, how, by_key = reads.rows_for([tuple(key) for key in keys]), "just those rows are read, by key", True
        changed_text = f"{changed:,} rows changed or new" if known else "the target holds no row hashes yet"
        log.info("hashed %s source rows in %.2fs: %s; %s", f"{rows:,}", time.monotonic() - started, changed_text,
                 how)
        return hash_delta.DeltaHashes(hashes, rows, by_key), chosen

    def _load_stream(self, conn: Any, op: WriteOp, stream: SourceStream, result: WriteResult) -> TableName:
        """Bulk-load an auxiliary ``stream`` of the source (keys, hashes) into a staging table of
        this run, with planner statistics; committed. The read's own error wins over the driver's."""
        table = self.staging_for(op.table)
        types = self._staging_types(stream, [self.column_ddl_type(op.table, f) for f in stream.schema])
        self._run(conn, [*self._schema_sql(op.table), self.create_table_sql(table, stream.schema, types)], result)
        self.commit(conn)
        try:
            self.bulk_load(conn, table, stream, stream.schema)
        except BaseException:
            self._drop_staging(conn, op.table, table)
            if stream.failure is not None:
                raise stream.failure from stream.failure.__cause__
            raise
        self._run(conn, self.analyze_sql(table), result)
        self.commit(conn)
        return table

    def _schema_sql(self, table: TableName) -> list[str]:
        """The statement creating ``table``'s schema, if it lacks one."""
        if table.schema and not self.schema_exists(table.schema):
            return [self.create_schema_sql(table.schema)]
        return []

    def _load_keys(self, conn: Any, op: WriteOp, open_keys: Callable[[], SourceStream],
                   result: WriteResult) -> TableName:
        """Stream every source key into a keys staging table of this run (bulk path, committed)."""
        started = time.monotonic()
        keys = open_keys()
        keys_staging = self._load_stream(conn, op, keys, result)
        log.info("loaded %s source keys into %s in %.2fs, to find rows deleted at the source", f"{keys.rows_read:,}",
                 keys_staging, time.monotonic() - started)
        return keys_staging

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
            if not fits_in(field_, target_field) and not (
                    op.on_bad_rows == "quarantine" and value_fit.value_checkable(field_, target_field)):
                raise SchemaMismatchError(
                    f"table {op.table}: column {field_.name!r} is {declared_type(field_)} in the source but "
                    f"{existing_native.get(field_.name, declared_type(target_field))} in the target, which "
                    "cannot hold every source value unchanged (it would truncate or round them); run a "
                    "full refresh to rebuild the table, or widen the column"
                    + ("; or set on_bad_rows: quarantine to load the values that fit and keep the others as "
                       "dead letters" if value_fit.value_checkable(field_, target_field) else "")
                    + "; nothing was written"
                )
            types[field_.name] = existing_native[field_.name]
        return types

    @abstractmethod
    def native_column_types(self, table: TableName) -> dict[str, str]:
        """Column name -> the type as this database spells it in DDL."""

    def _apply(self, conn: Any, op: WriteOp, staging: TableName, schema: pa.Schema,
               existing: pa.Schema | None, casts: dict[str, str], target_types: dict[str, str],
               rows: int, result: WriteResult, keeper: StructureKeepingReplace | None,
               keys_staging: TableName | None = None, quarantine: dead_letters.Quarantine | None = None,
               delta: hash_delta.DeltaHashes | None = None) -> None:
        """One transaction: apply the staged ``rows`` and take the inserted / updated / deleted
        counts from the apply statements themselves; a count that disagrees with the staged rows
        raises before the commit, so the target stays as it was."""
        columns = schema.names
        rebuilt = op.kind != "hash_delta" and (keeper is not None or op.kind == "replace" or existing is None)
        if quarantine is not None:  # first: a replace's staging becomes the target below
            quarantine.apply(self, conn, staging, schema, result)
        if op.kind == "hash_delta":
            if delta is None:
                raise ConfigError(f"table {op.table}: a hash_delta write needs the source's row hashes")
            self._run(conn, [self.add_column_sql(op.table, name, target_types[name])
                             for name in result.columns_added], result)
            if not delta.by_key and existing is not None:  # the whole source was staged: build the table anew
                self._check_unique_before_apply(conn, op, staging)
                hash_delta.rewrite(self, conn, op.table, staging, delta.table, columns, op.primary_key, casts,
                                   target_types, existing, rows, result)
            else:
                self._check_unique_before_apply(conn, op, staging, into=op.table if existing is not None else None)
                hash_delta.apply(self, conn, op.table, staging, delta.table, columns, op.primary_key, casts,
                                 target_types, existing, delta.rows - (quarantine.count if quarantine else 0), result)
        elif rebuilt:
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
                if op.deletes is not None:
                    deletes.apply(self, conn, op.table, op.deletes, keys_staging, op.primary_key, existing, result)
            else:
                if op.kind == "overwrite_window":
                    result.rows_deleted = self._delete_window(conn, op, schema, result)
                insert = self.insert_select_sql(op.table, staging, columns, casts)
                result.rows_inserted = self.execute(conn, insert)
                result.statements.append(insert)
                self._expect(op, "the insert added", result.rows_inserted, rows)
        result.rows_written = result.rows_inserted + result.rows_updated
        if op.watermark_column is not None:
            self._run(conn, self.watermark_index_sql(op.table, op.watermark_column), result)
        result.target_rows = row_counts.record(self, conn, op.table, result, rebuilt)
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
        return statements + self.swap_in_sql(source_table, op.table, op.primary_key, existing is not None)

    def swap_in_sql(self, built: TableName, table: TableName, key: Sequence[str], replaces: bool) -> list[str]:
        """Statements putting the table ``built`` (in ``table``'s schema) in place of ``table``:
        its primary key, the old table dropped (``replaces``), the rename."""
        return [*self.add_primary_key_sql(built, key, table.name), *([self.drop_table_sql(table)] if replaces else []),
                *self.rename_table_sql(built, table.name), *self.after_swap_sql(table, key)]

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

    def enforces_primary_key(self, table: TableName, key: Sequence[str]) -> bool:
        with self.session() as conn:
            return self.primary_key_columns(conn, table) == set(key)

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
                ", ".join(f"{k}={v!r}" for k, v in zip(op.primary_key, row[:-1], strict=True)) + f" ({row[-1]} rows)"
                for row in dupes
            )
            raise DataError(
                f"table {op.table}: primary key ({', '.join(op.primary_key)}) is not unique in the "
                f"source rows: {shown}; nothing was written"
            )

    def _check_unique_values(self, conn: Any, op: WriteOp, staging: TableName) -> None:
        """``validate`` rule ``unique``: raise a DataError naming the column, a shared value and
        the keys of its rows, if two staged rows share a value."""
        s = self.qualified(staging)
        for column in op.unique_columns:
            shared = dead_letters.shared_value_condition(self, staging, column)
            shown = [*op.primary_key, column] if column not in op.primary_key else list(op.primary_key)
            rows = self.fetch_on(conn, f"SELECT {', '.join(self.quote(n) for n in shown)} FROM {s} WHERE {shared}"
                                       f"{self.limit_clause(5)}")
            if rows:
                examples = "; ".join(", ".join(f"{n}={v!r}" for n, v in zip(shown, row, strict=True)) for row in rows)
                raise DataError(f"table {op.table}: column {column!r} breaks rule unique: rows share a value "
                                f"({examples}); nothing was written. Set on_bad_rows: quarantine to load the "
                                "other rows and keep these in the dead letters")

    @abstractmethod
    def fetch_on(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """``fetch`` on an open session connection."""

    def _run(self, conn: Any, statements: Sequence[str], result: WriteResult) -> None:
        for sql in statements:
            self.execute(conn, sql)
            result.statements.append(sql)
