"""The partitions a run of a date-partitioned table covers, and each one's rows on either side.

A backfill of a partition range is one run that overwrites the whole range at once. Its figures
per partition come from one count per side over the range (``Connector.count_by_window``: a
``SUM(CASE ...)`` per partition window, in one scan), so every partition's materialization
carries its own row count and the row-count check reports each partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from sync_assets.config.project import TableSpec
from sync_assets.connectors.interface import Connector
from sync_assets.connectors.requests import ReadRequest
from sync_assets.orchestration.assets import partitions_for
from sync_assets.sync.planning import as_column_value, base_read


@dataclass(frozen=True)
class PartitionWindow:
    key: str
    start: datetime
    end: datetime


def windows_of(table: TableSpec, keys: list[str] | None = None) -> list[PartitionWindow]:
    """The windows of ``keys`` (default: every partition of the table up to now)."""
    partitions_def = partitions_for(table)
    assert partitions_def is not None, f"{table.name} is not date-partitioned"
    windows = []
    for key in keys if keys is not None else partitions_def.get_partition_keys():
        window = partitions_def.time_window_for_partition_key(key)
        windows.append(PartitionWindow(key, window.start, window.end))
    return windows


def rows_per_window(table: TableSpec, connector: Connector, schema: pa.Schema, windows: list[PartitionWindow],
                    side: str) -> dict[str, int]:
    """Partition key -> rows in its window on the ``source`` (the stream's read) or the ``target``."""
    assert table.partition is not None
    column = table.partition.column
    field = schema.field(column)
    bounds = [tuple(as_column_value(moment, field, table.partition.timezone) for moment in (w.start, w.end))
              for w in windows]
    request = (base_read(table, schema) if side == "source"
               else ReadRequest(table=table.target_table, columns=(column,)))
    counts = connector.count_by_window(request, schema, column, bounds)
    return {window.key: count for window, count in zip(windows, counts, strict=True)}
