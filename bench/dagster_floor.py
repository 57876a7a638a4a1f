"""Dagster's own floor for bench/many_tables.py: the same assets, checks and steps, with no sync.

    dagster asset list -f bench/dagster_floor.py
    dagster asset materialize -f bench/dagster_floor.py --select '*'

``FLOOR_TABLES`` assets (default 300) in steps of ``TABLES_PER_STEP``, each with the check names
in ``FLOOR_CHECKS`` (default the three checks of an incremental merge table). A run reports every
selected table as materialized and every check as passed, touching no database: what loading the
definitions and recording the run's events costs Dagster alone. bench/many_tables.py times it
next to sync_assets, so the share that is ours shows.
"""

import os

import dagster as dg

from sync_assets.orchestration.sync_steps import TABLES_PER_STEP

TABLES = int(os.environ.get("FLOOR_TABLES", "300"))
CHECKS = os.environ.get("FLOOR_CHECKS", "row_count_parity,schema_drift,primary_key_unique").split(",")


def floor_step(number: int, keys: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.multi_asset(name=f"floor_step_{number}", specs=[dg.AssetSpec(key, group_name="floor") for key in keys],
                    check_specs=[dg.AssetCheckSpec(name, asset=key) for key in keys for name in CHECKS],
                    can_subset=True)
    def _step(context: dg.AssetExecutionContext):
        for key in keys:
            if key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=key, metadata={"rows_read": 0})
                for name in CHECKS:
                    yield dg.AssetCheckResult(asset_key=key, check_name=name, passed=True)

    return _step


_keys = [dg.AssetKey(["floor", f"t{i:04d}"]) for i in range(1, TABLES + 1)]
defs = dg.Definitions(assets=[floor_step(n, _keys[start:start + TABLES_PER_STEP])
                              for n, start in enumerate(range(0, TABLES, TABLES_PER_STEP), 1)],
                      executor=dg.in_process_executor)  # as sync_assets by default
