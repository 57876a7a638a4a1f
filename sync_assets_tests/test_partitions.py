"""Date partitions through Dagster, on a ``timestamptz`` column with a time zone that has DST.

The source is PostgreSQL (``events``: a row every 20 minutes around both 2024 DST changes in
America/New_York, plus rows one microsecond either side of local midnights); the target is
PostgreSQL or DuckDB. Each partition is materialized as Dagster does it
(``dagster.materialize(..., partition_key=...)``, a range through the single-run backfill tags),
and what lands is compared with the rows the *source* selects for that local day, hour or week
with its own SQL (``AT TIME ZONE``), not with the window the code computed. The row-count parity
check is run over a partition window, passing and failing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from sync_assets.orchestration.project_definitions import build_definitions
from sync_assets_tests.engines import Side, materializations_of

ZONE = "America/New_York"


@pytest.fixture
def source(schema_name, pg_conninfo) -> Side:
    side = Side("postgres", schema_name("src"), pg_conninfo=pg_conninfo)
    side.execute(f"""
        CREATE TABLE {side.qualified("events")} (id bigint PRIMARY KEY, at timestamptz NOT NULL, payload text);
        INSERT INTO {side.qualified("events")}
        SELECT row_number() OVER (ORDER BY g), g, 'p' || row_number() OVER (ORDER BY g)
        FROM (SELECT generate_series(timestamptz '2024-03-02 00:00+00', timestamptz '2024-03-19 00:00+00',
                                     '20 minutes') AS g
              UNION ALL
              SELECT generate_series(timestamptz '2024-11-01 00:00+00', timestamptz '2024-11-05 00:00+00',
                                     '20 minutes')) s;
        INSERT INTO {side.qualified("events")} VALUES
            (100001, timestamptz '2024-03-10 00:00:00-05' - interval '1 microsecond', 'just before'),
            (100002, timestamptz '2024-03-11 00:00:00-04' - interval '1 microsecond', 'last of the short day'),
            (100003, timestamptz '2024-11-04 00:00:00-05' - interval '1 microsecond', 'last of the long day');
    """)
    return side


@pytest.fixture(params=["postgres", "duckdb"])
def target(request, schema_name, pg_conninfo, tmp_path) -> Side:
    if request.param == "postgres":
        return Side("postgres", schema_name("tgt"), pg_conninfo=pg_conninfo)
    return Side("duckdb", "tgt", duckdb_path=tmp_path / "wh.duckdb")


@pytest.fixture
def partitioned(source, target, write_project, pg_options):
    """``make(partition)`` -> (definitions, asset, row-count check) for ``events`` partitioned as asked."""

    def make(partition: dict):
        target_connection = (
            {"kind": "postgres", "role": "target", "options": pg_options}
            if target.kind == "postgres"
            else {"kind": "duckdb", "options": {"path": str(target.duckdb_path)}}
        )
        project = write_project({
            "connections": {"src": {"kind": "postgres", "role": "source", "options": pg_options},
                            "tgt": target_connection},
            "source": "src", "target": "tgt",
            "defaults": {"object": f'"{target.schema}".{{stream_table}}'},
            "streams": {f'"{source.schema}".events': {"mode": "date_partitioned", "primary_key": "id",
                                                      "partition": {"column": "at", "timezone": ZONE, **partition}}},
        })
        defs = build_definitions(project)
        key = dg.AssetKey(list(project.tables[0].asset_key))
        return defs, defs.get_assets_def(key), dg.AssetCheckKey(key, "row_count_parity")

    return make


def _materialize(defs, assets, instance, **kwargs) -> dg.ExecuteInProcessResult:
    result = dg.materialize(assets, resources=defs.resources, instance=instance, **kwargs)
    assert result.success
    return result


def _source_ids(source: Side, local_condition: str) -> list[int]:
    """Ids of the source rows whose New York local time (``local``) meets the condition."""
    return [row[0] for row in source.query(
        f"SELECT id FROM (SELECT id, at AT TIME ZONE '{ZONE}' AS local, at FROM {source.qualified('events')}) e "
        f"WHERE {local_condition} ORDER BY id")]


def _target_ids(target: Side) -> list[int]:
    return [row[0] for row in target.query(f"SELECT id FROM {target.qualified('events')} ORDER BY id")]


def _rows_written(result: dg.ExecuteInProcessResult, asset) -> int:
    return materializations_of(result, asset.key)[0].metadata["rows_written"].value


def test_daily_partitions_on_dst_days_land_exactly_their_local_day(source, target, partitioned):
    defs, asset, _ = partitioned({"granularity": "daily", "start": "2024-03-01"})
    instance = dg.DagsterInstance.ephemeral()
    short_day = _materialize(defs, [asset], instance, partition_key="2024-03-10")
    expected = _source_ids(source, "local::date = DATE '2024-03-10'")
    assert len(expected) == 23 * 3 + 1  # 23 hours of 20-minute rows, and the one a microsecond before midnight
    assert _target_ids(target) == expected and _rows_written(short_day, asset) == len(expected)

    long_day = _materialize(defs, [asset], instance, partition_key="2024-11-03")
    expected_long = _source_ids(source, "local::date = DATE '2024-11-03'")
    assert len(expected_long) == 25 * 3 + 1
    assert _rows_written(long_day, asset) == len(expected_long)
    assert _target_ids(target) == sorted(expected + expected_long)

    # a re-run replaces exactly its day: changed, deleted and added source rows of that day show,
    # the other day's rows stay as they were
    payloads = (
        f"SELECT id, payload FROM {target.qualified('events')} WHERE id IN ({', '.join(map(str, expected_long))})"
    )
    long_day_before = target.query(payloads)
    source.execute(f"UPDATE {source.qualified('events')} SET payload = 'changed'")
    source.execute(f"DELETE FROM {source.qualified('events')} WHERE id = 100002")
    source.execute(f"INSERT INTO {source.qualified('events')} VALUES (100004, '2024-03-10 23:59:59-04', 'changed')")
    rerun = _materialize(defs, [asset], instance, partition_key="2024-03-10")
    assert materializations_of(rerun, asset.key)[0].metadata["rows_replaced"].value == len(
        expected
    )
    short_day_now = _source_ids(source, "local::date = DATE '2024-03-10'")
    assert 100004 in short_day_now and 100002 not in short_day_now
    assert _target_ids(target) == sorted(short_day_now + expected_long)
    assert target.query(payloads) == long_day_before
    assert target.query(f"SELECT DISTINCT payload FROM {target.qualified('events')} "
                        f"WHERE id IN ({', '.join(map(str, short_day_now))})") == [("changed",)]


def test_hourly_partitions_across_both_dst_changes(source, target, partitioned):
    """Spring forward: local 01:00 lasts until 03:00 (EDT). Fall back: 01:00 EDT and 01:00 EST
    are two partitions (``2024-11-03-01:00`` and ``2024-11-03-01:00-0500``), an hour each."""
    defs, asset, _ = partitioned({"granularity": "hourly", "start": "2024-03-09 00:00"})
    instance = dg.DagsterInstance.ephemeral()
    expectations = {
        "2024-03-10-01:00": "at >= '2024-03-10 06:00+00' AND at < '2024-03-10 07:00+00'",
        "2024-11-03-01:00": "at >= '2024-11-03 05:00+00' AND at < '2024-11-03 06:00+00'",
        "2024-11-03-01:00-0500": "at >= '2024-11-03 06:00+00' AND at < '2024-11-03 07:00+00'",
    }
    landed: list[int] = []
    for key, utc_hour in expectations.items():
        result = _materialize(defs, [asset], instance, partition_key=key)
        expected = _source_ids(source, utc_hour)
        assert len(expected) == 3, key
        landed += expected
        assert _rows_written(result, asset) == 3
        assert _target_ids(target) == sorted(landed), key


def test_weekly_partition_spanning_the_spring_dst_change(source, target, partitioned):
    defs, asset, _ = partitioned({"granularity": "weekly", "start": "2024-03-03"})
    result = _materialize(defs, [asset], dg.DagsterInstance.ephemeral(), partition_key="2024-03-10")
    expected = _source_ids(source, "local >= '2024-03-10' AND local < '2024-03-17'")  # Sunday to Sunday, local
    assert len(expected) == (7 * 24 - 1) * 3 + 1  # a week one hour short; 100002 falls inside it
    assert _target_ids(target) == expected and _rows_written(result, asset) == len(expected)


def test_a_partition_range_runs_as_one_run(source, target, partitioned):
    defs, asset, _ = partitioned({"granularity": "daily", "start": "2024-03-01"})
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(defs, [asset], instance, tags={"dagster/asset_partition_range_start": "2024-03-09",
                                                          "dagster/asset_partition_range_end": "2024-03-11"})
    expected = _source_ids(source, "local::date BETWEEN DATE '2024-03-09' AND DATE '2024-03-11'")
    assert len(instance.get_runs()) == 1
    assert _target_ids(target) == expected
    per_day = {m.partition: m.metadata for m in materializations_of(result, asset.key)}
    days = ("2024-03-09", "2024-03-10", "2024-03-11")
    assert {day: m["dagster/partition_row_count"].value for day, m in per_day.items()} == {  # each its own day
        day: len(_source_ids(source, f"local::date = DATE '{day}'")) for day in days}
    assert {m["range_rows_written"].value for m in per_day.values()} == {len(expected)} == {(24 + 23 + 24) * 3 + 2}


def test_end_offset_makes_the_current_day_a_partition(source, target, partitioned):
    """``end_offset: 1`` adds the day in progress (New York time) as the last partition; syncing it
    picks up rows written moments ago."""
    today = datetime.now(ZoneInfo(ZONE)).date()
    start = (today - timedelta(days=3)).isoformat()
    source.execute(f"INSERT INTO {source.qualified('events')} VALUES (200001, now(), 'just now')")
    _, without_offset, _ = partitioned({"granularity": "daily", "start": start})
    defs, asset, _ = partitioned({"granularity": "daily", "start": start, "end_offset": 1})
    assert without_offset.partitions_def.get_last_partition_key() == (today - timedelta(days=1)).isoformat()
    assert asset.partitions_def.get_last_partition_key() == today.isoformat()
    result = _materialize(defs, [asset], dg.DagsterInstance.ephemeral(), partition_key=today.isoformat())
    assert _rows_written(result, asset) == 1 and _target_ids(target) == [200001]


def test_row_count_check_over_a_partition_window(source, target, partitioned):
    defs, asset, check = partitioned({"granularity": "daily", "start": "2024-03-01"})
    instance = dg.DagsterInstance.ephemeral()
    in_day = len(_source_ids(source, "local::date = DATE '2024-03-10'"))

    def evaluate(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
        assert result.success
        (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == check.name]
        return evaluation

    def check_only() -> dg.AssetCheckEvaluation:
        """The check alone for the partition, as the UI re-runs it: the asset is not re-synced."""
        return evaluate(dg.materialize([asset], resources=defs.resources, instance=instance,
                                       selection=dg.AssetSelection.checks(check),
                                       tags={"dagster/partition": "2024-03-10"}))

    synced = evaluate(dg.materialize([asset], resources=defs.resources, instance=instance,
                                     partition_key="2024-03-10"))  # evaluated in the sync's own step
    assert synced.passed and synced.metadata["source_rows"].value == synced.metadata["target_rows"].value == in_day
    _materialize(defs, [asset], instance, partition_key="2024-03-11")

    # rows outside the window, on either side, do not count
    source.execute(f"INSERT INTO {source.qualified('events')} VALUES (300001, '2024-03-09 23:59:59-05', 'outside')")
    target.execute(f"DELETE FROM {target.qualified('events')} WHERE id = %s",
                   [_source_ids(source, "local::date = DATE '2024-03-11'")[0]])
    assert check_only().passed

    # a target row of the window missing fails the check, and its description says the counts
    target.execute(f"DELETE FROM {target.qualified('events')} WHERE id = %s",
                   [_source_ids(source, "local::date = DATE '2024-03-10'")[5]])
    missing = check_only()
    assert not missing.passed
    assert missing.metadata["difference"].value == -1
    assert f"source has {in_day} rows, target {in_day - 1}" in missing.description
    assert "2024-03-10 00:00:00-05:00" in missing.description and "2024-03-11 00:00:00-04:00" in missing.description
