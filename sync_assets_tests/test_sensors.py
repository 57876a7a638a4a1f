"""Change sensors against a real PostgreSQL source, evaluated with ``build_sensor_context``:
the first tick requests every table, an unchanged source is skipped, only changed tables are
requested (with deterministic run keys), the cursor round-trips as JSON, a source that is down
fails the tick without losing the cursor, and a table outside its window is held back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import pytest

from sync_assets.orchestration.project_definitions import build_definitions
from sync_assets.orchestration.sensors import SourceUnreachable, build_change_sensor, build_change_sensors

NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def source(pg, schema_name):
    schema = schema_name("src")
    pg.execute(f'CREATE TABLE "{schema}".orders (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL)')
    pg.execute(f'CREATE TABLE "{schema}".customers (id bigint PRIMARY KEY, name text)')
    pg.execute(f"INSERT INTO \"{schema}\".orders VALUES (1, '2024-01-01T00:00:00Z'), (2, '2024-01-02T00:00:00Z')")
    pg.execute(f"INSERT INTO \"{schema}\".customers VALUES (1, 'a')")
    return schema


def sensor_project(write_project, pg_options, schema: str, *, port: int | None = None, window: str | None = None):
    source_options = {**pg_options, **({"port": port, "connect_timeout": 2} if port else {})}
    orders = {"mode": "incremental", "primary_key": "id", "update_key": "updated_at"}
    if window:
        orders["window"] = window
    return write_project({
        "connections": {
            "erp": {"kind": "postgres", "role": "source", "options": source_options,
                    "change_sensor": {"minimum_interval": "30 seconds"}},
            "copy": {"kind": "postgres", "role": "target", "options": pg_options},
        },
        "source": "erp", "target": "copy",
        "defaults": {"object": f"{schema}_copy.{{stream_table}}"},
        "streams": {f"{schema}.orders": orders, f"{schema}.customers": {"primary_key": "id"}},
    })


def tick(sensor: dg.SensorDefinition, cursor: str | None):
    context = dg.build_sensor_context(cursor=cursor)
    return sensor.evaluate_tick(context), context


def test_only_changed_tables_are_requested_and_the_cursor_round_trips(write_project, pg_options, pg, source):
    project = sensor_project(write_project, pg_options, source)
    (sensor,) = build_change_sensors(project)
    assert sensor.name == "erp_changes" and sensor.minimum_interval_seconds == 30
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    first, _ = tick(sensor, None)
    (run,) = first.run_requests
    assert {k.path[-1] for k in run.asset_selection} == {"orders", "customers"}
    cursor = json.loads(first.cursor)
    assert cursor[f"{source}_copy/orders"] == "max=2024-01-02T00:00:00+00:00"
    assert cursor[f"{source}_copy/customers"] == "rows=1"

    again, _ = tick(sensor, first.cursor)
    assert again.run_requests == [] and "no change in 2 table(s)" in again.skip_message

    pg.execute(f"INSERT INTO \"{source}\".orders VALUES (3, '2024-01-03T00:00:00Z')")
    changed, _ = tick(sensor, first.cursor)
    (run,) = changed.run_requests
    assert [k.path[-1] for k in run.asset_selection] == ["orders"]
    assert json.loads(changed.cursor)[f"{source}_copy/orders"] == "max=2024-01-03T00:00:00+00:00"
    assert json.loads(changed.cursor)[f"{source}_copy/customers"] == "rows=1"
    repeated, _ = tick(sensor, first.cursor)
    assert repeated.run_requests[0].run_key == run.run_key


def test_a_source_that_is_down_fails_the_tick_and_keeps_the_cursor(write_project, pg_options, source):
    project = sensor_project(write_project, pg_options, source, port=1)
    sensor = build_change_sensor(project, "erp")
    kept = json.dumps({f"{source}_copy/orders": "max=2024-01-02T00:00:00+00:00"})
    context = dg.build_sensor_context(cursor=kept)
    with pytest.raises(
        SourceUnreachable, match="change sensor erp_changes: source connection 'erp' could not be polled"
    ):
        sensor(context)
    assert context.cursor == kept


def test_a_changed_table_outside_its_window_is_held_back_and_requested_later(write_project, pg_options, source):
    project = sensor_project(write_project, pg_options, source, window="19:00-07:00")
    at_noon = build_change_sensor(project, "erp", clock=lambda: NOON)
    first, _ = tick(at_noon, None)
    (run,) = first.run_requests
    assert [k.path[-1] for k in run.asset_selection] == ["customers"]
    assert f"{source}_copy/orders" not in json.loads(first.cursor)

    at_night = build_change_sensor(project, "erp", clock=lambda: NOON.replace(hour=21))
    later, _ = tick(at_night, first.cursor)
    (run,) = later.run_requests
    assert [k.path[-1] for k in run.asset_selection] == ["orders"]


def _active_run(instance: dg.DagsterInstance, project, status: dg.DagsterRunStatus, *keys: dg.AssetKey) -> str:
    """A run of ``keys`` that has not ended, as a manual materialize or a backfill leaves it."""
    job = build_definitions(project).resolve_implicit_global_asset_job_def()
    return instance.create_run_for_job(job, asset_selection=set(keys), status=status).run_id


def test_a_changed_table_with_a_run_in_progress_is_held_back_and_requested_after_it(write_project, pg_options, source):
    project = sensor_project(write_project, pg_options, source)
    sensor = build_change_sensor(project, "erp")
    orders, customers = (dg.AssetKey([f"{source}_copy", name]) for name in ("orders", "customers"))
    with dg.DagsterInstance.ephemeral() as instance:
        run_id = _active_run(instance, project, dg.DagsterRunStatus.STARTED, orders)
        with dg.build_sensor_context(cursor=None, instance=instance) as context:
            first = sensor.evaluate_tick(context)
        (run,) = first.run_requests
        assert run.asset_selection == [customers]
        assert f"{source}_copy/orders" not in json.loads(first.cursor)
        _active_run(instance, project, dg.DagsterRunStatus.NOT_STARTED, customers)
        with dg.build_sensor_context(cursor=first.cursor, instance=instance) as context:
            busy = sensor.evaluate_tick(context)
        assert busy.run_requests == []
        assert f"{source}.orders already has run {run_id} queued or in progress" in busy.skip_message
        for record in instance.get_run_records():
            instance.report_run_canceled(record.dagster_run)
        with dg.build_sensor_context(cursor=first.cursor, instance=instance) as context:
            after = sensor.evaluate_tick(context)
        (run,) = after.run_requests
        assert run.asset_selection == [orders]
