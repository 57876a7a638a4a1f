"""A project's Dagster Definitions: assets, checks, IO managers, schedules and sensors, and the executor.

One asset per table with its checks (row-count parity, schema drift, primary-key uniqueness for
merge tables, freshness), an IO manager per writable connection, the named schedules, a change
sensor per source connection that asks for one, the freshness-check sensor and the alert sensors.

Executor: in-process by default. A step in its own process costs 1-5 s of start-up on a small
machine, more than syncing a typical small table, and a DuckDB file takes one writer anyway.
``SYNC_ASSETS_EXECUTOR=multiprocess`` runs steps in parallel processes instead, still one step at
a time per DuckDB target (tag concurrency limit) and capped by ``SYNC_ASSETS_MAX_CONCURRENT``.
"""

from __future__ import annotations

import os

import dagster as dg

from sync_assets.config.project import Project
from sync_assets.orchestration.alerts import build_alert_sensors
from sync_assets.orchestration.assets import build_table_asset, io_manager_key
from sync_assets.orchestration.automation import build_schedules
from sync_assets.orchestration.checks import (
    build_dead_letters_check,
    build_freshness_checks,
    build_primary_key_check,
    build_row_count_check,
    build_rows_match_check,
    build_schema_drift_check,
    is_merge_table,
)
from sync_assets.orchestration.io_manager import SyncTargetIOManager
from sync_assets.orchestration.sensors import build_change_sensors


def build_definitions(project: Project) -> dg.Definitions:
    assets = [build_table_asset(project, table) for table in project.tables]
    checks = [build_row_count_check(project, table) for table in project.tables
              if table.endpoint is None]  # an API cannot count its records up to a watermark
    checks += [build_schema_drift_check(project, table) for table in project.tables]
    checks += [build_primary_key_check(project, table) for table in project.tables if is_merge_table(table)]
    checks += [build_rows_match_check(project, table) for table in project.tables if table.verify is not None]
    checks += [build_dead_letters_check(project, table) for table in project.tables
               if table.on_bad_rows == "quarantine"]
    freshness_checks, freshness_sensors = build_freshness_checks(project)
    sensors = build_change_sensors(project) + build_alert_sensors(project) + freshness_sensors
    writable = sorted(name for name, conn in project.connections.items() if conn.writable)
    resources = {
        io_manager_key(name): SyncTargetIOManager(config_dir=str(project.config_dir), connection=name)
        for name in writable
    }
    duckdb_targets = [name for name in writable if project.connections[name].kind == "duckdb"]
    return dg.Definitions(assets=assets, asset_checks=checks + freshness_checks, resources=resources,
                          schedules=build_schedules(project), sensors=sensors,
                          executor=executor_from_environment(duckdb_targets))


def executor_from_environment(duckdb_targets: list[str]) -> dg.ExecutorDefinition:
    if os.environ.get("SYNC_ASSETS_EXECUTOR", "in_process") == "in_process":
        return dg.in_process_executor
    return dg.multiprocess_executor.configured({
        "max_concurrent": int(os.environ.get("SYNC_ASSETS_MAX_CONCURRENT", "4")),
        "tag_concurrency_limits": [
            {"key": "sync_assets/target", "value": name, "limit": 1} for name in duckdb_targets
        ],
    })
