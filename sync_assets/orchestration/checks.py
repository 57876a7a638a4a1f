"""Asset checks for synced tables: row-count parity, schema drift, primary-key uniqueness and
freshness.

- ``row_count_parity`` counts the same slice on both sides: the whole (filtered) source for full
  refresh, rows up to the target's watermark for incremental tables, and the partition's time
  window for date-partitioned ones.
- ``schema_drift`` compares source and target columns; each difference fails the check with
  severity WARN or ERROR per the table's ``schema_drift`` policy, and its metadata lists them.
- ``rows_match`` (tables with ``verify``) compares the same slice row by row inside both
  databases (``verify.diff``): ``checksum`` mode per-bucket counts and checksums, ``full`` mode
  also the differing keys (up to 20 in the metadata).
- ``no_dead_letters`` (tables with ``on_bad_rows: quarantine``) warns while the target holds dead
  letters of the table: rows the target could not take, kept in ``_sync_dead_letters`` until a
  retry (``sync-assets dead-letters TABLE --retry``) or a later run loads them.
- ``primary_key_unique`` (merge tables) finds duplicate keys in the target; it is blocking, so
  downstream assets do not run on a broken table.
- Freshness (``freshness: "6 hours"``) uses Dagster's last-update freshness checks, evaluated by
  their sensor; a failed one is an alert like any failed check. Dagster 1.13 marks these checks
  superseded by ``FreshnessPolicy``, but that API is a preview that needs ``freshness: enabled``
  in ``dagster.yaml``, records no check result and offers alerts only in Dagster+; the checks
  stay until it is stable, and their supersession warning is silenced here, in one place.

The checks are separate from the sync step, so a dry run records nothing and each can be re-run
from the UI on its own.
"""

import warnings
from collections import defaultdict

import dagster as dg
import pyarrow as pa

from sync_assets.config.project import Project, TableSpec
from sync_assets.connectors import connector_for, dead_letters
from sync_assets.connectors.deletes import live_rows_condition
from sync_assets.connectors.interface import Connector
from sync_assets.connectors.requests import Filter, ReadRequest
from sync_assets.orchestration.assets import op_tags, partitions_for, pool_for
from sync_assets.sync.planning import as_column_value, base_read, source_schema
from sync_assets.sync.policies import current_drift
from sync_assets.sync.schema_drift import categories_with
from sync_assets.verify.sides import diff_table

FRESHNESS_SENSOR = "sync_freshness_checks"


def build_row_count_check(project: Project, table: TableSpec) -> dg.AssetChecksDefinition:
    partitions_def = partitions_for(table)

    @dg.asset_check(
        name="row_count_parity",
        description="Source and target hold the same number of rows for the synced slice.",
        partitions_def=partitions_def,
        **_check_kwargs(project, table),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        source = connector_for(table.source, project.connections[table.source], read_only=True)
        target = connector_for(table.target, project.connections[table.target])
        target_schema = target.table_schema(table.target_table)
        if target_schema is None:
            return dg.AssetCheckResult(passed=False,
                                       metadata={"reason": f"target table {table.target_table} does not exist"})
        schema = source_schema(table, source)
        read = base_read(table, schema)
        filters, slice_text = _synced_slice(context, table, schema, target)
        source_rows = source.count(read.with_filters(*filters), schema)
        live = live_rows_condition(target, target_schema)  # soft-deleted rows are not at the source
        if live:
            slice_text += ", rows not soft-deleted"
        target_rows = target.count(ReadRequest(table=table.target_table, filters=filters, where=live), target_schema)
        return dg.AssetCheckResult(
            passed=source_rows == target_rows,
            description=f"{slice_text}: source has {source_rows:,} rows, target {target_rows:,}",
            metadata={"source_rows": source_rows, "target_rows": target_rows,
                      "difference": target_rows - source_rows, "slice": slice_text},
        )

    return _check


def _synced_slice(context: dg.AssetCheckExecutionContext, table: TableSpec, schema: pa.Schema,
                  target: Connector) -> tuple[tuple[Filter, ...], str]:
    """The rows a check compares, as filters both sides take, and how to say it: the partition's
    window, rows up to the target's watermark for incremental tables, or the whole table."""
    if table.partition is not None and context.has_partition_key:
        column = table.partition.column
        low, high = (as_column_value(v, schema.field(column), table.partition.timezone)
                     for v in context.partition_time_window)
        return (Filter(column, ">=", low), Filter(column, "<", high)), f"{column} in [{low}, {high})"
    if table.update_key and table.mode != "full_refresh":
        watermark = target.max_value(table.target_table, table.update_key)
        if watermark is not None:
            return (Filter(table.update_key, "<=", watermark),), f"{table.update_key} <= {watermark}"
    return (), "whole table"


def build_rows_match_check(project: Project, table: TableSpec) -> dg.AssetChecksDefinition:
    assert table.verify is not None
    full = table.verify.mode == "full"

    @dg.asset_check(
        name="rows_match",
        description=("Source and target hold the same rows with the same values (in-database checksums"
                     + (", bisected to the differing keys)." if full else ").")),
        partitions_def=partitions_for(table),
        **_check_kwargs(project, table),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        last = _last_comparison(context, table.verify.every)  # type: ignore[union-attr]
        if last is not None:
            runs_ago, verdict = last
            return dg.AssetCheckResult(
                passed=verdict.passed, metadata={"compared": False, "compared_runs_ago": runs_ago},
                description=f"not compared this time (every {table.verify.every} evaluations); "  # type: ignore[union-attr]
                            f"the comparison {runs_ago} evaluation(s) ago {'passed' if verdict.passed else 'failed'}")
        source = connector_for(table.source, project.connections[table.source], read_only=True)
        target = connector_for(table.target, project.connections[table.target])
        schema = source_schema(table, source)
        filters, slice_text = _synced_slice(context, table, schema, target)
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
        return dg.AssetCheckResult(passed=result.equal, description=f"{slice_text}: {result.summary()}",
                                   metadata=metadata)

    return _check


def _last_comparison(context: dg.AssetCheckExecutionContext, every: int | None):
    """(evaluations ago, its evaluation) when one of the last ``every - 1`` evaluations of this
    check compared the tables, so this one need not; None when this one compares."""
    if not every or every == 1:
        return None
    (check_key,) = context.selected_asset_check_keys
    history = context.instance.event_log_storage.get_asset_check_execution_history(check_key, limit=every + 1)
    evaluations = [record.event.dagster_event.event_specific_data for record in history
                   if record.event is not None and record.event.dagster_event is not None
                   and isinstance(record.event.dagster_event.event_specific_data, dg.AssetCheckEvaluation)]
    for runs_ago, evaluation in enumerate(evaluations[:every - 1], start=1):
        compared = evaluation.metadata.get("compared")
        if compared is not None and compared.value:
            return runs_ago, evaluation
    return None


def _check_kwargs(project: Project, table: TableSpec) -> dict:
    return {"asset": dg.AssetKey(list(table.asset_key)), "op_tags": op_tags(table),
            "pool": pool_for(project, table)}


def build_schema_drift_check(project: Project, table: TableSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        name="schema_drift",
        description="Source columns against target columns: added, dropped and type-changed columns, "
                    "each a warning or an error per the table's schema_drift policy.",
        **_check_kwargs(project, table),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        source = connector_for(table.source, project.connections[table.source], read_only=True)
        target = connector_for(table.target, project.connections[table.target])
        drift = current_drift(table, source, target)
        failing, warning = categories_with(table, drift, "fail"), categories_with(table, drift, "warn")
        metadata = {category: ", ".join(items) or "(none)" for category, items in drift.by_category().items()}
        metadata["policy"] = ", ".join(f"{k}: {v}" for k, v in table.schema_drift.model_dump().items())
        return dg.AssetCheckResult(
            passed=not failing and not warning,
            severity=dg.AssetCheckSeverity.ERROR if failing else dg.AssetCheckSeverity.WARN,
            description=drift.describe(),
            metadata=metadata,
        )

    return _check


def build_primary_key_check(project: Project, table: TableSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        name="primary_key_unique",
        description=f"No two target rows share a primary key ({', '.join(table.primary_key)}).",
        blocking=True,
        **_check_kwargs(project, table),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        target = connector_for(table.target, project.connections[table.target])
        keys = ", ".join(target.quote(k) for k in table.primary_key)
        duplicated = (f"SELECT {keys}, COUNT(*) AS copies FROM {target.qualified(table.target_table)} "
                      f"GROUP BY {keys} HAVING COUNT(*) > 1")
        groups = int(target.scalar(f"SELECT COUNT(*) FROM ({duplicated}) AS sync_duplicates") or 0)
        examples = target.fetch(f"{duplicated} ORDER BY copies DESC{target.limit_clause(5)}") if groups else []
        shown = "; ".join(
            ", ".join(f"{k}={v!r}" for k, v in zip(table.primary_key, row[:-1], strict=True)) + f" ({row[-1]} rows)"
            for row in examples)
        return dg.AssetCheckResult(passed=groups == 0,
                                   metadata={"duplicate_keys": groups, "examples": shown or "(none)"})

    return _check


def build_dead_letters_check(project: Project, table: TableSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        name="no_dead_letters",
        description="No rows of this table wait in the target's dead letters (_sync_dead_letters).",
        **_check_kwargs(project, table),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        target = connector_for(table.target, project.connections[table.target])
        waiting = dead_letters.count(target, table.target_table)
        examples = dead_letters.outstanding(target, table.target_table, limit=5) if waiting else []
        return dg.AssetCheckResult(
            passed=waiting == 0, severity=dg.AssetCheckSeverity.WARN,
            description=f"{waiting:,} rows in the dead letters" + (
                f"; list and retry them with: sync-assets dead-letters {table.name} [--retry]" if waiting else ""),
            metadata={"dead_letters": waiting, "examples": dg.MetadataValue.md("\n".join(
                f"- key {letter['row_key']}: {letter['reason']}" for letter in examples) or "(none)")})

    return _check


def is_merge_table(table: TableSpec) -> bool:
    return table.mode in ("incremental", "smart", "hash_delta") and bool(table.primary_key)


def build_freshness_checks(project: Project) -> tuple[list[dg.AssetChecksDefinition], list[dg.SensorDefinition]]:
    """One last-update freshness check per table with ``freshness`` (grouped by maximum age),
    and the sensor that evaluates them (running by default); both empty when no table asks."""
    by_age = defaultdict(list)
    for table in project.tables:
        if table.freshness is not None:
            by_age[table.freshness].append(dg.AssetKey(list(table.asset_key)))
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
