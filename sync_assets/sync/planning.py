"""The sync strategies: how each mode turns a table spec into a plan for one run.

A plan says what to read (a dialect-free ReadRequest), how to write it (a WriteOp) and which
watermark window it covers. Strategies are written once here, against the connector interface:

- ``full_refresh``: read everything, replace the target through staging and a swap.
- ``incremental``: watermark = MAX(update_key) in the target, so it advances only with the
  commit of the rows it covers. Read ``>= watermark`` (or ``>= watermark - lookback``) and merge
  on the primary key; without a key, read ``> watermark`` and append.
- ``smart``: a missing or empty target gets a full load, anything else an incremental one.
- ``date_partitioned``: read one partition's time window and overwrite exactly that window.
- ``hash_delta``: read everything, and write only the rows whose stored hash says they were
  inserted, changed or deleted (``connectors.hash_delta``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from sync_assets.config.project import TableSpec
from sync_assets.connectors import deletes, hash_delta
from sync_assets.connectors.interface import Connector, DeletePlan, WriteOp
from sync_assets.connectors.requests import Filter, KeysIn, ReadRequest
from sync_assets.errors import ConfigError, SyncAssetsError
from sync_assets.shaping.shaped import Shaping


@dataclass(frozen=True)
class RunOptions:
    """What one run asks for, beyond the table's configuration (Dagster run config)."""

    dry_run: bool = False
    full_refresh: bool = False
    window_start: str | None = None
    window_end: str | None = None
    partition_window: tuple[datetime, datetime] | None = None
    detect_deletes: bool = False
    """Compare the source's keys with the target's this run, whatever the table's ``deletes`` cadence."""
    trigger: str | None = None
    """What started the run (``schedule:<name>``, ``sensor:<name>``), from the run's tags."""
    run_id: str = ""
    """The Dagster run (or the CLI's own id), recorded with the dead letters it writes."""
    retry_keys: tuple[str, ...] = ()
    """Re-read and merge only the rows of these dead-letter keys (``dead_letters.key_text``)."""


def local_run_id() -> str:
    """The id of a run started outside Dagster (the CLI), recorded with its dead letters."""
    import uuid

    return f"cli-{uuid.uuid4().hex[:12]}"


@dataclass
class SyncPlan:
    table: TableSpec
    strategy: str
    read: ReadRequest
    schema: pa.Schema
    write: WriteOp
    watermark_before: Any = None
    window: tuple[Any, Any] | None = None
    notes: list[str] = field(default_factory=list)
    keys_read: ReadRequest | None = None
    """Every source key (deletes checked this run), read after the rows."""
    keys_schema: pa.Schema | None = None
    hashes_read: ReadRequest | None = None
    """``hash_delta``: every source key with its row hash, computed by the source."""
    hashes_schema: pa.Schema | None = None
    shaping: Shaping | None = None
    """The table's transforms and rules over ``schema`` (what the target loads: ``shaping.schema``)."""

    def describe(self) -> str:
        lines = [f"{self.table.name} -> {self.table.target_table} ({self.strategy}, write: {self.write.kind})"]
        if self.table.update_key:
            lines.append(f"watermark before: {self.watermark_before!r} on {self.table.update_key}")
        if self.window:
            lines.append(f"window: ({self.window[0]!r}, {self.window[1]!r}]")
        lines += self.notes
        return "\n".join(lines)


@contextlib.contextmanager
def _naming_the_stream(table: TableSpec, key: str) -> Iterator[None]:
    """Run a source read of ``table``'s own ``key`` (``sql`` or ``where``): an error the database
    raises for it becomes a ConfigError naming the file, stream and key; a transient one (a
    dropped connection) passes unchanged, so it is still retried."""
    from sync_assets.sync.retries import is_transient

    try:
        yield
    except SyncAssetsError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConfigError(f"{table.file}: stream {table.name!r} key {key!r}: the source refuses it: {detail}") from exc


def source_columns(table: TableSpec, source: Connector) -> pa.Schema:
    """Every column of the table's source (table, query or API endpoint), read from the source's catalog."""
    if table.endpoint is not None:
        return source.endpoint_schema(table.endpoint, table.name)
    if table.source_table is None:
        with _naming_the_stream(table, "sql"):
            return source.query_schema(table.sql or "")
    schema = source.table_schema(table.source_table)
    if schema is None:
        raise ConfigError(
            f"{table.label}: source table {table.source_table} does not exist in connection {table.source!r}"
        )
    return schema


def source_schema(table: TableSpec, source: Connector, columns: pa.Schema | None = None) -> pa.Schema:
    """The canonical schema of the columns this table selects from its source (``columns``: the
    source's columns when the caller has already read them)."""
    schema = columns if columns is not None else source_columns(table, source)
    names = schema.names
    keys = () if table.transform else (*table.primary_key, *([table.update_key] if table.update_key else []),
                                       *([table.partition.column] if table.partition else []))
    for column in (*(table.columns or ()), *table.exclude_columns, *keys):  # keys a transform renames: Shaping
        if column not in names:
            raise ConfigError(
                f"{table.label}: column {column!r} is not in source {table.source_object} "
                f"(columns: {', '.join(names)})"
            )
    keep = [n for n in (table.columns or names) if n not in table.exclude_columns]
    return pa.schema([schema.field(n) for n in keep])



def source_relation(table: TableSpec, source: Connector) -> str:
    """What a query over ``table``'s source selects FROM: its qualified table, or its ``sql`` aliased."""
    return source.qualified(table.source_table) if table.source_table else f"({table.sql}) AS sync_query"


def base_read(table: TableSpec, schema: pa.Schema) -> ReadRequest:
    return ReadRequest(
        table=table.source_table, sql=table.sql, columns=tuple(schema.names), where=table.where,
        order_by=table.primary_key if table.limit is not None else (), limit=table.limit,
        batch_size=table.batch_size, stream=table.name, endpoint=table.endpoint,
    )


def plan_sync(table: TableSpec, source: Connector, target: Connector, options: RunOptions,
              columns: pa.Schema | None = None, shaping: Shaping | None = None) -> SyncPlan:
    """The plan of one run of ``table``: its strategy's, with the run's bad-row policy and id
    (``shaping``: the table's transforms and rules, when the caller has compiled them)."""
    plan = (_plan_retry(table, source, options, columns) if options.retry_keys
            else _plan_strategy(table, source, target, options, columns))
    plan.shaping = shaping or Shaping(table, plan.schema)
    plan.write = dataclasses.replace(plan.write, on_bad_rows=table.on_bad_rows,  # type: ignore[arg-type]
                                     run_id=options.run_id or local_run_id(),
                                     unique_columns=plan.shaping.unique_columns, parent_keys=table.parent_keys,
                                     orphans=table.orphans, orphan_attempts=table.orphan_attempts)  # type: ignore[arg-type]
    return plan


def _plan_retry(table: TableSpec, source: Connector, options: RunOptions, columns: pa.Schema | None) -> SyncPlan:
    """A dead-letter retry: read the rows of the retried keys and merge them."""
    if not table.primary_key:
        raise ConfigError(f"{table.label}: dead letters are retried by primary key, and the stream has none; "
                          "run a full refresh instead, which re-reads every row")
    schema = source_schema(table, source, columns)
    keys = tuple(tuple(json.loads(text)) for text in options.retry_keys)
    write = WriteOp("merge", table.target_table, table.primary_key, schema_changes=table.schema_changes,  # type: ignore[arg-type]
                    lock_timeout_s=table.lock_timeout.total_seconds(), retried_keys=frozenset(options.retry_keys))
    read = dataclasses.replace(base_read(table, schema), order_by=(), limit=None)
    plan = SyncPlan(table, "dead_letter_retry", read.with_filters(KeysIn(table.primary_key, keys)), schema, write)
    plan.notes.append(f"retrying {len(keys):,} dead-lettered rows: re-read by key and merged")
    return plan


def _plan_strategy(table: TableSpec, source: Connector, target: Connector, options: RunOptions,
                   columns: pa.Schema | None) -> SyncPlan:
    schema = source_schema(table, source, columns)
    read = base_read(table, schema)
    if table.where:
        with _naming_the_stream(table, "where"):  # one row-less query: the source checks the condition
            source.fetch(*source.render_select(dataclasses.replace(read, order_by=(), limit=0), schema))
    watermark = table.update_key if table.mode in ("incremental", "smart") else None
    replace = WriteOp("replace", table.target_table, table.primary_key, schema_changes=table.schema_changes,  # type: ignore[arg-type]
                      load_method=table.load_method, lock_timeout_s=table.lock_timeout.total_seconds(),  # type: ignore[arg-type]
                      watermark_column=watermark)
    if table.mode == "date_partitioned":
        return _plan_partition(table, schema, read, options)
    if table.mode == "hash_delta" and not options.full_refresh:
        write = dataclasses.replace(replace, kind="hash_delta", load_method="auto")
        plan = SyncPlan(table, "hash_delta", read, schema, write)
        where = f" WHERE ({table.where})" if table.where else ""
        hashes = hash_delta.hashes_sql(source, source_relation(table, source), where, table.primary_key,
                                       [(f.name, f.type) for f in schema])
        plan.hashes_schema = pa.schema([*(schema.field(k) for k in table.primary_key), hash_delta.ROW_HASH_FIELD])
        plan.hashes_read = ReadRequest(sql=hashes, columns=tuple(plan.hashes_schema.names),
                                       batch_size=table.batch_size, stream=table.name)
        plan.notes.append("hash_delta: the source hashes every row; only the rows whose hash the target lacks are "
                          "read and written (inserted, changed), and keys gone from the source deleted")
        return plan
    if table.mode == "full_refresh" or options.full_refresh:
        why = "forced by run config" if options.full_refresh and table.mode != "full_refresh" else None
        plan = SyncPlan(table, "full_refresh", read, schema, replace)
        if why:
            plan.notes.append(f"full refresh {why}")
        return plan
    target_exists = target.table_schema(table.target_table) is not None
    watermark = target.max_value(table.target_table, table.update_key) if target_exists else None  # type: ignore[arg-type]
    if watermark is None and not options.window_start:
        plan = SyncPlan(table, "full_refresh", read, schema, replace)
        plan.notes.append(
            f"{table.mode}: target {'is empty' if target_exists else 'does not exist'}, so this run is a full load"
        )
        return plan
    plan = _plan_incremental(table, schema, read, watermark, options)
    if table.deletes is not None and table.primary_key:
        _plan_deletes(plan, target, options)
    return plan


def _plan_deletes(plan: SyncPlan, target: Connector, options: RunOptions) -> None:
    """Decide whether this merge compares the complete source key set with the target's."""
    table, spec = plan.table, plan.table.deletes
    assert spec is not None
    if options.detect_deletes:
        due, cadence = True, "forced by run config"
    elif spec.schedule is not None:
        due, cadence = options.trigger == f"schedule:{spec.schedule}", f"on runs of schedule {spec.schedule!r}"
    elif spec.every is not None:
        since = deletes.runs_since_check(target, table.target_table)  # type: ignore[arg-type]
        due, cadence = since + 1 >= spec.every, f"every {spec.every} runs, {since} since the last check"
    else:
        due, cadence = True, "every run"
    plan.write = dataclasses.replace(plan.write, deletes=DeletePlan(spec.detect, due))
    if due and table.transform is not None:  # the key is a transformed column: read the rows, the engine shapes them
        plan.keys_schema = plan.schema
        plan.keys_read = dataclasses.replace(base_read(table, plan.schema), order_by=(), limit=None)
    elif due:
        plan.keys_schema = pa.schema([plan.schema.field(k) for k in table.primary_key])
        plan.keys_read = dataclasses.replace(base_read(table, plan.schema), columns=table.primary_key,
                                             order_by=(), limit=None)
    plan.notes.append(f"deletes ({spec.detect}, {cadence}): "
                      + ("every source key is compared with the target's in the merge transaction" if due
                         else "not checked this run"))


def _plan_incremental(table: TableSpec, schema: pa.Schema, read: ReadRequest, watermark: Any,
                      options: RunOptions) -> SyncPlan:
    key = table.update_key or ""
    write = WriteOp("merge" if table.primary_key else "append", table.target_table, table.primary_key,
                    schema_changes=table.schema_changes, lock_timeout_s=table.lock_timeout.total_seconds(),  # type: ignore[arg-type]
                    watermark_column=table.update_key)
    plan = SyncPlan(table, "incremental", read, schema, write, watermark_before=watermark)
    if options.window_start or options.window_end:
        filters = []
        if options.window_start:
            filters.append(Filter(key, ">", options.window_start))
        if options.window_end:
            filters.append(Filter(key, "<=", options.window_end))
        plan.read = read.with_filters(*filters)
        plan.window = (options.window_start, options.window_end)
        plan.notes.append("re-running an explicit watermark window from run config")
        if not table.primary_key:
            plan.notes.append("no primary key: rows of this window already in the target are appended again")
        return plan
    low = watermark
    if table.lookback is not None:
        low = minus_lookback(watermark, table.lookback, table)
        plan.notes.append(f"look-back {table.lookback} re-reads from {low!r}; merge keeps it idempotent")
    op = ">=" if table.primary_key else ">"
    plan.read = read.with_filters(Filter(key, op, low))
    plan.window = (low, None)
    return plan


def minus_lookback(value: Any, lookback: Any, table: TableSpec) -> Any:
    """``value - lookback`` in the update key's own type (a duration for dates, a number otherwise)."""
    if isinstance(lookback, timedelta):
        if isinstance(value, datetime) or isinstance(value, date):
            return value - lookback
        raise ConfigError(f"{table.label}: key 'lookback' is a duration but {table.update_key!r} "
                          f"holds {type(value).__name__} values")
    if isinstance(value, (datetime, date)):
        raise ConfigError(f"{table.label}: key 'lookback' is a number but {table.update_key!r} "
                          "holds dates; write e.g. '2 days'")
    if isinstance(value, Decimal):
        return value - Decimal(str(lookback))
    return value - lookback


def _plan_partition(table: TableSpec, schema: pa.Schema, read: ReadRequest, options: RunOptions) -> SyncPlan:
    assert table.partition is not None
    if options.partition_window is None:
        raise ConfigError(f"{table.label}: a date-partitioned table needs a partition (or a partition range) to run")
    column = table.partition.column
    start, end = (as_column_value(v, schema.field(column), table.partition.timezone) for v in options.partition_window)
    write = WriteOp("overwrite_window", table.target_table, table.primary_key, window_column=column,
                    window=(start, end), schema_changes=table.schema_changes,  # type: ignore[arg-type]
                    lock_timeout_s=table.lock_timeout.total_seconds())
    plan = SyncPlan(table, "date_partitioned", read.with_filters(Filter(column, ">=", start), Filter(column, "<", end)),
                    schema, write, window=(start, end))
    plan.notes.append(f"overwrites {column} in [{start}, {end}) in one transaction")
    return plan


def as_column_value(moment: datetime, field: pa.Field, timezone: str) -> Any:
    """A partition boundary in the partition column's own type."""
    local = moment.astimezone(ZoneInfo(timezone))
    if pa.types.is_date(field.type):
        return local.date()
    if pa.types.is_timestamp(field.type) and field.type.tz is None:
        return local.replace(tzinfo=None)
    return local
