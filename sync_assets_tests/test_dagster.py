"""Dagster wiring: definitions, materializations and their metadata, partitions and ranges,
checks, dry runs, the IO manager, the ``dagster`` CLI in a subprocess, and instance storage on
PostgreSQL through dagster-postgres."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest
import yaml

from sync_assets.config.loader import load_project
from sync_assets.demo.chinook import DEMO_CONFIG_DIR, prepare_demo_source
from sync_assets.demo.definitions import build_demo_definitions
from sync_assets.orchestration.project_definitions import build_definitions
from sync_assets_tests.engines import check_evaluation, materializations_of, write_demo_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def chinook_source(tmp_path_factory) -> Path:
    return prepare_demo_source(tmp_path_factory.mktemp("chinook") / "chinook.duckdb")


@pytest.fixture
def demo_config(tmp_path, chinook_source) -> Path:
    """The shipped demo config, pointed at a private copy of the source and a fresh warehouse."""
    shutil.copy(chinook_source, tmp_path / "chinook.duckdb")
    return write_demo_config(tmp_path / "config", tmp_path / "chinook.duckdb", tmp_path / "warehouse.duckdb")


def _materialize(defs: dg.Definitions, assets: list, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, resources=defs.resources, **kwargs)


def _step(defs: dg.Definitions, key: str) -> str:
    """The op (step) that syncs a table: run config goes to it."""
    return defs.get_assets_def(dg.AssetKey.from_user_string(key)).node_def.name


def _warehouse(config_dir: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(config_dir.parent / "warehouse.duckdb"), read_only=True)


def test_shipped_definitions_load_without_touching_a_database(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    project = load_project(DEMO_CONFIG_DIR)
    defs = build_demo_definitions(project)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"chinook/Invoice", "chinook/InvoiceLine", "chinook/Artist", "analytics/revenue_by_country"} <= keys
    product_keys = {k.to_user_string() for k in build_definitions(project).resolve_asset_graph().get_all_asset_keys()}
    assert product_keys == keys - {"analytics/revenue_by_country"}  # the demo's own asset lives only in its location
    invoice = graph.get(dg.AssetKey(["chinook", "Invoice"]))
    assert invoice.partitions_def is not None and invoice.backfill_policy == dg.BackfillPolicy.single_run()
    spec = defs.get_assets_def(dg.AssetKey(["chinook", "Artist"])).specs_by_key[dg.AssetKey(["chinook", "Artist"])]
    assert spec.group_name == "chinook" and spec.kinds == {"duckdb"} and spec.code_version
    assert spec.metadata["dagster/table_name"] == "warehouse.chinook.Artist"
    warehouse = (DEMO_CONFIG_DIR / "../../../data/warehouse.duckdb").resolve()
    assert spec.metadata["dagster/uri"] == f"duckdb://{warehouse}#chinook.Artist"
    assert not (tmp_path / "data").exists()


def test_the_demo_shows_foreign_key_lineage_and_runs_its_automations_by_itself():
    """What a new user sees under `dagster dev`: Chinook's foreign keys as lineage edges (from the
    shipped lineage.yaml, which holds exactly what the shipped file declares), and a schedule, the
    source activity, the change sensor, the freshness sensor and the alert sensors all RUNNING."""
    from sync_assets.config.lineage import LINEAGE_FILE
    from sync_assets.config.models import LineageSpec
    from sync_assets.demo.chinook import chinook_foreign_keys

    shipped = LineageSpec.model_validate(yaml.safe_load((DEMO_CONFIG_DIR / LINEAGE_FILE).read_text())["lineage"])
    assert shipped.foreign_keys == chinook_foreign_keys()
    defs = build_demo_definitions(load_project(DEMO_CONFIG_DIR))
    graph = defs.resolve_asset_graph()

    def parents(name: str) -> set[str]:  # the synced ones; each also has its source table
        keys = graph.get(dg.AssetKey(["chinook", name])).parent_keys
        assert dg.AssetKey(["source", "chinook", "main", name]) in keys
        return {k.path[-1] for k in keys if k.path[0] == "chinook"}

    assert parents("Album") == {"Artist"} and parents("Track") == {"Album", "Genre", "MediaType"}
    assert parents("InvoiceLine") == {"Invoice", "Track"} and parents("Invoice") == {"Customer"}
    assert parents("Employee") == set()  # ReportsTo points at Employee itself: no self-edge
    running = dg.DefaultScheduleStatus.RUNNING, dg.DefaultSensorStatus.RUNNING
    automations = {a.name: a.default_status for a in [*defs.schedules, *defs.sensors]}
    assert automations == {name: status for name, status in [
        ("catalog_every_two_minutes", running[0]), ("chinook_source_activity_every_minute", running[0]),
        ("chinook_changes", running[1]), ("sync_freshness_checks", running[1]),
        ("sync_alerts_on_run_failure", running[1]), ("sync_alerts_on_failed_checks", running[1])]}
    steps = {d.node_def.name: sorted(k.path[-1] for k in d.keys) for d in defs.assets
             if isinstance(d, dg.AssetsDefinition) and d.node_def.name.startswith("sync_")}
    assert steps["sync_chinook_to_warehouse_2"] == ["InvoiceLine"]  # waits for the Invoice step, which waits for
    assert "Customer" in steps["sync_chinook_to_warehouse"]         # Customer: the one step splits in two


def test_the_demo_source_activity_is_what_the_change_sensor_syncs(demo_config):
    """A sale recorded by the demo's source activity job changes the signals of Invoice and
    InvoiceLine (and only those are watched): the change sensor asks for exactly them."""
    defs = build_demo_definitions(load_project(demo_config))
    sensor = next(s for s in defs.sensors if s.name == "chinook_changes")
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert first.cursor is not None
        result = defs.get_job_def("chinook_source_activity").execute_in_process(instance=instance)
        assert result.success
        second = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor,
                                                              definitions=defs))
    requested = {key.to_user_string() for request in second.run_requests for key in request.asset_selection}
    assert requested == {"chinook/InvoiceLine", "chinook/Invoice"}
    invoice_request = next(r for r in second.run_requests if r.partition_key)
    assert invoice_request.partition_key == date.today().replace(day=1).isoformat()  # the current month (end_offset)


def test_materialize_records_metadata_and_passes_the_check(demo_config):
    defs = build_definitions(load_project(demo_config))
    result = _materialize(defs,
        [defs.get_assets_def(dg.AssetKey(["chinook", "InvoiceLine"]))],
        instance=dg.DagsterInstance.ephemeral(),
        selection=[dg.AssetKey(["chinook", "InvoiceLine"])],
    )
    assert result.success
    metadata = materializations_of(result, "chinook/InvoiceLine")[0].metadata
    assert metadata["rows_read"].value == metadata["rows_written"].value == 2240
    assert metadata["dagster/row_count"].value == 2240
    assert metadata["watermark_after"].value == "2240"
    columns = {c.name: c.type for c in metadata["dagster/column_schema"].schema.columns}
    assert columns == {"InvoiceLineId": "INTEGER", "InvoiceId": "INTEGER", "TrackId": "INTEGER",
                       "UnitPrice": "DECIMAL(10,2)", "Quantity": "INTEGER"}  # the target's own types
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}  # in the same step
    assert set(evaluations) == {"row_count_parity", "schema_drift", "primary_key_unique"}
    assert all(e.passed for e in evaluations.values())
    assert evaluations["row_count_parity"].metadata["source_rows"].value == 2240
    assert evaluations["primary_key_unique"].metadata["duplicate_keys"].value == 0
    check_key = dg.AssetCheckKey(dg.AssetKey(["chinook", "InvoiceLine"]), "row_count_parity")
    checked = _materialize(defs, [defs.get_assets_def(check_key.asset_key)], instance=dg.DagsterInstance.ephemeral(),
                           selection=dg.AssetSelection.checks(check_key))  # the check on its own: both sides counted
    (evaluation,) = checked.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["source_rows"].value == 2240
    assert materializations_of(checked, "chinook/InvoiceLine") == []


def test_dry_run_materializes_nothing(demo_config):
    defs = build_definitions(load_project(demo_config))
    result = _materialize(defs,
        [defs.get_assets_def(dg.AssetKey(["chinook", "Artist"]))],
        instance=dg.DagsterInstance.ephemeral(), selection=[dg.AssetKey(["chinook", "Artist"])],
        run_config={"ops": {_step(defs, "chinook/Artist"): {"config": {"dry_run": True}}}},
    )
    assert result.success
    assert materializations_of(result, "chinook/Artist") == []
    assert not (demo_config.parent / "warehouse.duckdb").exists()


def test_partition_range_runs_as_one_run_and_partitions_rerun_idempotently(demo_config):
    defs = build_definitions(load_project(demo_config))
    invoice = defs.get_assets_def(dg.AssetKey(["chinook", "Invoice"]))
    instance = dg.DagsterInstance.ephemeral()
    ranged = _materialize(defs, [invoice], instance=instance, tags={
        "dagster/asset_partition_range_start": "2021-01-01", "dagster/asset_partition_range_end": "2025-12-01"})
    assert ranged.success
    per_partition = {m.partition: m.metadata for m in materializations_of(ranged, "chinook/Invoice")}
    assert len(per_partition) == 60  # every month its own figures, counted in one scan of the range
    rows = {key: metadata["dagster/partition_row_count"].value for key, metadata in per_partition.items()}
    assert sum(rows.values()) == 412 and rows["2021-01-01"] == 6 and rows["2021-02-01"] == 7
    assert per_partition["2021-02-01"]["range_rows_written"].value == 412
    with _warehouse(demo_config) as con:
        assert rows == {f"{month}-01": count for month, count in con.execute(
            """SELECT strftime("InvoiceDate", '%Y-%m'), COUNT(*) FROM chinook."Invoice" GROUP BY 1""").fetchall()
            } | {key: 0 for key, count in rows.items() if count == 0}
    parity = check_evaluation(ranged, "row_count_parity")
    assert parity.passed and parity.metadata["partitions_checked"].value == 60
    assert parity.metadata["source_rows"].value == parity.metadata["target_rows"].value == 412
    again = _materialize(defs, [invoice], instance=instance, partition_key="2021-03-01")
    metadata = materializations_of(again, "chinook/Invoice")[0].metadata
    assert metadata["rows_replaced"].value == metadata["rows_written"].value == 7
    with _warehouse(demo_config) as con:
        assert con.execute('SELECT COUNT(*) FROM chinook."Invoice"').fetchall()[0][0] == 412
    with duckdb.connect(str(demo_config.parent / "warehouse.duckdb")) as con:  # one row lost behind the sync's back
        con.execute("""DELETE FROM chinook."Invoice" WHERE "InvoiceId" = (SELECT min("InvoiceId") FROM chinook."Invoice"
                       WHERE "InvoiceDate" >= '2021-03-01' AND "InvoiceDate" < '2021-04-01')""")
    check_key = dg.AssetCheckKey(dg.AssetKey(["chinook", "Invoice"]), "row_count_parity")
    alone = check_evaluation(_materialize(defs, [invoice], instance=instance,
                                          selection=dg.AssetSelection.checks(check_key)), "row_count_parity")
    assert not alone.passed  # run on its own: every partition of the table, each named
    assert alone.metadata["partitions_checked"].value == len(invoice.partitions_def.get_partition_keys())
    assert alone.metadata["partitions_differing"].value == 1 and "1 differ (2021-03-01)" in alone.description


def test_force_full_refresh_and_window_rerun_from_run_config(demo_config):
    defs = build_definitions(load_project(demo_config))
    key = dg.AssetKey(["chinook", "InvoiceLine"])
    asset, step = defs.get_assets_def(key), _step(defs, "chinook/InvoiceLine")
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(defs, [asset], instance=instance, selection=[key]).success
    window = _materialize(defs, [asset], instance=instance, selection=[key], run_config={
        "ops": {step: {"config": {"window_start": "100", "window_end": "200"}}}})
    metadata = materializations_of(window, "chinook/InvoiceLine")[0].metadata
    assert metadata["rows_read"].value == 100 and metadata["window"].value.startswith("(100, ")
    full = _materialize(defs, [asset], instance=instance, selection=[key], run_config={
        "ops": {step: {"config": {"full_refresh": True}}}})
    assert materializations_of(full, "chinook/InvoiceLine")[0].metadata["strategy"].value == "full_refresh"


def test_io_manager_feeds_a_downstream_polars_asset(demo_config):
    defs = build_demo_definitions(load_project(demo_config))
    keys = [dg.AssetKey(["chinook", "Customer"]), dg.AssetKey(["chinook", "Invoice"]),
            dg.AssetKey(["analytics", "revenue_by_country"])]
    instance = dg.DagsterInstance.ephemeral()
    assets = [defs.get_assets_def(k) for k in keys]
    assert _materialize(defs, assets[:1], instance=instance).success
    assert _materialize(defs, assets[1:2], instance=instance, tags={
        "dagster/asset_partition_range_start": "2021-01-01", "dagster/asset_partition_range_end": "2025-12-01"}).success
    downstream = _materialize(defs, assets, instance=instance, selection=[keys[2]])
    assert downstream.success
    with _warehouse(demo_config) as con:
        top = con.execute(
            'SELECT "Country", revenue FROM analytics.revenue_by_country ORDER BY revenue DESC'
        ).fetchall()
    assert top[0][0] == "USA" and float(top[0][1]) == pytest.approx(523.06)


def _cli(args: list[str], config_dir: Path, home: Path, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYNC_ASSETS_CONFIG": str(config_dir), "DAGSTER_HOME": str(home), **env_vars}
    return subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "sync_assets.definitions",
                           *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_materializes_and_history_persists(demo_config, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    first = _cli(["--select", "chinook/Artist,chinook/InvoiceLine"], demo_config, home)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "275 rows read, 275 written" in first.stderr  # sync_assets' own log lines reach the run log
    second = _cli(["--select", "chinook/Invoice", "--partition", "2021-02-01"], demo_config, home)
    assert second.returncode == 0, second.stderr[-3000:]
    bad = _cli(["--select", "chinook/NoSuchTable"], demo_config, home)
    assert bad.returncode != 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        artist = instance.get_latest_materialization_event(dg.AssetKey(["chinook", "Artist"]))
        assert artist is not None
        assert artist.asset_materialization.metadata["rows_written"].value == 275
    with _warehouse(demo_config) as con:
        assert con.execute('SELECT COUNT(*) FROM chinook."Invoice"').fetchall()[0][0] == 7


def test_instance_storage_on_postgres(demo_config, tmp_path, pg_conninfo):
    """The documented production switch: run history in PostgreSQL through dagster-postgres."""
    params = psycopg.conninfo.conninfo_to_dict(pg_conninfo)
    database = f"dagster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        home = tmp_path / "pg_home"
        home.mkdir()
        instance_yaml = yaml.safe_load((ROOT / "dagster.yaml").read_text()) or {}
        instance_yaml["storage"] = {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
        url = (f"postgresql+psycopg2://{params.get('user', 'postgres')}@{params['host']}:"
               f"{params.get('port', 5432)}/{database}")
        result = _cli(["--select", "chinook/Genre"], demo_config, home, DAGSTER_PG_URL=url)
        assert result.returncode == 0, result.stderr[-3000:]
        with psycopg.connect(pg_conninfo.replace("dbname=test", f"dbname={database}")) as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
            assert conn.execute("SELECT COUNT(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
                                ).fetchone()[0] == 1
    finally:
        with psycopg.connect(pg_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def test_multiprocess_executor_runs_duckdb_writers_one_at_a_time(demo_config, tmp_path):
    home = tmp_path / "mp_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    result = _cli(["--select", "chinook/Genre,chinook/MediaType"], demo_config, home,
                  SYNC_ASSETS_EXECUTOR="multiprocess")
    assert result.returncode == 0, result.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        messages = [entry.user_message for entry in instance.all_logs(run.run_id)]
    assert any("multiprocess executor" in m for m in messages)
    with _warehouse(demo_config) as con:
        assert con.execute('SELECT COUNT(*) FROM chinook."MediaType"').fetchall()[0][0] == 5
