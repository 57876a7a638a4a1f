"""Delete detection (``deletes``) on real engines: rows deleted at the source leave a merged
target (hard) or get ``_sync_deleted_at`` (soft) in the merge's own transaction, on the cadence
the table asks for; a failure in the middle leaves the target as it was."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

from sync_assets.connectors import deletes
from sync_assets.errors import ConfigError
from sync_assets.sync.planning import RunOptions
from sync_assets.sync.schema_drift import compare
from sync_assets_tests.engines import BASE_TIME, make_row, materializations_of
from sync_assets_tests.test_modes import only_pairs, pair, sync  # noqa: F401  (fixtures: every source/target pair)

INCREMENTAL = {"mode": "incremental", "primary_key": "Id", "update_key": "updatedAt"}


def _rows(ids) -> list[tuple]:
    return [make_row(i) for i in ids]


def _ids(side) -> list[int]:
    return [row[0] for row in side.rows()]


def _soft_deleted(side) -> dict[int, bool]:
    return {i: marked for i, marked in side.query(
        f'SELECT "Id", "_sync_deleted_at" IS NOT NULL FROM {side.qualified()} ORDER BY "Id"')}


def test_hard_deletes_mirror_the_source_in_the_merge(pair, sync):
    source, target = pair
    source.create_test_table(_rows(range(1, 21)))
    options = {**INCREMENTAL, "deletes": {"detect": "hard"}}
    first = sync(options)
    assert first.plan.strategy == "full_refresh" and first.target_rows == 20
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" IN (3, 4, 17)')
    source.execute(f'UPDATE {source.qualified()} SET "updatedAt" = %s, "select" = 99 WHERE "Id" = 5',
                   [BASE_TIME + timedelta(days=1)])
    second = sync(options)
    assert second.deletes_checked and second.rows_deleted == 3 and second.rows_updated >= 1
    assert target.rows() == source.rows() and second.target_rows == 17
    assert target.staging_tables() == []  # the rows' and the keys' staging are both gone
    again = sync(options)
    assert again.rows_deleted == 0 and target.rows() == source.rows()


def test_soft_deletes_mark_and_restore(pair, sync):
    source, target = pair
    source.create_test_table(_rows(range(1, 11)))
    options = {**INCREMENTAL, "deletes": {"detect": "soft"}}
    sync(options)
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" IN (2, 7)')
    second = sync(options)
    assert (second.rows_soft_deleted, second.rows_restored, second.rows_deleted) == (2, 0, 0)
    assert _ids(target) == list(range(1, 11))  # the rows stay, marked
    assert _soft_deleted(target) == {i: i in (2, 7) for i in range(1, 11)}
    third = sync(options)  # marked rows are not marked again
    assert (third.rows_soft_deleted, third.rows_restored) == (0, 0)
    source.insert(_rows([7]))  # back at the source with its old update time: outside the incremental window
    fourth = sync(options)
    assert (fourth.rows_soft_deleted, fourth.rows_restored) == (0, 1)
    assert _soft_deleted(target) == {i: i == 2 for i in range(1, 11)}
    assert [row for row in target.rows() if row[0] != 2] == source.rows()


@only_pairs(("postgres", "postgres"))
def test_an_incremental_run_without_deletes_never_deletes(pair, sync):
    source, target = pair
    source.create_test_table(_rows(range(1, 6)))
    sync(INCREMENTAL)
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" = 1')
    result = sync(INCREMENTAL)
    assert result.rows_deleted == 0 and not result.deletes_checked and _ids(target) == [1, 2, 3, 4, 5]


@only_pairs(("postgres", "duckdb"), ("duckdb", "postgres"))
def test_every_n_runs_counts_committed_merges(pair, sync):
    source, target = pair
    source.create_test_table(_rows(range(1, 6)))
    options = {**INCREMENTAL, "deletes": {"detect": "hard", "every": 3}}
    sync(options)  # the full load: not a merge, not counted
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" = 4')
    checked = [sync(options).deletes_checked for _ in range(3)]
    assert checked == [False, False, True] and _ids(target) == [1, 2, 3, 5]
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" = 5')
    assert [sync(options).deletes_checked for _ in range(3)] == [False, False, True]
    assert _ids(target) == [1, 2, 3]


@only_pairs(("duckdb", "duckdb"))
def test_schedule_cadence_and_run_config_force(pair, sync):
    source, target = pair
    source.create_test_table(_rows(range(1, 6)))
    options = {**INCREMENTAL, "deletes": {"detect": "hard", "schedule": "nightly"}}
    config = {"schedules": {"nightly": {"cron": "0 2 * * *"}}}
    sync(options, extra=config)
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" IN (1, 2)')
    by_sensor = sync(options, RunOptions(trigger="sensor:erp_changes"), extra=config)
    assert not by_sensor.deletes_checked and len(_ids(target)) == 5
    nightly = sync(options, RunOptions(trigger="schedule:nightly"), extra=config)
    assert nightly.deletes_checked and nightly.rows_deleted == 2
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" = 3')
    forced = sync(options, RunOptions(detect_deletes=True), extra=config)
    assert forced.rows_deleted == 1 and _ids(target) == [4, 5]


@only_pairs(("postgres", "postgres"), ("duckdb", "duckdb"))
@pytest.mark.parametrize("detect", ["hard", "soft"])
def test_a_failure_mid_apply_leaves_the_target_as_it_was(pair, sync, monkeypatch, detect):
    source, target = pair
    source.create_test_table(_rows(range(1, 11)))
    options = {**INCREMENTAL, "deletes": {"detect": detect}}
    sync(options)
    if detect == "soft":
        source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" = 9')
        sync(options)
    before = target.rows(), _soft_deleted(target) if detect == "soft" else None
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" IN (1, 2)')
    if detect == "soft":
        source.insert(_rows([9]))  # back: its mark would be cleared
    source.execute(f'UPDATE {source.qualified()} SET "updatedAt" = %s WHERE "Id" = 5', [BASE_TIME + timedelta(days=2)])

    def fail_after_the_deletes(*args, **kwargs):
        raise RuntimeError("connection lost after the delete statements")

    monkeypatch.setattr(deletes, "_count_run", fail_after_the_deletes)
    with pytest.raises(RuntimeError, match="after the delete"):
        sync(options)
    assert (target.rows(), _soft_deleted(target) if detect == "soft" else None) == before
    assert target.staging_tables() == []
    monkeypatch.undo()
    recovered = sync(options)
    assert recovered.deletes_checked
    if detect == "hard":
        assert target.rows() == source.rows()
    else:
        assert _soft_deleted(target) == {i: i in (1, 2) for i in range(1, 11)}


@only_pairs(("postgres", "duckdb"))
def test_composite_keys(pair, sync):
    source, target = pair
    source.execute(f'CREATE TABLE {source.qualified("lines")} (a int, b text, v int, at timestamptz, '
                   "PRIMARY KEY (a, b))")
    source.execute(f'INSERT INTO {source.qualified("lines")} SELECT i % 3, i::text, i, now() '
                   "FROM generate_series(1, 30) AS i")
    options = {"mode": "smart", "primary_key": ["a", "b"], "update_key": "at", "deletes": {"detect": "hard"}}
    sync(options, stream="lines")
    source.execute(f"DELETE FROM {source.qualified('lines')} WHERE a = 1 AND b IN ('1', '4')")
    result = sync(options, stream="lines")
    assert result.rows_deleted == 2
    assert target.query(f'SELECT COUNT(*), SUM(v) FROM {target.qualified("lines")}')[0] == (28, 465 - 5)


@pytest.mark.parametrize("stream, message", [
    ({"mode": "full_refresh", "deletes": {"detect": "hard"}}, "key 'deletes' applies to incremental and smart"),
    ({"mode": "incremental", "update_key": "at", "deletes": {"detect": "hard"}}, "key 'deletes' needs a primary_key"),
    ({**INCREMENTAL, "deletes": {"detect": "hard", "schedule": "weekly"}}, "key 'deletes.schedule': unknown schedule"),
    ({**INCREMENTAL, "deletes": {"detect": "hard", "every": 2, "schedule": "weekly"}}, "not both"),
    ({**INCREMENTAL, "deletes": {"detect": "sometimes"}}, "deletes.detect"),
])
def test_config_errors_name_the_stream_and_key(write_project, tmp_path, stream, message):
    config = {
        "connections": {"a": {"kind": "duckdb", "options": {"path": str(tmp_path / "a.duckdb")}},
                        "b": {"kind": "duckdb", "options": {"path": str(tmp_path / "b.duckdb")}}},
        "source": "a", "target": "b", "streams": {"main.orders": stream},
    }
    with pytest.raises(ConfigError, match=message) as refused:
        write_project(config)
    assert "stream 'main.orders'" in str(refused.value)


def test_the_soft_delete_column_is_not_schema_drift():
    source = pa.schema([("id", pa.int64())])
    target = pa.schema([("id", pa.int64()), deletes.SOFT_DELETE_FIELD, ("gone", pa.int64())])
    assert compare(source, target).dropped == ("gone",)


def test_dagster_metadata_and_the_run_config_switch(write_project, tmp_path):
    """Through Dagster: run config forces a delete check; metadata shows the deletes and, for a
    hash_delta table, the unchanged rows."""
    import dagster as dg
    import duckdb

    from sync_assets.orchestration.project_definitions import build_definitions

    lake = tmp_path / "lake.duckdb"
    with duckdb.connect(str(lake)) as conn:
        conn.execute("CREATE TABLE a (id INT PRIMARY KEY, v INT); INSERT INTO a SELECT i, i FROM range(1, 11) t(i)")
        conn.execute("CREATE TABLE b (id INT PRIMARY KEY, v INT); INSERT INTO b SELECT i, i FROM range(1, 11) t(i)")
    project = write_project({
        "connections": {"lake": {"kind": "duckdb", "role": "source", "options": {"path": str(lake)}},
                        "copy": {"kind": "duckdb", "role": "target", "options": {"path": str(tmp_path / "c.duckdb")}}},
        "source": "lake", "target": "copy", "defaults": {"object": "copies.{stream_table}"},
        "streams": {"main.a": {**INCREMENTAL, "primary_key": "id", "update_key": "v",
                               "deletes": {"detect": "hard", "every": 50}},
                    "main.b": {"mode": "hash_delta", "primary_key": "id"}},
    })
    defs = build_definitions(project)
    assets = [defs.get_assets_def(dg.AssetKey(["copies", "a"]))]  # one step syncs a and b
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(assets, resources=defs.resources, instance=instance).success
    with duckdb.connect(str(lake)) as conn:
        conn.execute("DELETE FROM a WHERE id = 3; UPDATE b SET v = 0 WHERE id = 4")
    forced = dg.materialize(assets, resources=defs.resources, instance=instance, run_config={
        "ops": {assets[0].node_def.name: {"config": {"detect_deletes": True}}}})  # a and b share a step
    a = materializations_of(forced, "copies/a")[0].metadata
    b = materializations_of(forced, "copies/b")[0].metadata
    assert a["deletes_checked"].value is True and a["rows_deleted"].value == 1
    assert (b["rows_updated"].value, b["rows_unchanged"].value, b["rows_inserted"].value) == (1, 9, 0)
