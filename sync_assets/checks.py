"""Asset checks for synced tables: row-count parity between source and target.

The check counts the same slice on both sides: the whole (filtered) source for full refresh,
rows up to the target's watermark for incremental tables, and the partition's time window for
date-partitioned ones. It is a separate check (not part of the sync step) so a dry run records
nothing, and so it can be re-run from the UI on its own.
"""

import dagster as dg

from sync_assets.assets import op_tags, partitions_for, pool_for
from sync_assets.connectors import connector_for
from sync_assets.connectors.base import Filter, ReadRequest
from sync_assets.planning import as_column_value, base_read, source_schema
from sync_assets.spec import Project, TableSpec


def build_row_count_check(project: Project, table: TableSpec) -> dg.AssetChecksDefinition:
    partitions_def = partitions_for(table)

    @dg.asset_check(
        asset=dg.AssetKey(list(table.asset_key)),
        name="row_count_parity",
        description="Source and target hold the same number of rows for the synced slice.",
        partitions_def=partitions_def,
        op_tags=op_tags(table),
        pool=pool_for(project, table),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        source = connector_for(table.source, project.connections[table.source])
        target = connector_for(table.target, project.connections[table.target])
        target_schema = target.table_schema(table.target_table)
        if target_schema is None:
            return dg.AssetCheckResult(passed=False, metadata={"reason": f"target table {table.target_table} does not exist"})
        schema = source_schema(table, source)
        read = base_read(table, schema)
        filters: tuple[Filter, ...] = ()
        slice_text = "whole table"
        if partitions_def is not None and table.partition is not None:
            window = context.partition_time_window if context.has_partition_key else None
            if window is not None:
                column = table.partition.column
                low, high = (as_column_value(v, schema.field(column), table.partition.timezone) for v in window)
                filters = (Filter(column, ">=", low), Filter(column, "<", high))
                slice_text = f"{column} in [{low}, {high})"
        elif table.update_key and table.mode != "full_refresh":
            watermark = target.max_value(table.target_table, table.update_key)
            if watermark is not None:
                filters = (Filter(table.update_key, "<=", watermark),)
                slice_text = f"{table.update_key} <= {watermark}"
        source_rows = source.count(read.with_filters(*filters), schema)
        target_rows = target.count(ReadRequest(table=table.target_table, filters=filters), target_schema)
        return dg.AssetCheckResult(
            passed=source_rows == target_rows,
            metadata={"source_rows": source_rows, "target_rows": target_rows,
                      "difference": target_rows - source_rows, "slice": slice_text},
        )

    return _check
