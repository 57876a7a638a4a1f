"""One table's sync with its operational policies applied, for the Dagster asset and the CLI.

Around the plan-and-run of ``engine``: the schema-drift policy is enforced before planning (a
``fail`` policy writes nothing; ``added: warn`` leaves new source columns out), a chunked table
is bounded to its next chunk, and after the commit the chunk progress is measured against the
target's new watermark. A run that writes holds the target table's writer lock throughout, from
the drift check and the watermark read to the commit (``connectors.locking``): a second run of
the table waits for it, then plans from what the first one committed.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import pyarrow as pa

from sync_assets.config.project import TableSpec
from sync_assets.connectors.interface import Connector
from sync_assets.shaping.shaped import Shaping
from sync_assets.sync.chunking import ChunkProgress, bound_to_chunk, progress
from sync_assets.sync.engine import SyncResult, dry_run, run_plan
from sync_assets.sync.planning import RunOptions, plan_sync, source_columns, source_schema
from sync_assets.sync.schema_drift import SchemaDrift, compare, enforce

log = logging.getLogger("sync_assets")


@dataclass
class PolicySyncResult:
    result: SyncResult
    drift: SchemaDrift
    """Source (as loaded) against target columns before the run."""
    loaded: pa.Schema
    """The source's columns as the table selects and transforms them (before the drift policy
    leaves any out): what the target is compared with after the run."""
    chunk: ChunkProgress | None = None


def current_drift(table: TableSpec, source: Connector, target: Connector,
                  loaded: pa.Schema | None = None) -> SchemaDrift:
    """Source columns (as this table selects and transforms them: ``loaded``, when the caller has
    them) against the target table's; none if the target is missing."""
    target_schema = target.table_schema(table.target_table)
    if target_schema is None:
        return SchemaDrift()
    return compare(loaded if loaded is not None else Shaping(table, source_schema(table, source)).schema,
                   target_schema)


def writer_lock(table: TableSpec, target: Connector, options: RunOptions) -> contextlib.AbstractContextManager:
    """The target table's writer lock for a run that writes (re-entrant; nothing for a dry run)."""
    if options.dry_run:
        return contextlib.nullcontext()
    return target.writer_lock(table.target_table, table.lock_timeout.total_seconds())


def sync_with_policies(table: TableSpec, source: Connector, target: Connector,
                       options: RunOptions = RunOptions()) -> PolicySyncResult:
    with writer_lock(table, target, options):
        return _sync(table, source, target, options)


def _sync(table: TableSpec, source: Connector, target: Connector, options: RunOptions) -> PolicySyncResult:
    columns = source_columns(table, source)  # one catalog read serves the drift check and the plan
    shaping = Shaping(table, source_schema(table, source, columns))
    drift = current_drift(table, source, target, shaping.schema)
    enforced = enforce(table, drift)  # the same table, unless it leaves new source columns out
    plan = plan_sync(enforced, source, target, options, columns, shaping if enforced is table else None)
    explicit_window = options.window_start is not None or options.window_end is not None
    if not explicit_window:
        bound_to_chunk(plan, source, target)
    log.debug("plan: %s", plan.describe().replace("\n", "; "))
    if options.dry_run:
        return PolicySyncResult(dry_run(plan, source), drift, shaping.schema)
    result = run_plan(plan, source, target)
    chunk = None
    if table.chunk is not None and not explicit_window:
        chunk = progress(table, source, target, plan, result.watermark_after, result.target_rows or 0)
        log.info("%s: %s", table.name, chunk.describe())
    return PolicySyncResult(result, drift, shaping.schema, chunk)
