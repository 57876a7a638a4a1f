"""Operations on real databases: multi-run background copies with progress, schema-drift policy
and check, the primary-key uniqueness check, foreign-key lineage (discover, deps, cycles),
freshness checks, and retries of transient errors only."""

from __future__ import annotations

import random

import dagster as dg
import pytest

from sync_assets.cli.discovery import discover_foreign_keys
from sync_assets.config.lineage import LINEAGE_FILE, write_lineage_file
from sync_assets.config.loader import load_project
from sync_assets.config.models import RetrySpec
from sync_assets.errors import ConfigError, ConnectionFailed, DataError, SchemaMismatchError
from sync_assets.orchestration.project_definitions import build_definitions
from sync_assets.sync.retries import backoff_seconds, is_transient


def pg_project(write_project, pg_options, source: str, streams: dict, **connection_extra):
    return write_project({
        "connections": {
            "erp": {"kind": "postgres", "role": "source", "options": pg_options, **connection_extra},
            "copy": {"kind": "postgres", "role": "target", "options": pg_options},
        },
        "source": "erp", "target": "copy",
        "defaults": {"object": f"{source}_copy.{{stream_table}}", "retries": {"max_retries": 0}},
        "streams": {f"{source}.{name}": options for name, options in streams.items()},
    })


def materialize(project, *names: str, **kwargs) -> dg.ExecuteInProcessResult:
    """Sync the named tables through Dagster (their checks too, ``with_checks``: in the same step)."""
    defs = build_definitions(project)
    keys = [dg.AssetKey(list(project.table(n).asset_key)) for n in names]
    selection = dg.AssetSelection.assets(*keys)
    if not kwargs.pop("with_checks", False):
        selection = selection.without_checks()
    steps = list({id(d): d for d in (defs.get_assets_def(k) for k in keys)}.values())
    return dg.materialize(steps, selection=selection, resources=defs.resources,
                          instance=kwargs.pop("instance", None) or dg.DagsterInstance.ephemeral(), **kwargs)


def metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    (materialization,) = [e.event_specific_data.materialization for e in result.all_events
                          if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.fixture
def source(pg, schema_name):
    return schema_name("src")


@pytest.mark.parametrize("keyed, chunks, first_bound", [
    # keyset pages on (seq, id): exactly 10 rows per run although seq values repeat
    (True, [(10, 15), (20, 5), (25, 0)], "(5, 10)"),
    # no primary key to break ties: rows 10 and 11 share seq 5, so one chunk holds both
    (False, [(11, 14), (21, 4), (25, 0)], "5"),
])
def test_large_table_is_copied_in_chunks_with_progress_then_incrementally(write_project, pg_options, pg, source,
                                                                          keyed, chunks, first_bound):
    pg.execute(
        f'CREATE TABLE "{source}".events (id bigint {"PRIMARY KEY" if keyed else "NOT NULL"}, seq bigint NOT NULL)'
    )
    pg.execute(f'INSERT INTO "{source}".events SELECT i, i / 2 FROM generate_series(1, 25) AS i')
    project = pg_project(write_project, pg_options, source, {
        "events": {"mode": "incremental", "update_key": "seq", "chunk": {"rows": 10},
                   **({"primary_key": "id"} if keyed else {})}})
    instance = dg.DagsterInstance.ephemeral()
    progress = []
    for _ in range(3):
        progress.append(metadata_of(materialize(project, f"{source}.events", instance=instance)))
    assert [(m["dagster/row_count"], m["rows_left"]) for m in progress] == chunks
    assert progress[0]["chunk_upper_bound"] == first_bound
    assert progress[0]["strategy"] == "full_refresh" and progress[1]["strategy"] == "incremental"
    assert progress[2]["background_copy"].startswith("caught up") and progress[2]["progress_pct"] == 100.0
    pg.execute(f'INSERT INTO "{source}".events VALUES (26, 13), (27, 13)')
    after = metadata_of(materialize(project, f"{source}.events", instance=instance))
    assert after["dagster/row_count"] == 27 and after["chunk_upper_bound"] == "(none)"
    copied = pg.execute(f'SELECT count(*), count(DISTINCT id) FROM "{source}_copy".events').fetchone()
    assert copied == (27, 27)  # no duplicates, no gaps


def test_keyset_chunks_on_duckdb_with_a_composite_key_and_timestamps(write_project, tmp_path):
    """Keyset pages with a two-column primary key and a timestamp update key shared by many rows."""
    import duckdb

    path = tmp_path / "src.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE main.ledger (account int, line int, posted_at timestamp NOT NULL, amount decimal(12,2), "
            "PRIMARY KEY (account, line))"
        )
        con.execute("INSERT INTO main.ledger SELECT a, l, TIMESTAMP '2024-01-01 00:00:00.123456' + "
                    "INTERVAL 1 HOUR * (l // 4), a * l FROM range(3) t(a), range(1, 8) u(l)")
    project = write_project(
        {
            "connections": {
                "src": {"kind": "duckdb", "role": "source", "options": {"path": str(path)}},
                "wh": {"kind": "duckdb", "options": {"path": str(tmp_path / "wh.duckdb")}},
            },
            "source": "src",
            "target": "wh",
            "streams": {
                "main.ledger": {
                    "mode": "incremental",
                    "primary_key": ["account", "line"],
                    "update_key": "posted_at",
                    "chunk": {"rows": 5},
                }
            },
        }
    )
    instance = dg.DagsterInstance.ephemeral()
    counts = [metadata_of(materialize(project, "main.ledger", instance=instance))["dagster/row_count"]
              for _ in range(5)]
    assert counts == [5, 10, 15, 20, 21]
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert con.execute(
            "SELECT count(*), count(DISTINCT (account, line)), sum(amount) FROM main.ledger"
        ).fetchone() == (21, 21, 84)


def test_range_chunks_follow_the_update_key(write_project, pg_options, pg, source):
    pg.execute(f'CREATE TABLE "{source}".readings (id bigint PRIMARY KEY, at date NOT NULL)')
    pg.execute(f"INSERT INTO \"{source}\".readings SELECT i, DATE '2024-01-01' + i FROM generate_series(0, 9) AS i")
    project = pg_project(write_project, pg_options, source, {
        "readings": {"mode": "incremental", "primary_key": "id", "update_key": "at", "chunk": {"range": "4 days"}}})
    instance = dg.DagsterInstance.ephemeral()
    rows = [metadata_of(materialize(project, f"{source}.readings", instance=instance))["dagster/row_count"]
            for _ in range(3)]
    assert rows == [5, 9, 10]


def drift_project(write_project, pg_options, pg, source, policy: dict):
    pg.execute(f'CREATE TABLE "{source}".items (id bigint PRIMARY KEY, name text, price int)')
    pg.execute(f"INSERT INTO \"{source}\".items VALUES (1, 'a', 10)")
    return pg_project(write_project, pg_options, source, {
        "items": {"mode": "incremental", "primary_key": "id", "update_key": "id", "schema_drift": policy}})


def check_result(result: dg.ExecuteInProcessResult, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_schema_drift_warns_or_fails_per_policy_and_lists_the_differences(write_project, pg_options, pg, source):
    project = drift_project(write_project, pg_options, pg, source, {"added": "warn", "dropped": "warn"})
    table = f"{source}.items"
    assert materialize(project, table).success
    pg.execute(f'ALTER TABLE "{source}".items ADD COLUMN colour text')
    pg.execute(f'ALTER TABLE "{source}".items DROP COLUMN name')
    pg.execute(f"INSERT INTO \"{source}\".items VALUES (2, 20, 'red')")
    result = materialize(project, table, with_checks=True)
    drift = check_result(result, "schema_drift")
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["added"].value == "colour" and drift.metadata["dropped"].value == "name"
    columns = [r[0] for r in pg.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'items'",
        (f"{source}_copy",)).fetchall()]
    assert "colour" not in columns  # added: warn leaves the new column out

    failing = pg_project(write_project, pg_options, source, {
        "items": {"mode": "incremental", "primary_key": "id", "update_key": "id",
                  "schema_drift": {"dropped": "fail"}}}, )
    refused = materialize(failing, table, raise_on_error=False)
    assert not refused.success
    failure = refused.get_step_failure_events()[0].event_specific_data.error
    assert "1 of 1 tables failed" in failure.message and "SchemaMismatchError" in failure.message
    assert "(dropped: name); nothing was written" in failure.message


def test_primary_key_check_finds_duplicates_in_a_duckdb_target(write_project, pg_options, pg, source, tmp_path):
    import duckdb

    pg.execute(f'CREATE TABLE "{source}".items (id bigint PRIMARY KEY, name text)')
    pg.execute(f"INSERT INTO \"{source}\".items VALUES (1, 'a'), (2, 'b')")
    project = write_project({
        "connections": {"erp": {"kind": "postgres", "role": "source", "options": pg_options},
                        "lake": {"kind": "duckdb", "options": {"path": str(tmp_path / "lake.duckdb")}}},
        "source": "erp", "target": "lake",
        "streams": {f"{source}.items": {"mode": "incremental", "primary_key": "id", "update_key": "id"}},
    })
    table = f"{source}.items"
    assert check_result(materialize(project, table, with_checks=True), "primary_key_unique").passed
    with duckdb.connect(str(tmp_path / "lake.duckdb")) as con:
        con.execute(f"INSERT INTO \"{source}\".items VALUES (1, 'again')")
    defs = build_definitions(project)
    asset_key = dg.AssetKey(list(project.table(table).asset_key))
    key = dg.AssetCheckKey(asset_key, "primary_key_unique")
    result = dg.materialize([defs.get_assets_def(asset_key)], selection=dg.AssetSelection.checks(key),
                            resources=defs.resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    check = check_result(result, "primary_key_unique")
    assert not check.passed and check.metadata["duplicate_keys"].value == 1
    assert check.metadata["examples"].value == "id=1 (2 rows)"


def test_foreign_keys_are_discovered_into_lineage_and_become_deps(write_project, pg_options, pg, source, tmp_path):
    pg.execute(f'CREATE TABLE "{source}".customers (id bigint PRIMARY KEY)')
    pg.execute(f'CREATE TABLE "{source}".orders (id bigint PRIMARY KEY, customer_id bigint '
               f'CONSTRAINT orders_customer_fk REFERENCES "{source}".customers (id))')
    pg.execute(
        f'CREATE TABLE "{source}".lines (id bigint PRIMARY KEY, order_id bigint REFERENCES "{source}".orders (id))'
    )
    pg.execute(f"INSERT INTO \"{source}\".customers VALUES (1); INSERT INTO \"{source}\".orders VALUES (1, 1)")
    pg.execute(f"INSERT INTO \"{source}\".lines VALUES (1, 1)")
    streams = {"lines": {"primary_key": "id"}, "orders": {"primary_key": "id"}, "customers": {"primary_key": "id"}}
    project = pg_project(write_project, pg_options, source, streams)
    found = discover_foreign_keys(project)
    assert {(fk.child, fk.parent, tuple(fk.columns)) for fk in found} == {
        (f"{source}.orders", f"{source}.customers", ("customer_id",)),
        (f"{source}.lines", f"{source}.orders", ("order_id",)),
    }
    write_lineage_file(tmp_path, found)
    project = load_project(tmp_path)
    graph = build_definitions(project).resolve_asset_graph()
    orders = dg.AssetKey([f"{source}_copy", "orders"])
    assert graph.get(orders).parent_keys == {dg.AssetKey([f"{source}_copy", "customers"]),
                                             dg.AssetKey(["source", "erp", source, "orders"])}
    result = materialize(project, *(f"{source}.{n}" for n in streams))
    order = [
        e.asset_key.path[-1] for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    ]
    assert order == ["customers", "orders", "lines"]

    pg.execute(f'ALTER TABLE "{source}".customers ADD COLUMN first_order bigint REFERENCES "{source}".orders (id)')
    write_lineage_file(tmp_path, discover_foreign_keys(project))
    with pytest.raises(
        ConfigError,
        match=rf"dependency cycle .*: {source}.orders -> {source}.customers -> {source}.orders"
        rf"|dependency cycle .*: {source}.customers -> {source}.orders -> {source}.customers",
    ):
        load_project(tmp_path)
    streams["customers"]["ignore_dependencies"] = [f"{source}.orders"]
    (tmp_path / "sync.yaml").unlink()
    pg_project(write_project, pg_options, source, streams)
    assert (tmp_path / LINEAGE_FILE).exists() and load_project(tmp_path).table(f"{source}.customers").deps == ()


def test_freshness_checks_and_their_sensor_are_defined_per_table(write_project, pg_options, source):
    project = pg_project(write_project, pg_options, source, {"items": {"primary_key": "id", "freshness": "6 hours"}})
    defs = build_definitions(project)
    key = dg.AssetCheckKey(dg.AssetKey([f"{source}_copy", "items"]), "freshness_check")
    assert defs.get_asset_checks_def(key) is not None  # Dagster's own freshness check, evaluated by its sensor
    sensor = next(s for s in defs.sensors if s.name == "sync_freshness_checks")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_only_transient_errors_are_retried_with_growing_jittered_waits():
    class Deadlock(Exception):
        sqlstate = "40P01"

    assert is_transient(ConnectionFailed("connection 'erp': cannot connect"))
    assert is_transient(Deadlock("deadlock detected"))
    assert not is_transient(RuntimeError("load failed"))
    wrapped = DataError("table t: primary key (id) is not unique")
    wrapped.__cause__ = Deadlock("deadlock detected")
    assert not is_transient(wrapped)
    assert not is_transient(SchemaMismatchError("column x"))
    spec = RetrySpec(delay="10 seconds", max_delay="1 minute")
    rng = random.Random(7)
    waits = [backoff_seconds(spec, attempt, rng) for attempt in range(5)]
    assert all(5 <= w <= min(60, 10 * 2 ** n) for n, w in enumerate(waits))
    assert max(waits[3:]) > max(waits[:1])


def test_a_source_that_is_down_is_retried_then_fails_while_data_errors_fail_at_once(
    write_project, pg_options, pg, source
):
    down = write_project(
        {
            "connections": {
                "erp": {"kind": "postgres", "role": "source", "options": {**pg_options, "port": 1}},
                "copy": {"kind": "postgres", "role": "target", "options": pg_options},
            },
            "source": "erp",
            "target": "copy",
            "streams": {
                f"{source}.items": {"primary_key": "id", "retries": {"max_retries": 2, "delay": 0, "max_delay": 0}}
            },
        }
    )
    instance = dg.DagsterInstance.ephemeral()

    def retries(result: dg.ExecuteInProcessResult) -> list[str]:
        """The table's own retries, inside its step (the other tables of the step go on meanwhile)."""
        return [e.user_message for e in instance.all_logs(result.run_id) if "transient error, retry" in e.user_message]

    result = materialize(down, f"{source}.items", raise_on_error=False, instance=instance)
    assert not result.success and len(retries(result)) == 2 and "retry 2 of 2" in retries(result)[1]

    pg.execute(f'CREATE TABLE "{source}".dupes (id bigint, name text)')
    pg.execute(f"INSERT INTO \"{source}\".dupes VALUES (1, 'a'), (1, 'b')")
    project = pg_project(write_project, pg_options, source, {
        "dupes": {"primary_key": "id", "retries": {"max_retries": 3, "delay": 0, "max_delay": 0}}})
    result = materialize(project, f"{source}.dupes", raise_on_error=False, instance=instance)
    assert not result.success
    assert retries(result) == []
