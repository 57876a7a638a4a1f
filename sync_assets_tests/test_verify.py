"""Verification on real engines: ``diff`` finds exactly the planted differences between a source
and its copy (every source/target pair), by in-database bucket checksums and bisection."""

from __future__ import annotations

import pytest

from sync_assets.cli.main import main
from sync_assets.verify import diff
from sync_assets.verify.sides import diff_table
from sync_assets_tests.conftest import connectors
from sync_assets_tests.engines import check_evaluation, make_row
from sync_assets_tests.test_modes import only_pairs, pair, sync  # noqa: F401  (fixtures: every source/target pair)

FULL = {"mode": "full_refresh", "primary_key": "Id"}


def _diff(sync, **restrictions):
    project = sync.project
    table = project.tables[0]
    return diff_table(table, *connectors(project, table), **restrictions)


def test_equal_copies_compare_equal_and_planted_differences_are_found_exactly(pair, sync, monkeypatch):
    source, target = pair
    source.create_test_table([*(make_row(i) for i in range(1, 3001)), make_row(3001, nulls=True)])
    sync(FULL)
    equal = _diff(sync)
    assert equal.equal and equal.source_rows == equal.target_rows == 3001 and equal.rows_fetched == 0
    target.execute(f'DELETE FROM {target.qualified()} WHERE "Id" IN (7, 2500)')          # only in the source
    target.insert([make_row(5000)])                                                       # only in the target
    target.execute(f'UPDATE {target.qualified()} SET "select" = -1 WHERE "Id" = 42')      # a changed value
    target.execute(f"UPDATE {target.qualified()} SET \"Name\" = '' WHERE \"Id\" = 3001")  # NULL vs empty string
    target.execute(f'UPDATE {target.qualified()} SET "Amount" = "Amount" + 1, price = NULL WHERE "Id" = 900')
    monkeypatch.setattr(diff, "LEAF_ROWS", 20)  # bisect more than once on this small table
    found = _diff(sync)
    assert [k for (k,) in found.only_in_source] == [7, 2500]
    assert [k for (k,) in found.only_in_target] == [5000]
    assert found.changed == [((42,), ["select"]), ((900,), ["Amount", "price"]), ((3001,), ["Name"])]
    assert found.rows_fetched < 400  # only the differing buckets' rows were fetched


@only_pairs(("postgres", "duckdb"), ("duckdb", "postgres"))
def test_columns_and_where_restrict_both_sides(pair, sync):
    source, target = pair
    source.create_test_table([make_row(i) for i in range(1, 101)])
    sync(FULL)
    target.execute(f'UPDATE {target.qualified()} SET "select" = -1 WHERE "Id" = 10')
    target.execute(f'UPDATE {target.qualified()} SET flag = NOT flag WHERE "Id" = 60')
    assert [k for k, _ in _diff(sync).changed] == [(10,), (60,)]
    assert [k for k, _ in _diff(sync, columns=["flag"]).changed] == [(60,)]
    assert [k for k, _ in _diff(sync, where='"Id" <= 50').changed] == [(10,)]


@only_pairs(("postgres", "duckdb"), ("duckdb", "duckdb"))
def test_a_table_without_a_key_compares_as_a_multiset(pair, sync):
    source, target = pair
    source.create_test_table([make_row(i) for i in range(1, 51)])
    sync({"mode": "full_refresh"})
    assert _diff(sync).equal
    target.insert([make_row(3)])  # a duplicate row: same values, one more copy
    found = _diff(sync)
    assert [row[0] for row in found.only_in_target] == [3] and not found.only_in_source


@only_pairs(("postgres", "duckdb"))
def test_the_cli_exit_code_says_equal_different_or_error(pair, sync, capsys, monkeypatch):
    source, target = pair
    source.create_test_table([make_row(i) for i in range(1, 21)])
    sync(FULL)
    table = sync.project.tables[0]
    config = str(table.file.parent)
    assert main(["--config", config, "diff", table.name]) == 0
    assert "equal: 20 rows" in capsys.readouterr().out
    target.execute(f'DELETE FROM {target.qualified()} WHERE "Id" = 5')
    assert main(["--config", config, "diff", table.name, "--limit-keys", "5"]) == 1
    out = capsys.readouterr().out
    assert "1 only in the source" in out and "Id=5" in out
    assert main(["--config", config, "diff", table.name, "--columns", "no_such_column"]) == 2
    assert "no_such_column" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["mssql", "snowflake"])
def test_server_dialects_generate_parseable_canonical_sql(kind):
    import pyarrow as pa
    import sqlglot

    from sync_assets.types.canonical import hash_bucket_sql, row_hash_sql

    columns = [("a", pa.int64()), ("b", pa.decimal128(12, 2)), ("c", pa.float64()), ("d", pa.timestamp("us", "UTC")),
               ("e", pa.bool_()), ("f", pa.binary()), ("g", pa.date32()), ("h", pa.string())]
    sql = f"SELECT {hash_bucket_sql(kind, row_hash_sql(kind, columns))} FROM t"
    assert sqlglot.parse_one(sql, read="tsql" if kind == "mssql" else "snowflake") is not None


@only_pairs(("postgres", "duckdb"))
@pytest.mark.parametrize("mode", ["checksum", "full"])
def test_rows_match_check_on_a_dagster_materialization(pair, sync, mode):
    import dagster as dg

    from sync_assets.orchestration.project_definitions import build_definitions

    source, target = pair
    source.create_test_table([make_row(i) for i in range(1, 201)])
    sync({**FULL, "verify": {"mode": mode}})
    defs = build_definitions(sync.project)
    table = sync.project.tables[0]
    asset = defs.get_assets_def(dg.AssetKey(list(table.asset_key)))
    check = dg.AssetCheckKey(dg.AssetKey(list(table.asset_key)), "rows_match")
    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize([asset], resources=defs.resources, instance=instance)  # checked in the sync's step
    passed = check_evaluation(first, "rows_match")
    assert passed.passed and passed.metadata["source_rows"].value == 200
    target.execute(f'UPDATE {target.qualified()} SET "select" = -1 WHERE "Id" = 77')
    checked = dg.materialize([asset], resources=defs.resources, instance=instance,
                             selection=dg.AssetSelection.checks(check))  # the check on its own
    (failed,) = checked.get_asset_check_evaluations()
    assert not failed.passed and failed.metadata["differing_buckets"].value == 1
    if mode == "full":
        assert "Id=77: differs: select" in failed.metadata["differing_keys"].value


@only_pairs(("duckdb", "duckdb"))
def test_rows_match_every_n_evaluations(pair, sync):
    import dagster as dg

    from sync_assets.orchestration.project_definitions import build_definitions

    source, target = pair
    source.create_test_table([make_row(i) for i in range(1, 21)])
    sync({**FULL, "verify": {"mode": "checksum", "every": 3}})
    defs = build_definitions(sync.project)
    asset = defs.get_assets_def(dg.AssetKey(list(sync.project.tables[0].asset_key)))
    instance = dg.DagsterInstance.ephemeral()
    compared = []
    for _ in range(4):
        evaluation = check_evaluation(dg.materialize([asset], resources=defs.resources, instance=instance),
                                      "rows_match")
        compared.append(evaluation.metadata["compared"].value)
        assert evaluation.passed
    assert compared == [True, False, False, True]
