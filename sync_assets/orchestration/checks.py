"""Asset checks for synced tables: row-count parity, schema drift, primary-key uniqueness,
rows match, dead letters and freshness.

- ``row_count_parity`` counts the same slice on both sides: the whole (filtered) source for full
  refresh, rows up to the target's watermark for incremental tables, and the partition's time
  window for date-partitioned ones. A run over a range of partitions compares every partition
  of it (one scan per side, ``partition_windows``), and the check run on its own every partition
  of the table; its metadata lists the differing partitions first. The check itself is not
  partitioned (Dagster 1.13 keeps no per-partition check results), so it can run on its own.
- ``schema_drift`` compares source and target columns; each difference fails the check with
  severity WARN or ERROR per the table's ``schema_drift`` policy, and its metadata lists them.
- ``rows_match`` (tables with ``verify``) compares the same slice row by row inside both
  databases (``verify.diff``): ``checksum`` mode per-bucket counts and checksums, ``full`` mode
  also the differing keys (up to 20 in the metadata).
- ``no_dead_letters`` (tables with ``on_bad_rows: quarantine``) warns while the target holds dead
  letters of the table: rows the target could not take, kept in ``_sync_dead_letters`` until a
  retry (``sync-assets dead-letters TABLE --retry``) or a later run loads them.
- ``primary_key_unique`` (merge tables) finds duplicate keys in the target; it is blocking, so
  downstream assets do not run on a broken table. A target whose own PRIMARY KEY constraint is
  on exactly those columns cannot hold duplicates: the check says so from the catalog instead of
  grouping the whole table.
- Freshness (``freshness: "6 hours"``) uses Dagster's last-update freshness checks, evaluated by
  their sensor; a failed one is an alert like any failed check. The table's asset also carries
  a ``FreshnessPolicy`` (``assets.asset_spec``), which shows Dagster's own freshness state on it;
  that policy records no check result and alerts only in Dagster+, so the checks stay, and
  Dagster 1.13's warning that the policy supersedes them is silenced here, in one place.

The first five are check specs of the step that syncs the table (``sync_steps``): after a sync
they are evaluated in the same step from the figures the sync already has (its row counts, its
watermark, the target schema it read after the commit), so a run costs no second count of the
target. Selected on their own (re-run from the UI, also for a partitioned table), they query
both sides from scratch. A dry run records none.
"""

import warnings
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import pyarrow as pa

from sync_assets.config.project import Project, TableSpec
from sync_assets.connectors import dead_letters
from sync_assets.connectors.deletes import live_rows_condition
from sync_assets.connectors.interface import Connector
from sync_assets.connectors.requests import Filter, ReadRequest
from sync_assets.orchestration.assets import asset_key_of
from sync_assets.orchestration.partition_windows import rows_per_window, windows_of
from sync_assets.sync.planning import as_column_value, base_read, source_schema
from sync_assets.sync.policies import PolicySyncResult, current_drift
from sync_assets.sync.schema_drift import SchemaDrift, categories_with, compare
from sync_assets.verify.sides import diff_table

FRESHNESS_SENSOR = "sync_freshness_checks"
ROW_COUNT, SCHEMA_DRIFT, PRIMARY_KEY, ROWS_MATCH, DEAD_LETTERS = (
    "row_count_parity", "schema_drift", "primary_key_unique", "rows_match", "no_dead_letters")


def is_merge_table(table: TableSpec) -> bool:
    return table.mode in ("incremental", "smart", "hash_delta") and bool(table.primary_key)


def check_specs(table: TableSpec) -> list[dg.AssetCheckSpec]:
    """The checks of one table, as specs of the step that syncs it. They are not partitioned (a
    date-partitioned table's checks report every partition the run covered in one evaluation:
    Dagster 1.13 records no per-partition check results)."""
    key = asset_key_of(table)
    specs = []
    if table.endpoint is None:  # an API cannot count its records up to a watermark
        specs.append(dg.AssetCheckSpec(
            ROW_COUNT, asset=key,
            description="Source and target hold the same number of rows for the synced slice"
                        + (" (each partition the run covered, or every partition when run on its own)."
                           if table.partition is not None else ".")))
    specs.append(dg.AssetCheckSpec(
        SCHEMA_DRIFT, asset=key,
        description="Source columns against target columns: added, dropped and type-changed columns, "
                    "each a warning or an error per the table's schema_drift policy."))
    if is_merge_table(table):
        specs.append(dg.AssetCheckSpec(PRIMARY_KEY, asset=key, blocking=True,
                                       description=f"No two target rows share a primary key "
                                                   f"({', '.join(table.primary_key)})."))
    if table.verify is not None:
        specs.append(dg.AssetCheckSpec(
            ROWS_MATCH, asset=key,
            description="Source and target hold the same rows with the same values (in-database checksums"
                        + (", bisected to the differing keys)." if table.verify.mode == "full" else ").")))
    if table.on_bad_rows == "quarantine":
        specs.append(dg.AssetCheckSpec(
            DEAD_LETTERS, asset=key,
            description="No rows of this table wait in the target's dead letters (_sync_dead_letters)."))
    return specs


@dataclass(frozen=True)
class CheckScope:
    """What an evaluation knows of its run: the partitions and the time window it covers, each
    covered partition's target rows when the step counted them, and the instance (history)."""

    instance: dg.DagsterInstance
    partition_window: tuple[datetime, datetime] | None = None
    partition_keys: tuple[str, ...] = ()
    target_window_rows: dict[str, int] | None = None


def evaluate(table: TableSpec, name: str, source: Connector, target: Connector, scope: CheckScope,
             synced: PolicySyncResult | None = None) -> dg.AssetCheckResult:
    """Check ``name`` of a table: after this step's sync of it (``synced``), from the sync's own
    figures where they answer the check; selected on its own (None), every figure queried."""
    return _EVALUATORS[name](table, source, target, scope, synced)


def _row_count_parity(table: TableSpec, source: Connector, target: Connector, scope: CheckScope,
                      synced: PolicySyncResult | None) -> dg.AssetCheckResult:
    if table.partition is not None and (len(scope.partition_keys) > 1 or scope.partition_window is None):
        return _row_count_parity_per_partition(table, source, target, scope, synced)
    result = synced.result if synced is not None else None
    target_schema = result.target_schema if result is not None else target.table_schema(table.target_table)
    if target_schema is None:
        return _no_target(table)
    schema = result.plan.schema if result is not None else source_schema(table, source)
    watermark = result.watermark_after if result is not None else None
    filters, slice_text = synced_slice(table, schema, target, scope.partition_window, watermark)
    live = live_rows_condition(target, target_schema)  # soft-deleted rows are not at the source
    if live:
        slice_text += ", rows not soft-deleted"
    source_rows = target_rows = None
    if result is not None and not live:
        write = result.plan.write.kind
        if write == "replace" or (write == "overwrite_window" and scope.partition_window is not None):
            # the same read and the apply that wrote it: nothing to count again on either side
            source_rows, target_rows = result.rows_read, (result.target_rows if write == "replace"
                                                           else result.rows_inserted)
        elif filters == () or _covers_every_target_row(table, filters, target_schema):
            target_rows = result.target_rows  # every target row is in the slice: the sync's own count
    if source_rows is None:
        source_rows = source.count(base_read(table, schema).with_filters(*filters), schema)
    if target_rows is None:
        target_rows = target.count(ReadRequest(table=table.target_table, filters=filters, where=live), target_schema)
    return dg.AssetCheckResult(
        asset_key=asset_key_of(table), check_name=ROW_COUNT,
        passed=source_rows == target_rows,
        description=f"{slice_text}: source has {source_rows:,} rows, target {target_rows:,}",
        metadata={"source_rows": source_rows, "target_rows": target_rows,
                  "difference": target_rows - source_rows, "slice": slice_text},
    )


def _no_target(table: TableSpec) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=asset_key_of(table), check_name=ROW_COUNT, passed=False,
                               metadata={"reason": f"target table {table.target_table} does not exist"})


SHOWN_PARTITIONS = 40
"""Partitions listed in the check's metadata: the differing ones first."""


def _row_count_parity_per_partition(table: TableSpec, source: Connector, target: Connector, scope: CheckScope,
                                    synced: PolicySyncResult | None) -> dg.AssetCheckResult:
    """Each partition of the run's range (on its own: every partition), counted on both sides in
    one scan each (the target's counts are the step's, when it has them)."""
    target_schema = synced.result.target_schema if synced is not None else target.table_schema(table.target_table)
    if target_schema is None:
        return _no_target(table)
    schema = synced.result.plan.schema if synced is not None else source_schema(table, source)
    windows = windows_of(table, list(scope.partition_keys) or None)
    source_rows = rows_per_window(table, source, schema, windows, "source")
    target_rows = scope.target_window_rows or rows_per_window(table, target, target_schema, windows, "target")
    differing = [w.key for w in windows if source_rows[w.key] != target_rows[w.key]]
    shown = (differing + [w.key for w in windows if w.key not in differing])[:SHOWN_PARTITIONS]
    lines = ["| partition | source rows | target rows |", "|---|---|---|"] + [
        f"| {key}{' (differs)' if key in differing else ''} | {source_rows[key]:,} | {target_rows[key]:,} |"
        for key in shown]
    span = f"{windows[0].key}...{windows[-1].key}" if windows else "(no partitions)"
    total_source, total_target = sum(source_rows.values()), sum(target_rows.values())
    return dg.AssetCheckResult(
        asset_key=asset_key_of(table), check_name=ROW_COUNT, passed=not differing,
        description=(f"{len(windows)} partitions {span}: " + (f"{len(differing)} differ ({', '.join(differing[:5])}"
                     f"{' ...' if len(differing) > 5 else ''})" if differing else "every one holds the same rows "
                     "on both sides") + f"; source {total_source:,} rows, target {total_target:,}"),
        metadata={"partitions_checked": len(windows), "partitions_differing": len(differing),
                  "source_rows": total_source, "target_rows": total_target,
                  "difference": total_target - total_source, "slice": f"{table.partition.column}: partitions {span}",
                  "partitions": dg.MetadataValue.md("\n".join(lines))})


def _covers_every_target_row(table: TableSpec, filters: tuple[Filter, ...], target_schema: pa.Schema) -> bool:
    """True when the slice is ``update_key <= MAX(update_key)`` of a NOT NULL target column: it holds every row."""
    return (len(filters) == 1 and filters[0].column == table.update_key and filters[0].op == "<="
            and table.update_key in target_schema.names and not target_schema.field(table.update_key).nullable)


def synced_slice(table: TableSpec, schema: pa.Schema, target: Connector,
                 partition_window: tuple[datetime, datetime] | None, watermark=None
                 ) -> tuple[tuple[Filter, ...], str]:
    """The rows a check compares, as filters both sides take, and how to say it: the partition's
    window, rows up to the target's watermark (``watermark`` when the caller has just read it)
    for incremental tables, or the whole table."""
    if table.partition is not None and partition_window is not None:
        column = table.partition.column
        low, high = (as_column_value(v, schema.field(column), table.partition.timezone) for v in partition_window)
        return (Filter(column, ">=", low), Filter(column, "<", high)), f"{column} in [{low}, {high})"
    if table.update_key and table.mode != "full_refresh":
        if watermark is None:
            watermark = target.max_value(table.target_table, table.update_key)
        if watermark is not None:
            return (Filter(table.update_key, "<=", watermark),), f"{table.update_key} <= {watermark}"
    return (), "whole table"


def _rows_match(table: TableSpec, source: Connector, target: Connector, scope: CheckScope,
                synced: PolicySyncResult | None) -> dg.AssetCheckResult:
    assert table.verify is not None
    full = table.verify.mode == "full"
    last = _last_comparison(scope.instance, dg.AssetCheckKey(asset_key_of(table), ROWS_MATCH), table.verify.every)
    if last is not None:
        runs_ago, verdict = last
        return dg.AssetCheckResult(
            asset_key=asset_key_of(table), check_name=ROWS_MATCH,
            passed=verdict.passed, metadata={"compared": False, "compared_runs_ago": runs_ago},
            description=f"not compared this time (every {table.verify.every} evaluations); "
                        f"the comparison {runs_ago} evaluation(s) ago {'passed' if verdict.passed else 'failed'}")
    schema = synced.result.plan.schema if synced is not None else source_schema(table, source)
    filters, slice_text = synced_slice(table, schema, target, scope.partition_window,
                                       synced.result.watermark_after if synced is not None else None)
    result = diff_table(table, source, target, filters=filters, locate=full, schema=schema)
    metadata = {"compared": True, "slice": slice_text, "source_rows": result.source_rows,
                "target_rows": result.target_rows, "differing_buckets": result.differing_buckets,
                "seconds": round(result.seconds, 2)}
    if full:
        keys = [*(("only in source", k) for k in result.only_in_source),
                *(("only in target", k) for k in result.only_in_target),
                *((f"differs: {', '.join(columns)}", k) for k, columns in result.changed)][:20]
        metadata["differences"] = result.differences
        metadata["differing_keys"] = dg.MetadataValue.md("\n".join(
            f"- {', '.join(f'{c}={v!r}' for c, v in zip(result.key, key, strict=True))}: {what}"
            for what, key in keys) or "(none)")
    return dg.AssetCheckResult(asset_key=asset_key_of(table), check_name=ROWS_MATCH, passed=result.equal,
                               description=f"{slice_text}: {result.summary()}", metadata=metadata)


def _last_comparison(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, every: int | None):
    """(evaluations ago, its evaluation) when one of the last ``every - 1`` evaluations of this
    check compared the tables, so this one need not; None when this one compares."""
    if not every or every == 1:
        return None
    history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=every + 1)
    evaluations = [record.event.dagster_event.event_specific_data for record in history
                   if record.event is not None and record.event.dagster_event is not None
                   and isinstance(record.event.dagster_event.event_specific_data, dg.AssetCheckEvaluation)]
    for runs_ago, evaluation in enumerate(evaluations[:every - 1], start=1):
        compared = evaluation.metadata.get("compared")
        if compared is not None and compared.value:
            return runs_ago, evaluation
    return None


def _schema_drift(table: TableSpec, source: Connector, target: Connector, scope: CheckScope,
                  synced: PolicySyncResult | None) -> dg.AssetCheckResult:
    if synced is not None:  # the columns this run loaded against the target's, read after the commit
        target_schema = synced.result.target_schema
        drift = compare(synced.loaded, target_schema) if target_schema is not None else SchemaDrift()
    else:
        drift = current_drift(table, source, target)
    failing, warning = categories_with(table, drift, "fail"), categories_with(table, drift, "warn")
    metadata = {category: ", ".join(items) or "(none)" for category, items in drift.by_category().items()}
    metadata["policy"] = ", ".join(f"{k}: {v}" for k, v in table.schema_drift.model_dump().items())
    return dg.AssetCheckResult(
        asset_key=asset_key_of(table), check_name=SCHEMA_DRIFT,
        passed=not failing and not warning,
        severity=dg.AssetCheckSeverity.ERROR if failing else dg.AssetCheckSeverity.WARN,
        description=drift.describe(),
        metadata=metadata,
    )


def _primary_key_unique(table: TableSpec, source: Connector, target: Connector, scope: CheckScope,
                        synced: PolicySyncResult | None) -> dg.AssetCheckResult:
    if target.enforces_primary_key(table.target_table, table.primary_key):
        return dg.AssetCheckResult(
            asset_key=asset_key_of(table), check_name=PRIMARY_KEY, passed=True,
            description=f"the target's PRIMARY KEY constraint on ({', '.join(table.primary_key)}) rejects duplicates",
            metadata={"duplicate_keys": 0, "enforced_by": "PRIMARY KEY constraint"})
    keys = ", ".join(target.quote(k) for k in table.primary_key)
    duplicated = (f"SELECT {keys}, COUNT(*) AS copies FROM {target.qualified(table.target_table)} "
                  f"GROUP BY {keys} HAVING COUNT(*) > 1")
    groups = int(target.scalar(f"SELECT COUNT(*) FROM ({duplicated}) AS sync_duplicates") or 0)
    examples = target.fetch(f"{duplicated} ORDER BY copies DESC{target.limit_clause(5)}") if groups else []
    shown = "; ".join(
        ", ".join(f"{k}={v!r}" for k, v in zip(table.primary_key, row[:-1], strict=True)) + f" ({row[-1]} rows)"
        for row in examples)
    return dg.AssetCheckResult(asset_key=asset_key_of(table), check_name=PRIMARY_KEY, passed=groups == 0,
                               metadata={"duplicate_keys": groups, "examples": shown or "(none)",
                                         "enforced_by": "(no constraint: grouped the target)"})


def _no_dead_letters(table: TableSpec, source: Connector, target: Connector, scope: CheckScope,
                     synced: PolicySyncResult | None) -> dg.AssetCheckResult:
    waiting = dead_letters.count(target, table.target_table)
    examples = dead_letters.outstanding(target, table.target_table, limit=5) if waiting else []
    return dg.AssetCheckResult(
        asset_key=asset_key_of(table), check_name=DEAD_LETTERS,
        passed=waiting == 0, severity=dg.AssetCheckSeverity.WARN,
        description=f"{waiting:,} rows in the dead letters" + (
            f"; list and retry them with: sync-assets dead-letters {table.name} [--retry]" if waiting else ""),
        metadata={"dead_letters": waiting, "examples": dg.MetadataValue.md("\n".join(
            f"- key {letter['row_key']}: {letter['reason']}" for letter in examples) or "(none)")})


_EVALUATORS = {ROW_COUNT: _row_count_parity, SCHEMA_DRIFT: _schema_drift, PRIMARY_KEY: _primary_key_unique,
               ROWS_MATCH: _rows_match, DEAD_LETTERS: _no_dead_letters}


def build_freshness_checks(project: Project) -> tuple[list[dg.AssetChecksDefinition], list[dg.SensorDefinition]]:
    """One last-update freshness check per table with ``freshness`` (grouped by maximum age),
    and the sensor that evaluates them (running by default); both empty when no table asks."""
    by_age = defaultdict(list)
    for table in project.tables:
        if table.freshness is not None:
            by_age[table.freshness].append(asset_key_of(table))
    if not by_age:
        return [], []
    checks: list[dg.AssetChecksDefinition] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.SupersessionWarning)
        for age, keys in sorted(by_age.items()):
            checks += dg.build_last_update_freshness_checks(assets=keys, lower_bound_delta=age)
        sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=checks, name=FRESHNESS_SENSOR, default_status=dg.DefaultSensorStatus.RUNNING)
    return checks, [sensor]
