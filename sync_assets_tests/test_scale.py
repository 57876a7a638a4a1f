"""Many tables per step, on PostgreSQL (127.0.0.1:5432) and DuckDB: concurrency within a step, one
table's failure, parents first, row counts kept without counting the target, secrets read at run
time, the executor from configuration, and Dagster's event log keeping its connections.

The speed of all this is measured by ``bench/many_tables.py``, never asserted here.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from sync_assets.config.project import Project
from sync_assets.errors import ConfigError
from sync_assets.orchestration import sync_steps
from sync_assets.orchestration.executors import build_executor
from sync_assets.orchestration.project_definitions import build_definitions
from sync_assets.sync.parallel import Slots, run_concurrently
from sync_assets_tests.engines import check_evaluation, materializations_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def source(pg, schema_name):
    return schema_name("many")


def make_tables(pg, schema: str, count: int, rows: int = 20) -> list[str]:
    names = [f"t{i:02d}" for i in range(count)]
    for name in names:
        pg.execute(f'CREATE TABLE "{schema}".{name} (id int PRIMARY KEY, updated_at timestamp NOT NULL, v text)')
        pg.execute(f"INSERT INTO \"{schema}\".{name} SELECT g, timestamp '2026-01-01' + g * interval '1 minute', "
                   f"'v' || g FROM generate_series(1, {rows}) g")
    return names


def project_of(write_project, pg_options, source: str, streams: dict, **extra) -> Project:
    return write_project({
        "connections": {"erp": {"kind": "postgres", "role": "source", "options": pg_options, "max_parallel": 3},
                        "copy": {"kind": "postgres", "role": "target", "options": pg_options}},
        "source": "erp", "target": "copy",
        "defaults": {"mode": "incremental", "primary_key": "id", "update_key": "updated_at",
                     "object": f"{source}_copy.{{stream_table}}"},
        "streams": streams, **extra,
    })


def run(project: Project, instance=None, **kwargs) -> dg.ExecuteInProcessResult:
    defs = build_definitions(project)
    steps = list({id(d): d for d in (defs.get_assets_def(dg.AssetKey(list(t.asset_key))) for t in project.tables)
                  }.values())
    return dg.materialize(steps, resources=defs.resources, instance=instance or dg.DagsterInstance.ephemeral(),
                          **kwargs)


def test_one_step_syncs_its_tables_concurrently_and_checks_them_from_its_own_figures(
        write_project, pg_options, pg, source):
    names = make_tables(pg, source, 8)
    project = project_of(write_project, pg_options, source, {f"{source}.{n}": None for n in names})
    defs = build_definitions(project)
    assert len({id(defs.get_assets_def(dg.AssetKey(list(t.asset_key)))) for t in project.tables}) == 1  # one step
    instance = dg.DagsterInstance.ephemeral()
    first = run(project, instance)
    assert first.success
    assert [e.step_key for e in first.all_events if e.event_type_value == "STEP_START"] == ["sync_erp_to_copy"]
    for name in names:
        (materialization,) = materializations_of(first, f"{source}_copy/{name}")
        assert materialization.metadata["dagster/row_count"].value == 20
    evaluations = first.get_asset_check_evaluations()
    assert len(evaluations) == 8 * 3 and all(e.passed for e in evaluations)

    pg.execute(f'INSERT INTO "{source}".t03 VALUES (21, now(), \'new\')')
    pg.execute(f'DELETE FROM "{source}_copy".t05 WHERE id = 1')  # behind the sync's back
    again = run(project, instance)
    t03 = materializations_of(again, f"{source}_copy/t03")[0].metadata
    assert t03["dagster/row_count"].value == 21 and t03["rows_inserted"].value == 1
    # the target's count comes from the sync's bookkeeping: the row deleted by hand is seen by the
    # check executed on its own, which counts both sides
    assert materializations_of(again, f"{source}_copy/t05")[0].metadata["dagster/row_count"].value == 20
    key = dg.AssetCheckKey(dg.AssetKey([f"{source}_copy", "t05"]), "row_count_parity")
    alone = dg.materialize([defs.get_assets_def(key.asset_key)], selection=dg.AssetSelection.checks(key),
                           resources=defs.resources, instance=instance)
    evaluation = check_evaluation(alone, "row_count_parity")
    assert not evaluation.passed and evaluation.metadata["target_rows"].value == 19
    counts = dict(pg.execute(f'SELECT table_name, row_count FROM "{source}_copy"._sync_row_counts').fetchall())
    assert counts["t03"] == 21 and counts["t05"] == 20
    # the watermark (MAX(updated_at)) is read through an index, not a scan of the target
    indexed = pg.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 't03'",
                         (f"{source}_copy",)).fetchall()
    assert any("(updated_at)" in row[0] for row in indexed), indexed


def test_a_failing_table_stops_only_itself_and_its_children(write_project, pg_options, pg, source):
    names = make_tables(pg, source, 4)
    pg.execute(f'CREATE TABLE "{source}".child (id int PRIMARY KEY, updated_at timestamp NOT NULL, parent int)')
    pg.execute(f"INSERT INTO \"{source}\".child VALUES (1, '2026-01-01', 1)")
    pg.execute(f'CREATE TABLE "{source}".dupes (id int, updated_at timestamp NOT NULL)')
    pg.execute(f"INSERT INTO \"{source}\".dupes VALUES (1, '2026-01-01'), (1, '2026-01-02')")
    streams = {f"{source}.{n}": None for n in names}
    streams[f"{source}.dupes"] = None
    streams[f"{source}.child"] = {"depends_on": [f"{source}.dupes"]}
    project = project_of(write_project, pg_options, source, streams)
    instance = dg.DagsterInstance.ephemeral()
    result = run(project, instance, raise_on_error=False)
    assert not result.success
    done = {e.materialization.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert done == set(names)  # every other table loaded and reported
    failure = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "2 of 6 tables failed" in failure
    assert f"{source}.dupes: " in failure and "id=1" in failure  # the row key of the duplicate
    assert f"{source}.child: not started: parent {source}.dupes" in failure
    assert pg.execute(f"SELECT to_regclass('\"{source}_copy\".child')").fetchone() == (None,)


def test_parents_go_first_and_connection_limits_hold():
    """``run_concurrently`` on its own: a DuckDB target takes one writer, a source ``max_parallel``."""
    from sync_assets.config.models import ConnectionSpec
    from sync_assets.config.project import TableSpec

    def table(name: str, target: str, deps=()) -> TableSpec:
        return TableSpec(name=name, file=Path("x.yaml"), source="src", target=target, source_table=None, sql="x",
                         target_table=None, mode="full_refresh", primary_key=(), update_key=None,  # type: ignore[arg-type]
                         lookback=None, partition=None, batch_size=1, columns=None, exclude_columns=(), where=None,
                         limit=None, group="g", description=None, asset_key=("k", name), schema_changes="evolve",
                         deps=tuple(("k", d) for d in deps))

    project = Project(connections={"src": ConnectionSpec(kind="postgres", max_parallel=3),
                                   "pg": ConnectionSpec(kind="postgres"), "duck": ConnectionSpec(kind="duckdb")},
                      tables=(), config_dir=Path("."))
    tables = [table(f"d{i}", "duck") for i in range(4)] + [table(f"p{i}", "pg") for i in range(5)]
    tables.append(table("child", "pg", deps=["p0", "d3"]))
    running: dict[str, int] = {"src": 0, "duck": 0}
    peaks: dict[str, int] = {"src": 0, "duck": 0}
    finished: list[str] = []
    guard = threading.Lock()

    def work(t: TableSpec) -> str:
        with guard:
            if t.name == "child":
                assert {"p0", "d3"} <= set(finished)
            for key in ("src", t.target):
                if key in running:
                    running[key] += 1
                    peaks[key] = max(peaks[key], running[key])
        time.sleep(0.02)
        with guard:
            for key in ("src", t.target):
                if key in running:
                    running[key] -= 1
            finished.append(t.name)
        return t.name

    outcomes = list(run_concurrently(tables, work, Slots.of(project)))
    assert all(o.ok for o in outcomes) and len(outcomes) == 10
    assert peaks == {"src": 3, "duck": 1}


def test_steps_hold_a_bounded_number_of_tables_parents_first(write_project, pg_options, source, monkeypatch):
    monkeypatch.setattr(sync_steps, "TABLES_PER_STEP", 3)
    streams = {f"{source}.t{i}": None for i in range(7)}
    streams[f"{source}.t0"] = {"depends_on": [f"{source}.t6"]}  # configured first, loaded after its parent
    project = project_of(write_project, pg_options, source, streams)
    groups = sync_steps.step_groups(project)
    assert [len(g) for g in groups] == [3, 3, 1]
    order = [t.name.split(".")[1] for g in groups for t in g]
    assert order.index("t6") < order.index("t0")
    names = [d.node_def.name for d in sync_steps.build_sync_steps(project)]
    assert names == ["sync_erp_to_copy", "sync_erp_to_copy_2", "sync_erp_to_copy_3"]


def test_a_partitioned_table_between_two_others_splits_their_step_once(write_project, pg_options, source):
    """customers -> invoices (partitioned: a step of its own) -> lines: the pair's step would wait
    for the invoices' step and be waited for by it, so it becomes two steps, not a step per table."""
    streams = {f"{source}.{name}": None for name in ("customers", "artists", "lines")}
    streams[f"{source}.invoices"] = {"mode": "date_partitioned", "depends_on": [f"{source}.customers"],
                                     "partition": {"column": "day", "granularity": "daily", "start": "2026-01-01"}}
    streams[f"{source}.lines"] = {"depends_on": [f"{source}.invoices"]}
    project = project_of(write_project, pg_options, source, streams)
    groups = [[t.name.split(".")[1] for t in g] for g in sync_steps.step_groups(project)]
    assert groups == [["customers", "artists"], ["lines"], ["invoices"]]
    names = [d.node_def.name for d in sync_steps.build_sync_steps(project)]
    assert names == ["sync_erp_to_copy", "sync_erp_to_copy_2", f"sync_{source}_copy_invoices"]


def test_a_secret_is_read_when_a_run_that_needs_it_starts(write_project, pg_options, pg, source, tmp_path,
                                                          monkeypatch):
    """Connection secrets are EnvVars of the connection's resource: definitions load without them,
    a run of a table on another connection runs, and a run that needs the connection is refused
    at its start, naming the connection's resource and the variable."""
    (name,) = make_tables(pg, source, 1)
    monkeypatch.delenv("SYNC_SCALE_PASSWORD", raising=False)
    project = write_project({
        "connections": {"erp": {"kind": "postgres", "role": "source", "options": pg_options},
                        "copy": {"kind": "postgres", "role": "target",
                                 "options": {**pg_options, "password": {"env": "SYNC_SCALE_PASSWORD"}}},
                        "lake": {"kind": "duckdb", "role": "target", "options": {"path": str(tmp_path / "l.duckdb")}}},
        "replications": [{"source": "erp", "target": target, "defaults": {"object": f"{target}_{{stream_table}}"},
                          "streams": {f"{source}.{name}": None}} for target in ("copy", "lake")],
    })
    assert project.connections["copy"].options["password"] == "${SYNC_SCALE_PASSWORD}"
    defs = build_definitions(project)
    assert defs.resources["copy_connection"].secrets == {"password": dg.EnvVar("SYNC_SCALE_PASSWORD")}
    assert "password" not in defs.resources["copy_connection"].options
    copy_key, lake_key = (dg.AssetKey(list(t.asset_key)) for t in sorted(project.tables, key=lambda t: t.target))
    steps = [defs.get_assets_def(copy_key), defs.get_assets_def(lake_key)]

    def materialize(key: dg.AssetKey) -> dg.ExecuteInProcessResult:
        return dg.materialize(steps, resources=defs.resources, selection=[key], instance=dg.DagsterInstance.ephemeral())

    assert materialize(lake_key).success
    with pytest.raises(dg.DagsterInvalidConfigError, match=r"(?s)resources:copy_connection:config:secrets:'password'.*"
                                                           r"environment variable \"SYNC_SCALE_PASSWORD\" which is "
                                                           r"not set"):
        materialize(copy_key)
    monkeypatch.setenv("SYNC_SCALE_PASSWORD", "unused-with-trust-auth")
    assert materialize(copy_key).success


def test_the_executor_comes_from_configuration_and_refuses_duckdb_on_many_machines(
        write_project, pg_options, source, tmp_path, monkeypatch):
    monkeypatch.delenv("SYNC_ASSETS_EXECUTOR", raising=False)
    streams = {f"{source}.t0": None}
    assert build_executor(project_of(write_project, pg_options, source, streams)) is dg.in_process_executor
    multi = project_of(write_project, pg_options, source, streams,
                       execution={"executor": "multiprocess", "max_concurrent": 2})
    assert build_executor(multi).name == "multiprocess"
    monkeypatch.setenv("SYNC_ASSETS_EXECUTOR", "in_process")  # the environment overrides the file
    assert build_executor(multi) is dg.in_process_executor
    monkeypatch.delenv("SYNC_ASSETS_EXECUTOR")

    def duck(execution: dict) -> Project:
        return write_project({
            "connections": {"erp": {"kind": "postgres", "role": "source", "options": pg_options},
                            "lake": {"kind": "duckdb", "options": {"path": str(tmp_path / "lake.duckdb")}}},
            "execution": execution, "source": "erp", "target": "lake", "streams": streams})

    for executor in ("celery", "k8s"):
        with pytest.raises(ConfigError, match=f"executor '{executor}' runs steps on several machines, but connection "
                                              f"'lake' is the DuckDB file"):
            build_executor(duck({"executor": executor}))
    with pytest.raises(ConfigError, match="key 'execution' is already defined"):
        write_project({"execution": {"executor": "multiprocess"}}, "a.yaml")
        write_project({"execution": {"executor": "celery"}}, "b.yaml")
        from sync_assets.config.loader import load_project

        load_project(tmp_path)


def test_the_project_instance_keeps_its_event_log_connections(tmp_path):
    from sync_assets.orchestration.event_log import PooledSqliteEventLogStorage, SyncAssetsInstance

    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance, SyncAssetsInstance)
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        for i in range(20):
            instance.report_runless_asset_event(dg.AssetMaterialization("a", metadata={"i": i}))
        latest = instance.get_latest_materialization_event(dg.AssetKey("a"))
        assert latest.asset_materialization.metadata["i"].value == 19
    with dg.DagsterInstance.from_config(str(tmp_path)) as reopened:  # same files, Dagster's schema
        assert reopened.get_latest_materialization_event(dg.AssetKey("a")) is not None
        assert (tmp_path / "history" / "runs" / "index.db").exists()
