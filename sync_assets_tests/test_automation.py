"""Schedules, sync windows and late partitions, evaluated with Dagster's test contexts at fixed
times; plus validation of the automation keys in the YAML. No daemon, no database."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from sync_assets.errors import ConfigError
from sync_assets.orchestration.automation import RANGE_END_TAG, RANGE_START_TAG, build_schedules
from sync_assets.orchestration.project_definitions import build_definitions

PG = {"kind": "postgres", "options": {"database": "test"}}
DUCK = {"kind": "duckdb", "options": {"path": "w.duckdb"}}
BERLIN = ZoneInfo("Europe/Berlin")


def project_config(streams: dict, **extra) -> dict:
    return {
        "connections": {"pg": PG, "duck": DUCK},
        "schedules": {"nightly": {"cron": "0 * * * *", "timezone": "Europe/Berlin"}},
        "source": "pg", "target": "duck",
        "defaults": {"schedule": "nightly", "window": {"start": "19:00", "end": "07:00", "timezone": "Europe/Berlin"}},
        "streams": streams, **extra,
    }


STREAMS = {
    "public.orders": {"mode": "incremental", "primary_key": "id", "update_key": "updated_at"},
    "public.customers": {"primary_key": "id", "window": None},
    "public.events": {"mode": "date_partitioned", "partition": {"column": "day", "start": "2024-01-01"},
                      "late_partitions": 3},
}


def schedule_at(write_project, moment: datetime):
    defs = build_definitions(write_project(project_config(STREAMS)))
    (schedule,) = build_schedules(write_project(project_config(STREAMS)))
    assert (
        schedule.execution_timezone == "Europe/Berlin" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    )
    context = dg.build_schedule_context(scheduled_execution_time=moment, repository_def=defs.get_repository_def())
    return schedule.evaluate_tick(context)


def test_inside_the_window_every_table_runs_and_late_partitions_are_one_range_run(write_project):
    result = schedule_at(write_project, datetime(2024, 3, 10, 22, 0, tzinfo=BERLIN))
    plain, events = result.run_requests
    assert {k.to_user_string() for k in plain.asset_selection} == {"public/orders", "public/customers"}
    assert plain.run_key == "nightly:2024-03-10T22:00:00+01:00"
    assert events.asset_selection == [dg.AssetKey(["public", "events"])]
    assert (events.tags[RANGE_START_TAG], events.tags[RANGE_END_TAG]) == ("2024-03-07", "2024-03-09")


def test_outside_the_window_tables_are_held_back_not_queued(write_project):
    result = schedule_at(write_project, datetime(2024, 3, 10, 12, 0, tzinfo=BERLIN))
    (only,) = result.run_requests
    assert [k.to_user_string() for k in only.asset_selection] == ["public/customers"]


def test_a_tick_with_every_table_outside_its_window_is_skipped_with_the_reason(write_project):
    streams = {"public.orders": STREAMS["public.orders"]}
    (schedule,) = build_schedules(write_project(project_config(streams)))
    moment = datetime(2024, 3, 10, 11, 30, tzinfo=UTC)
    result = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=moment))
    assert result.run_requests == []
    assert "public.orders only syncs 19:00-07:00 Europe/Berlin (it is 12:30 there)" in result.skip_message


def test_window_wraps_midnight_in_its_own_time_zone(write_project):
    project = write_project(project_config({"public.orders": STREAMS["public.orders"]}))
    window = project.tables[0].window
    assert window.contains(datetime(2024, 6, 1, 23, 59, tzinfo=BERLIN))
    assert window.contains(datetime(2024, 6, 1, 4, 0, tzinfo=UTC))  # 06:00 in Berlin
    assert not window.contains(datetime(2024, 6, 1, 5, 0, tzinfo=UTC))  # 07:00 in Berlin


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"schedules": {"nightly": {"cron": "0 25 * * *"}}},
            "key 'schedules.nightly.cron': Value error, '0 25 * * *' is not a valid cron",
        ),
        (
            {"schedules": {"nightly": {"cron": "0 * * * *", "timezone": "Mars/Olympus"}}},
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            {"defaults": {"schedule": "weekly"}},
            "stream 'public.orders': key 'schedule': unknown schedule 'weekly'; defined: nightly",
        ),
        ({"defaults": {"window": "7pm to 7am"}}, "window '7pm to 7am' is not 'HH:MM-HH:MM'"),
        (
            {"defaults": {"late_partitions": 2}},
            "stream 'public.orders': key 'late_partitions' applies to mode 'date_partitioned' only",
        ),
        (
            {"streams": {"public.orders": {"chunk": {"rows": 10}}}},
            "stream 'public.orders': key 'chunk' applies to incremental and smart modes only",
        ),
        ({"defaults": {"chunk": {"rows": 10, "range": "1 day"}}}, "give exactly one of 'rows'"),
        ({"defaults": {"freshness": "soon"}}, "lookback 'soon' is not a number"),
        (
            {"defaults": {"schema_changes": "fail", "schema_drift": {"added": "add"}}},
            "key 'schema_drift.added' is 'add' but 'schema_changes' is 'fail'",
        ),
    ],
)
def test_automation_keys_are_validated_with_file_stream_and_key(write_project, change, message):
    config = project_config({"public.orders": STREAMS["public.orders"]})
    for key, value in change.items():
        config[key] = {**config[key], **value} if key in ("defaults", "streams") else value
    with pytest.raises(ConfigError) as error:
        write_project(config)
    assert message in str(error.value)
    assert "sync.yaml" in str(error.value)


def test_shipped_automation_example_loads_into_schedules_sensors_and_checks(monkeypatch):
    from pathlib import Path

    from sync_assets.config.loader import load_files

    for name in ("ERP_PASSWORD", "REPORTING_PASSWORD", "SLACK_WEBHOOK_URL", "SMTP_PASSWORD", "PAGER_TOKEN"):
        monkeypatch.setenv(name, "x")
    example = Path(__file__).resolve().parents[1] / "config" / "examples" / "automation.yaml"
    defs = build_definitions(load_files([example]))
    assert {s.name for s in defs.schedules} == {"nightly", "morning"}
    assert {s.name for s in defs.sensors} == {"erp_changes", "sync_alerts_on_run_failure",
                                              "sync_alerts_on_failed_checks", "sync_freshness_checks"}
    check_names = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {"row_count_parity", "schema_drift", "primary_key_unique", "freshness_check"} <= check_names


def test_a_schedule_tick_leaves_out_tables_with_a_run_queued_or_in_progress(write_project, tmp_path):
    project = write_project(project_config(STREAMS))
    (schedule,) = build_schedules(project)
    defs = build_definitions(project)
    orders = dg.AssetKey(["public", "orders"])
    # a schedule context reaches its instance through a ref: an instance on disk, not an ephemeral one
    with dg.DagsterInstance.local_temp(tempdir=str(tmp_path)) as instance:
        run = instance.create_run_for_job(defs.resolve_implicit_global_asset_job_def(), asset_selection={orders},
                                          status=dg.DagsterRunStatus.STARTED)
        with dg.build_schedule_context(scheduled_execution_time=datetime(2024, 3, 10, 22, 0, tzinfo=BERLIN),
                                       repository_def=defs.get_repository_def(), instance=instance) as context:
            plain, events = schedule.evaluate_tick(context).run_requests  # the context closes what it opened
    assert [k.to_user_string() for k in plain.asset_selection] == ["public/customers"]
    assert events.asset_selection == [dg.AssetKey(["public", "events"])]
    assert run.run_id
