"""How a table looks in Dagster: its asset spec (key, group, kinds, partitions, deps, definition
metadata), its pool and tags, and the materialization metadata made from a sync's result (rows,
duration, rows/s, watermarks, window, SQL, column schema and lineage, chunk progress).

Foreign-key parents are asset deps, so a run of several tables loads parents first. The steps
that sync tables (many per step) are built in ``sync_steps``.
"""

import re
from datetime import date, datetime

import dagster as dg

from sync_assets.config.project import Project, TableSpec
from sync_assets.sync.chunking import ChunkProgress
from sync_assets.sync.engine import SyncResult

TRIGGER_TAG = "sync_assets/trigger"
"""Run tag saying what requested a run (``schedule:<name>``, ``sensor:<name>``)."""
KIND_BADGES = {"postgres": "postgres", "duckdb": "duckdb", "mssql": "sqlserver", "snowflake": "snowflake",
               "http": "api"}


def pool_for(project: Project, table: TableSpec) -> str:
    """DuckDB files take one writer at a time; other targets are limited per source connection."""
    if project.connections[table.target].kind == "duckdb":
        return f"{table.target}_writer"
    return f"{table.source}_reads"


def op_tags(table: TableSpec) -> dict[str, str]:
    """Tags the executor limits on: one step at a time per DuckDB target file."""
    return {"sync_assets/target": table.target, "sync_assets/source": table.source}


def asset_key_of(table: TableSpec) -> dg.AssetKey:
    return dg.AssetKey(list(table.asset_key))


def io_manager_key(connection: str) -> str:
    return f"{connection}_io_manager"


def partitions_for(table: TableSpec) -> dg.PartitionsDefinition | None:
    spec = table.partition
    if spec is None:
        return None
    start = spec.start if isinstance(spec.start, datetime) else datetime.combine(spec.start, datetime.min.time())
    cls = {"hourly": dg.HourlyPartitionsDefinition, "daily": dg.DailyPartitionsDefinition,
           "weekly": dg.WeeklyPartitionsDefinition, "monthly": dg.MonthlyPartitionsDefinition}[spec.granularity]
    return cls(start_date=start, timezone=spec.timezone, end_offset=spec.end_offset)


def connection_uri(kind: str, options: dict) -> str:
    """Where a connection's database is, as a URI without user or secrets."""
    if kind == "postgres":
        return f"postgresql://{options.get('host', '127.0.0.1')}:{options.get('port', 5432)}/{options['database']}"
    if kind == "duckdb":
        return f"duckdb://{options['path']}"  # the loader made it absolute
    if kind == "mssql":
        return f"mssql://{options['server']}:{options.get('port', 1433)}/{options['database']}"
    if kind == "snowflake":
        return f"snowflake://{options['account']}/{options['database']}"
    return str(options.get("base_url", kind))


def definition_metadata(project: Project, table: TableSpec) -> dict:
    target = project.connections[table.target]
    return {
        "source": f"{table.source} ({project.connections[table.source].kind}): {table.source_object}",
        "target": f"{table.target} ({target.kind}): {table.target_table}",
        "dagster/table_name": f"{table.target}.{table.target_table}",
        "dagster/uri": f"{connection_uri(target.kind, target.options)}#{table.target_table}",
        "mode": table.mode,
        "primary_key": ", ".join(table.primary_key) or "(none)",
        "update_key": table.update_key or "(none)",
        "config_file": str(table.file),
    }


def _watermark_text(value) -> str:
    """A watermark, window end or keyset position (a tuple) as text for the UI."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_watermark_text(v) for v in value) + ")"
    return "(none)" if value is None else (value.isoformat() if hasattr(value, "isoformat") else str(value))


def materialization_metadata(result: SyncResult) -> dict:
    plan = result.plan
    metadata: dict = {
        "dagster/row_count": result.target_rows,
        "rows_read": result.rows_read,
        "rows_written": result.rows_written,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "rows_deleted": result.rows_deleted,
        "duration_s": round(result.duration_s, 3),
        "rows_per_second": round(result.rows_per_second, 1),
        "strategy": plan.strategy,
        "write": plan.write.kind,
        "bulk_path": "native COPY pass-through" if result.native_path else "Arrow record batches",
        "source_sql": dg.MetadataValue.md(f"```sql\n{result.source_sql}\n```"),
    }
    if plan.write.kind == "overwrite_window":
        metadata["dagster/partition_row_count"] = result.rows_written
        metadata["rows_replaced"] = result.rows_deleted
    if plan.table.update_key:
        metadata["watermark_before"] = _watermark_text(plan.watermark_before)
        metadata["watermark_after"] = _watermark_text(result.watermark_after)
        metadata["window"] = f"({_watermark_text(plan.window[0] if plan.window else plan.watermark_before)}, " \
                             f"{_watermark_text(result.watermark_after)}]"
        lag = _lag_seconds(result.watermark_after)
        if lag is not None:
            metadata["watermark_lag_s"] = lag
    if plan.write.kind == "hash_delta":
        metadata["rows_unchanged"] = result.rows_unchanged
    if plan.write.on_bad_rows == "quarantine":
        metadata["rows_quarantined"] = result.rows_quarantined
    if plan.write.deletes is not None:
        metadata["deletes_checked"] = result.deletes_checked
        if plan.write.deletes.detect == "soft":
            metadata["rows_soft_deleted"] = result.rows_soft_deleted
            metadata["rows_restored"] = result.rows_restored
    if result.columns_added:
        metadata["columns_added"] = ", ".join(result.columns_added)
    origins = dict(plan.shaping.lineage()) if plan.shaping is not None else {}
    if result.target_schema is not None:
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(f.name, result.target_column_types.get(f.name, str(f.type)),
                                    constraints=dg.TableColumnConstraints(nullable=f.nullable),
                                    description=origins[f.name].how if f.name in origins else None)
                     for f in result.target_schema]
        )
    if origins:
        source_key = source_asset_key(plan.table)
        metadata["dagster/column_lineage"] = dg.TableColumnLineage({
            column: [dg.TableColumnDep(asset_key=source_key, column_name=name) for name in origin.sources]
            for column, origin in origins.items()})
    return metadata


def source_asset_key(table: TableSpec) -> dg.AssetKey:
    """The key of a table's source (its external asset, and in column lineage):
    ``source/<connection>/<schema>/<table>`` (an API stream or a query: ``source/<connection>/<stream>``),
    each part in the characters Dagster takes in names (others become ``_``: ``Order Items`` ->
    ``Order_Items``)."""
    name = table.source_table
    parts = [p for p in (name.schema, name.name) if p] if name is not None else [table.name]
    return dg.AssetKey([re.sub(r"[^A-Za-z0-9_]", "_", part) for part in ("source", table.source, *parts)])


def chunk_metadata(chunk: ChunkProgress) -> dict:
    """Background-copy progress: plotted per materialization in the UI until it reaches 100%."""
    return {
        "background_copy": chunk.describe(),
        "rows_left": chunk.rows_left,
        "progress_pct": chunk.percent_done,
        "chunk_upper_bound": _watermark_text(chunk.upper_bound),
    }


def _lag_seconds(value) -> float | None:
    if isinstance(value, datetime):
        now = datetime.now(value.tzinfo) if value.tzinfo else datetime.now()
        return round((now - value).total_seconds(), 1)
    if isinstance(value, date):
        return float((date.today() - value).days * 86400)
    return None


def automation_condition_of(table: TableSpec) -> dg.AutomationCondition | None:
    """``eager`` or ``on_cron`` over the table's synced parents: its source, an external asset
    nobody materializes, is ignored (Dagster would otherwise wait for it forever)."""
    spec = table.automation
    if spec is None:
        return None
    condition = (dg.AutomationCondition.eager() if spec.eager
                 else dg.AutomationCondition.on_cron(spec.on_cron, cron_timezone=spec.timezone))
    return condition.ignore(dg.AssetSelection.assets(source_asset_key(table))) if table.source_asset else condition


def source_asset_spec(project: Project, table: TableSpec) -> dg.AssetSpec:
    """The table's source as an external asset upstream of its copy (group ``<connection>_source``):
    the lineage graph shows where each copy comes from. sync_assets never materializes it."""
    source = project.connections[table.source]
    return dg.AssetSpec(key=source_asset_key(table), group_name=f"{table.source}_source",
                        kinds={KIND_BADGES[source.kind]},
                        description=f"{table.source_object} on connection {table.source} ({source.kind}): "
                                    f"the source of {'/'.join(table.asset_key)}.",
                        metadata={"dagster/uri": f"{connection_uri(source.kind, source.options)}"
                                                 f"#{table.source_object}"})


def asset_spec(project: Project, table: TableSpec) -> dg.AssetSpec:
    """The table's asset as the UI shows it: key, group, kinds, deps (its source, its parents),
    partitions, metadata, freshness policy and automation condition (the step that syncs it is
    built by ``sync_steps``)."""
    source_spec, target_spec = project.connections[table.source], project.connections[table.target]
    return dg.AssetSpec(
        key=asset_key_of(table),
        group_name=table.group,
        kinds={KIND_BADGES[source_spec.kind], KIND_BADGES[target_spec.kind]},
        description=table.description or f"Copy of {table.source_object} from {table.source} "
                                          f"into {table.target_table} on {table.target} ({table.mode}).",
        code_version=table.fingerprint(),
        partitions_def=partitions_for(table),
        metadata=definition_metadata(project, table),
        owners=list(table.owners),
        tags=dict(table.tags),
        skippable=True,
        deps=[*([source_asset_key(table)] if table.source_asset else []),
              *(dg.AssetKey(list(parent)) for parent in table.deps)],
        automation_condition=automation_condition_of(table),
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=table.freshness) if table.freshness else None,
    ).with_io_manager_key(io_manager_key(table.target))
