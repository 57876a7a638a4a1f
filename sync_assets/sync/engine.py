"""Running a plan: read the source stream, write it to the target, and report what happened.

This is the one place that executes a SyncPlan (or describes it, for a dry run). It returns a
SyncResult with the figures the Dagster wiring turns into metadata: rows read and written,
duration, rows per second, watermarks before and after, the SQL used and the target schema.
The written figures are what the apply transaction did (inserted, updated, deleted, counted by
its own statements), never what was staged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sync_assets.config.project import TableSpec
from sync_assets.connectors.interface import Connector
from sync_assets.connectors.requests import KeysIn, ReadRequest, SourceReads, SourceStream
from sync_assets.sync.planning import RunOptions, SyncPlan, plan_sync

log = logging.getLogger("sync_assets")


@dataclass
class SyncResult:
    plan: SyncPlan
    rows_read: int = 0
    rows_written: int = 0
    """Rows the apply wrote (inserted + updated), counted by the apply statements themselves."""
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    rows_unchanged: int = 0
    rows_soft_deleted: int = 0
    rows_restored: int = 0
    deletes_checked: bool = False
    rows_quarantined: int = 0
    """Rows put in the target's dead letters instead of the target (``on_bad_rows: quarantine``)."""
    target_rows: int | None = None
    duration_s: float = 0.0
    watermark_after: Any = None
    columns_added: list[str] = field(default_factory=list)
    source_sql: str = ""
    statements: list[str] = field(default_factory=list)
    target_schema: pa.Schema | None = None
    target_column_types: dict[str, str] = field(default_factory=dict)
    """Each target column's type as the target declares it (``INTEGER``, ``DECIMAL(10,2)``)."""
    native_path: bool = False
    expected_rows: int | None = None

    @property
    def applied(self) -> str:
        text = f"{self.rows_inserted:,} inserted, {self.rows_updated:,} updated, {self.rows_deleted:,} deleted"
        if self.plan.write.kind == "hash_delta":
            text += f", {self.rows_unchanged:,} unchanged"
        if self.rows_quarantined:
            text += f", {self.rows_quarantined:,} quarantined"
        if self.rows_soft_deleted or self.rows_restored:
            text += f", {self.rows_soft_deleted:,} soft-deleted, {self.rows_restored:,} restored"
        return text

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.duration_s if self.duration_s > 0 else 0.0


def describe_source_sql(plan: SyncPlan, source: Connector) -> str:
    sql, params = source.render_select(plan.read, plan.schema)
    return sql + (f"\n-- parameters: {params}" if params else "")


def dry_run(plan: SyncPlan, source: Connector) -> SyncResult:
    """Everything a run would do, without touching the target: the plan, SQL and rows expected."""
    result = SyncResult(plan, source_sql=describe_source_sql(plan, source))
    result.expected_rows = source.count(plan.read, plan.schema)
    result.statements = [f"-- write: {plan.write.kind} into {plan.write.table} via a staging table of "
                         f"this run ({plan.write.table.name}__sync_staging_<8 hex>), under the table's writer lock"]
    return result


def run_plan(plan: SyncPlan, source: Connector, target: Connector) -> SyncResult:
    started = time.monotonic()
    result = SyncResult(plan, source_sql=describe_source_sql(plan, source))
    stream = source.open_stream(plan.read, plan.schema)
    stream.label, stream.key_columns = plan.table.name, tuple(plan.write.primary_key)
    stream = shaped(plan, stream)
    written = target.write(plan.write, stream, source_reads(plan, source))
    result.duration_s = time.monotonic() - started
    result.rows_read = written.rows_read or stream.rows_read or written.rows_written
    result.rows_written = written.rows_written
    result.rows_inserted, result.rows_updated = written.rows_inserted, written.rows_updated
    result.rows_deleted = written.rows_deleted
    result.rows_soft_deleted, result.rows_restored = written.rows_soft_deleted, written.rows_restored
    result.deletes_checked = written.deletes_checked
    result.rows_quarantined = written.rows_quarantined
    result.rows_unchanged = written.rows_unchanged
    result.columns_added = written.columns_added
    result.statements = written.statements
    result.native_path = written.native_path
    table = plan.table
    if table.update_key:
        result.watermark_after = target.max_value(table.target_table, table.update_key)
    result.target_rows = written.target_rows  # kept by the apply transaction (connectors.row_counts)
    result.target_schema = target.table_schema(table.target_table)
    if result.target_schema is not None:
        result.target_column_types = {f.name: target.ddl_type(f) for f in result.target_schema}
    log.info("%s (%s, %s): %s rows read, %s written (%s) in %.2fs (%.0f rows/s); target has %s rows%s", table.name,
             plan.strategy, plan.write.kind,
             f"{result.rows_read:,}", f"{result.rows_written:,}", result.applied, result.duration_s,
             result.rows_per_second,
             f"{result.target_rows:,}",
             f"; watermark {plan.watermark_before!r} -> {result.watermark_after!r}" if table.update_key else "")
    return result


def shaped(plan: SyncPlan, stream: SourceStream) -> SourceStream:
    """``stream`` of the plan's rows, transformed and checked by the table's ``transform`` and ``validate``."""
    if plan.shaping is None:
        return stream
    return plan.shaping.wrap(stream, quarantine=plan.write.on_bad_rows == "quarantine")


def source_reads(plan: SyncPlan, source: Connector) -> SourceReads:
    """The further reads of the source this plan's write may open: every key (deletes checked
    this run), every key with its row hash and the rows of given keys (``hash_delta``)."""
    table, key = plan.table, tuple(plan.write.primary_key)

    def opener(request: ReadRequest | None, schema: pa.Schema | None, what: str) -> Callable[[], SourceStream] | None:
        if request is None or schema is None:
            return None

        def open_stream() -> SourceStream:
            stream = source.open_stream(request, schema)
            stream.label, stream.key_columns = f"{table.name} ({what})", key
            return stream

        return open_stream

    open_keys = opener(plan.keys_read, plan.keys_schema, "keys")
    if open_keys is not None and plan.shaping is not None and plan.shaping.transformer is not None:
        read_rows = open_keys  # the key is a transformed column: the planned read is of whole rows

        def open_keys() -> SourceStream:
            return plan.shaping.keys_of(read_rows(), key)  # type: ignore[union-attr]


    def rows_for(keys: list[tuple]) -> SourceStream:
        """The rows of ``keys``, read ``source.keys_per_read`` keys per statement, as one stream."""
        step = source.keys_per_read

        def open_batches() -> pa.RecordBatchReader:
            def batches():
                for start in range(0, len(keys), step):
                    part = plan.read.with_filters(KeysIn(key, tuple(keys[start:start + step])))
                    yield from source.open_stream(part, plan.schema).open_batches()
            return pa.RecordBatchReader.from_batches(plan.schema, batches())

        return shaped(plan, SourceStream(plan.schema, open_batches, label=table.name, key_columns=key))

    return SourceReads(keys=open_keys,
                       hashes=opener(plan.hashes_read, plan.hashes_schema, "row hashes"),
                       rows_for=rows_for if plan.hashes_read is not None else None)


def sync_table(table: TableSpec, source: Connector, target: Connector,
               options: RunOptions = RunOptions()) -> SyncResult:
    """Plan and run (or dry-run) one table."""
    plan = plan_sync(table, source, target, options)
    log.debug("plan: %s", plan.describe().replace("\n", "; "))
    if options.dry_run:
        return dry_run(plan, source)
    return run_plan(plan, source, target)
