"""The at-a-glance status table: per table, both sides' row counts and watermarks, and the last sync.

Row counts and watermarks are read live (``COUNT(*)`` of the synced slice and ``MAX(update_key)``
on each side); the last sync time and result come from the Dagster instance (``$DAGSTER_HOME``):
the latest materialization's time and the status of the latest run that planned the table. A side
that cannot be read shows ``unreachable`` (or ``error``) and the reason is listed under the table,
instead of failing the whole command.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from sync_assets.config.project import Project, TableSpec
from sync_assets.connectors import connector_for
from sync_assets.errors import ConnectionFailed
from sync_assets.sync.planning import base_read, source_schema

UNREACHABLE = "unreachable"
COLUMNS = ("table", "source rows", "target rows", "source watermark", "target watermark", "last sync (UTC)",
           "last result")


@dataclass(frozen=True)
class TableStatus:
    table: str
    source_rows: str
    target_rows: str
    source_watermark: str
    target_watermark: str
    last_sync: str
    last_result: str
    problems: tuple[str, ...] = ()

    def cells(self) -> tuple[str, ...]:
        return (self.table, self.source_rows, self.target_rows, self.source_watermark, self.target_watermark,
                self.last_sync, self.last_result)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)


def _failed(side: str, table: TableSpec, exc: Exception, problems: list[str]) -> tuple[str, str]:
    problems.append(f"{'/'.join(table.asset_key)} {side}: {exc}")
    marker = UNREACHABLE if isinstance(exc, ConnectionFailed) else "error"
    return marker, marker


def _source_side(project: Project, table: TableSpec, problems: list[str]) -> tuple[str, str]:
    try:
        source = connector_for(table.source, project.connections[table.source], read_only=True)
        schema = source_schema(table, source)
        rows = source.count(base_read(table, schema), schema)
        watermark = (source.max_value(table.source_table, table.update_key)
                     if table.update_key and table.source_table else None)
        return _text(rows), _text(watermark)
    except Exception as exc:
        return _failed("source", table, exc, problems)


def _target_side(project: Project, table: TableSpec, problems: list[str]) -> tuple[str, str]:
    try:
        target = connector_for(table.target, project.connections[table.target])
        if target.table_schema(table.target_table) is None:
            return "(no table)", "-"
        rows = target.scalar(f"SELECT COUNT(*) FROM {target.qualified(table.target_table)}")
        watermark = target.max_value(table.target_table, table.update_key) if table.update_key else None
        return _text(int(rows or 0)), _text(watermark)
    except Exception as exc:
        return _failed("target", table, exc, problems)


def _history(instance: dg.DagsterInstance | None, table: TableSpec) -> tuple[str, str]:
    if instance is None:
        return "(no DAGSTER_HOME)", "-"
    key = dg.AssetKey(list(table.asset_key))
    records = instance.get_asset_records([key])
    entry = records[0].asset_entry if records else None
    if entry is None:
        return "never", "-"
    last = entry.last_materialization_record
    synced = datetime.fromtimestamp(last.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S") if last else "never"
    run_id = entry.last_planned_materialization_run_id or entry.last_run_id
    run = instance.get_run_by_id(run_id) if run_id else None
    return synced, (f"{run.status.value} (run {run.run_id[:8]})" if run else "-")


def collect_status(project: Project, instance: dg.DagsterInstance | None) -> list[TableStatus]:
    rows = []
    for table in project.tables:
        problems: list[str] = []
        source_rows, source_watermark = _source_side(project, table, problems)
        target_rows, target_watermark = _target_side(project, table, problems)
        last_sync, last_result = _history(instance, table)
        rows.append(TableStatus("/".join(table.asset_key), source_rows, target_rows, source_watermark,
                                target_watermark, last_sync, last_result, tuple(problems)))
    return rows


def format_status(rows: list[TableStatus]) -> str:
    table = [COLUMNS, *(r.cells() for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    return "\n".join(lines + [f"! {problem}" for r in rows for problem in r.problems])
