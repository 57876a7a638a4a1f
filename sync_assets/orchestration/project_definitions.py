"""A project's Dagster Definitions: assets, checks, IO managers, schedules and sensors, and the executor.

One asset per table with its checks (each table's spec through the translator hook), downstream
of its source table as an external asset, synced many tables per step (``sync_steps``); the
freshness checks, a resource per connection and an IO manager per writable one, the named
schedules, a change sensor per source connection that asks for one, the automation-condition,
freshness-check and alert sensors.

Executor: ``executors`` (in-process by default; configured in ``execution:``).
"""

from __future__ import annotations

import dagster as dg

from sync_assets.config.project import Project
from sync_assets.orchestration.alerts import build_alert_sensors
from sync_assets.orchestration.assets import io_manager_key, source_asset_spec
from sync_assets.orchestration.automation import build_automation_sensor, build_schedules
from sync_assets.orchestration.checks import build_freshness_checks
from sync_assets.orchestration.executors import build_executor
from sync_assets.orchestration.io_manager import SyncTargetIOManager
from sync_assets.orchestration.resources import connection_resources, resource_key
from sync_assets.orchestration.sensors import build_change_sensors
from sync_assets.orchestration.sync_steps import build_sync_steps
from sync_assets.orchestration.translator import SyncAssetsTranslator, translate


def build_definitions(project: Project, translator: SyncAssetsTranslator | None = None, *,
                      default_executor: bool = True) -> dg.Definitions:
    """``translator``: a Python hook on each table's asset spec (``translator.SyncAssetsTranslator``).
    Without an ``execution:`` block the executor is in-process, or with ``default_executor=False``
    (the Component in a ``dg`` project) left to the code location."""
    project, specs = translate(project, translator or SyncAssetsTranslator())
    freshness_checks, freshness_sensors = build_freshness_checks(project)
    sensors = (build_change_sensors(project) + build_alert_sensors(project) + freshness_sensors
               + build_automation_sensor(project))
    connections = connection_resources(project)
    writable = sorted(name for name, conn in project.connections.items() if conn.writable)
    resources = {**connections, **{io_manager_key(name): SyncTargetIOManager(connection=connections[resource_key(name)])
                                   for name in writable}}
    sources = list({spec.key: spec for spec in (source_asset_spec(project, t) for t in project.tables
                                                if t.source_asset)}.values())
    return dg.Definitions(assets=[*sources, *build_sync_steps(project, specs)], asset_checks=freshness_checks,
                          resources=resources, schedules=build_schedules(project), sensors=sensors,
                          executor=build_executor(project) if default_executor or project.execution else None)
