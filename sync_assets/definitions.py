"""The Dagster entry point: ``dagster ... -m sync_assets.definitions``.

Builds the Definitions from the YAML in ``$SYNC_ASSETS_CONFIG`` (default: ``config/`` in the
project): one asset and one row-count check per table, an IO manager per writable connection,
and an executor that lets one step at a time write each DuckDB file. Loading touches no database.
"""

import os
from pathlib import Path

import dagster as dg

from sync_assets.assets import build_table_asset, io_manager_key
from sync_assets.checks import build_row_count_check
from sync_assets.demo import demo_downstream_assets
from sync_assets.io_manager import SyncTargetIOManager
from sync_assets.spec import Project, load_project

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def config_dir() -> Path:
    return Path(os.environ.get("SYNC_ASSETS_CONFIG", DEFAULT_CONFIG_DIR))


def build_definitions(project: Project) -> dg.Definitions:
    assets = [build_table_asset(project, table) for table in project.tables]
    checks = [build_row_count_check(project, table) for table in project.tables]
    writable = sorted(name for name, conn in project.connections.items() if conn.writable)
    resources = {
        io_manager_key(name): SyncTargetIOManager(config_dir=str(project.config_dir), connection=name)
        for name in writable
    }
    duckdb_targets = [name for name in writable if project.connections[name].kind == "duckdb"]
    if duckdb_targets:
        assets += demo_downstream_assets({a.key for a in assets}, io_manager_key(duckdb_targets[0]))
    executor = dg.multiprocess_executor.configured({
        "max_concurrent": int(os.environ.get("SYNC_ASSETS_MAX_CONCURRENT", "4")),
        "tag_concurrency_limits": [
            {"key": "sync_assets/target", "value": name, "limit": 1} for name in duckdb_targets
        ],
    })
    return dg.Definitions(assets=assets, asset_checks=checks, resources=resources, executor=executor)


defs = build_definitions(load_project(config_dir()))
