"""Schedules, sync windows and late partitions: turning "these tables, now" into run requests.

Schedules are Dagster ``ScheduleDefinition``s, one per named schedule in the YAML (``schedules:``
with cron and time zone; streams opt in with ``schedule: NAME``, per table or per group through
``defaults``). Schedules rather than declarative automation conditions, because:

- a sync window must skip a trigger with a visible reason, and a schedule tick records its
  ``SkipReason`` (and logs which tables were held back) in the UI's tick history;
- ``AutomationCondition.on_cron`` waits for every dependency to update after the tick, which with
  foreign-key deps would hold a child back whenever its parent did not change;
- a date-partitioned table re-syncs its last N partitions as one partition-range run, which a
  schedule requests directly.

Declarative automation is the alternative, per stream: ``automation: {on_cron: ...}`` or
``{eager: true}`` becomes the asset's ``AutomationCondition`` (``assets.automation_condition_of``),
evaluated by ``sync_automation_conditions`` (running by default; Dagster's implicit sensor starts
stopped). It honours no sync window; use it where Dagster's semantics are what you want.

``run_requests`` is shared by schedules and change sensors: tables outside their window are held
back (never queued), and so are tables that already have a run queued or in progress (the tick
logs which run; a sensor keeps their old signal in its cursor, so a later tick requests them once
that run has ended); unpartitioned tables go into one run (parents load before children inside
it), and each date-partitioned table gets one run over its last ``late_partitions`` partitions.
Two runs of one table that meet anyway (a manual materialize, a backfill) take turns on the
target's writer lock (``connectors.locking``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from sync_assets.config.project import Project, TableSpec
from sync_assets.orchestration.assets import TRIGGER_TAG, partitions_for

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
ACTIVE_RUN_STATUSES = (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
                       dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
"""A run in one of these states has not finished writing the assets it selected."""


@dataclass
class Requests:
    runs: list[dg.RunRequest] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)
    """One line per table not requested: outside its window (the window and the local time), or
    with a run already queued or in progress (that run's id)."""
    requested: list[TableSpec] = field(default_factory=list)

    def skip_reason(self, what: str) -> dg.SkipReason:
        if self.held_back:
            return dg.SkipReason(f"{what}: every table is held back, nothing queued: " + "; ".join(self.held_back))
        return dg.SkipReason(f"{what}: no table to sync")


def active_runs(context: dg.ScheduleEvaluationContext | dg.SensorEvaluationContext) -> dict[dg.AssetKey, str]:
    """Asset key -> id of a run that is queued or in progress and selects that asset."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:  # a test context built without an instance has no runs
        return {}
    busy: dict[dg.AssetKey, str] = {}
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(ACTIVE_RUN_STATUSES))):
        for key in run.asset_selection or ():
            busy.setdefault(key, run.run_id)
    return busy


def outside_window(table: TableSpec, moment: datetime) -> str | None:
    """Why ``table`` may not sync at ``moment``, or None when it may."""
    if table.window is None or table.window.contains(moment):
        return None
    local = moment.astimezone(ZoneInfo(table.window.timezone))
    return f"{table.name} only syncs {table.window.describe()} (it is {local:%H:%M} there)"


def _late_partition_request(table: TableSpec, moment: datetime, run_key: str,
                            tags: dict[str, str]) -> dg.RunRequest | None:
    partitions_def = partitions_for(table)
    keys = partitions_def.get_partition_keys(current_time=moment) if partitions_def else []
    if not keys:
        return None
    recent = keys[-table.late_partitions:]
    asset = dg.AssetKey(list(table.asset_key))
    if len(recent) == 1:
        return dg.RunRequest(run_key=f"{run_key}:{recent[0]}", asset_selection=[asset], partition_key=recent[0],
                             tags=tags)
    return dg.RunRequest(run_key=f"{run_key}:{recent[0]}...{recent[-1]}", asset_selection=[asset],
                         tags={**tags, RANGE_START_TAG: recent[0], RANGE_END_TAG: recent[-1]})


def run_requests(tables: list[TableSpec], moment: datetime, run_key: str, trigger: str,
                 active: Mapping[dg.AssetKey, str] | None = None) -> Requests:
    """Run requests for the ``tables`` allowed to sync at ``moment`` that have no run queued or in
    progress (``active``: asset key -> run id); ``run_key`` must be deterministic."""
    out = Requests()
    allowed = []
    for table in tables:
        reason = outside_window(table, moment)
        running = (active or {}).get(dg.AssetKey(list(table.asset_key)))
        if running and not reason:
            reason = f"{table.name} already has run {running} queued or in progress"
        if reason:
            out.held_back.append(reason)
        else:
            allowed.append(table)
    tags = {TRIGGER_TAG: trigger}
    plain = [t for t in allowed if t.partition is None]
    if plain:
        sources = sorted({t.source for t in plain})
        out.runs.append(dg.RunRequest(
            run_key=run_key, asset_selection=[dg.AssetKey(list(t.asset_key)) for t in plain],
            tags={**tags, "sync_assets/source": ",".join(sources)},
        ))
        out.requested += plain
    for table in allowed:
        if table.partition is not None:
            request = _late_partition_request(table, moment, f"{run_key}:{'/'.join(table.asset_key)}",
                                              {**tags, "sync_assets/source": table.source})
            if request is not None:
                out.runs.append(request)
                out.requested.append(table)
    return out


def build_schedule(project: Project, name: str) -> dg.ScheduleDefinition | None:
    spec = project.schedules[name]
    tables = [t for t in project.tables if t.schedule == name]
    if not tables:
        return None

    @dg.schedule(
        name=name,
        cron_schedule=spec.cron,
        execution_timezone=spec.timezone,
        target=dg.AssetSelection.assets(*[dg.AssetKey(list(t.asset_key)) for t in tables]),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=spec.description or f"Syncs {len(tables)} table(s) on '{spec.cron}' ({spec.timezone}).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        moment = context.scheduled_execution_time
        out = run_requests(tables, moment, f"{name}:{moment.isoformat()}", trigger=f"schedule:{name}",
                           active=active_runs(context))
        for line in out.held_back:
            context.log.info(f"held back: {line}")
        return out.runs or out.skip_reason(f"schedule {name} at {moment.isoformat()}")

    return _schedule


def build_schedules(project: Project) -> list[dg.ScheduleDefinition]:
    return [s for s in (build_schedule(project, name) for name in sorted(project.schedules)) if s is not None]


AUTOMATION_SENSOR = "sync_automation_conditions"


def build_automation_sensor(project: Project) -> list[dg.SensorDefinition]:
    """The sensor that evaluates the tables' ``automation:`` conditions, running by default
    (Dagster's implicit one starts stopped); none when no table has one."""
    keys = [dg.AssetKey(list(t.asset_key)) for t in project.tables if t.automation is not None]
    if not keys:
        return []
    return [dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR, target=dg.AssetSelection.assets(*keys), default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Evaluates the automation conditions of {len(keys)} table(s) (eager / on_cron in the YAML).")]
