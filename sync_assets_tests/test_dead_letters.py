"""Dead letters on real engines (``on_bad_rows: quarantine``): every good row loads, every bad one
is recorded with its table, key, column, reason and raw row, a retry after a fix leaves none, and
a failed apply leaves neither rows nor dead letters behind."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from sync_assets.cli.main import main
from sync_assets.config.names import TableName
from sync_assets.connectors import connector_for, dead_letters
from sync_assets.connectors.interface import WriteOp
from sync_assets.connectors.requests import SourceStream
from sync_assets.errors import DataError, SchemaMismatchError
from sync_assets.sync.planning import RunOptions
from sync_assets_tests.engines import BASE_TIME, COLUMNS, DDL, check_evaluation, make_row, materializations_of
from sync_assets_tests.test_modes import only_pairs, pair, sync  # noqa: F401  (fixtures: every source/target pair)

INCREMENTAL = {"mode": "incremental", "primary_key": "Id", "update_key": "updatedAt", "on_bad_rows": "quarantine"}
NAME, PRICE, FLAG = COLUMNS.index("Name"), COLUMNS.index("price"), COLUMNS.index("flag")


def _row(i: int, **changes) -> tuple:
    values = list(make_row(i, updated=BASE_TIME + timedelta(seconds=i)))
    for column, value in changes.items():
        values[COLUMNS.index(column)] = value
    return tuple(values)


def _narrow_target(target) -> None:
    """The target exists with narrower columns than the source (price 4 whole digits, Name 20
    characters where the engine enforces lengths, flag NOT NULL) and holds row 1."""
    target.ensure_schema()
    ddl = DDL[target.kind].replace("price numeric(12,2)", "price numeric(6,2)").replace(
        "price DECIMAL(12,2)", "price DECIMAL(6,2)").replace('"Name" varchar(40)', '"Name" varchar(20)').replace(
        "flag boolean", "flag boolean NOT NULL").replace("flag BOOLEAN", "flag BOOLEAN NOT NULL")
    target.execute(ddl.format(t=target.qualified()))
    target.insert([_row(1)])


def _letters(sync) -> list[dict]:
    project = sync.project
    table = project.tables[0]
    return dead_letters.outstanding(connector_for(table.target, project.connections[table.target]),
                                    table.target_table)


def test_quarantine_keeps_every_good_row_records_every_bad_one_and_a_retry_after_a_fix_leaves_none(
        pair, sync, capsys):
    source, target = pair
    bad = {102: {"price": Decimal("123456.78")}, 103: {"flag": None}}
    if target.kind == "postgres":
        bad[101] = {"Name": "n" * 30}
        if source.kind == "duckdb":  # PostgreSQL text cannot hold NUL, so only a DuckDB source has one
            bad[104] = {"Name": "nul \x00 inside"}
    source.create_test_table([_row(i, **bad.get(i, {})) for i in range(1, 121)])
    _narrow_target(target)

    result = sync(INCREMENTAL)
    assert result.plan.strategy == "incremental" and result.rows_quarantined == len(bad)
    assert result.rows_read == 120 and result.rows_written == 120 - len(bad)
    good = [row for row in source.rows() if row[0] not in bad]
    assert target.rows() == good
    letters = _letters(sync)
    assert sorted(json.loads(letter["row_key"])[0] for letter in letters) == sorted(bad)
    by_key = {json.loads(letter["row_key"])[0]: letter for letter in letters}
    assert "'price'" in by_key[102]["reason"] and "digits before the point" in by_key[102]["reason"]
    assert by_key[102]["column_name"] == "price" and json.loads(by_key[102]["raw_row"])["price"] == "123456.78"
    assert "'flag' is NULL" in by_key[103]["reason"] and by_key[103]["column_name"] == "flag"
    assert all(letter["table_name"] == str(sync.project.tables[0].target_table) and letter["run_id"]
               for letter in letters)
    if 101 in bad:
        assert "longer than the target column's 20 characters" in by_key[101]["reason"]
    if 104 in bad:
        assert "NUL" in by_key[104]["reason"] and json.loads(by_key[104]["raw_row"])["Name"] == "nul \x00 inside"

    again = sync(INCREMENTAL, RunOptions(window_start=BASE_TIME.isoformat()))  # re-reads every row
    # re-reading the same bad rows replaces their dead letters, never duplicates them
    assert again.rows_quarantined == len(bad) and len(_letters(sync)) == len(bad)

    source.execute(f'UPDATE {source.qualified()} SET price = 1.5, flag = true, "Name" = %s '
                   f'WHERE "Id" IN ({", ".join(map(str, bad))})', ["fixed"])
    config = str(sync.project.tables[0].file.parent)
    assert main(["--config", config, "dead-letters", sync.project.tables[0].name]) == 1
    assert f"{len(bad)} dead letters" in capsys.readouterr().out
    assert main(["--config", config, "dead-letters", sync.project.tables[0].name, "--retry"]) == 0
    assert "0 dead letters" in capsys.readouterr().out
    assert target.rows() == source.rows() and _letters(sync) == []


@only_pairs(("postgres", "duckdb"), ("duckdb", "postgres"))
def test_duplicate_and_null_keys_are_quarantined_whole_and_the_rest_loads(pair, sync):
    source, target = pair
    source.ensure_schema()
    source.execute(DDL[source.kind].replace(" PRIMARY KEY", "").format(t=source.qualified()))
    source.insert([*(_row(i) for i in range(1, 51)), _row(7, Name="the other 7"),
                   (None, *_row(51)[1:])])
    result = sync({"mode": "full_refresh", "primary_key": "Id", "on_bad_rows": "quarantine"})
    assert result.rows_quarantined == 3 and result.target_rows == 49
    assert [row[0] for row in target.rows()] == [i for i in range(1, 51) if i != 7]
    reasons = sorted((letter["row_key"], letter["reason"]) for letter in _letters(sync))
    assert reasons == [("[7]", "duplicate primary key: 2 source rows have this key")] * 2 + [
        ("[null]", "'Id' is NULL, but it is a primary key column")]

    source.execute(f"DELETE FROM {source.qualified()} WHERE \"Name\" = 'the other 7' OR \"Id\" IS NULL")
    config = str(sync.project.tables[0].file.parent)
    assert main(["--config", config, "dead-letters", sync.project.tables[0].name, "--retry"]) == 0
    assert [row[0] for row in target.rows()] == list(range(1, 51)) and _letters(sync) == []


@only_pairs(("duckdb", "postgres"))
def test_fail_mode_still_refuses_before_writing(pair, sync):
    source, target = pair
    source.create_test_table([_row(1), _row(2)])
    _narrow_target(target)
    before = target.rows()
    with pytest.raises(SchemaMismatchError, match="set on_bad_rows: quarantine to load the values that fit"):
        sync({**INCREMENTAL, "on_bad_rows": "fail"})
    source.execute(f'UPDATE {source.qualified()} SET "Name" = %s WHERE "Id" = 2', ["nul \x00 inside"])
    with pytest.raises(DataError, match=r"column 'Name' holds a NUL character.* first at Id=2"):
        sync({"mode": "full_refresh", "primary_key": "Id"})
    assert target.rows() == before


@pytest.mark.parametrize("kind", ["postgres", "duckdb"])
def test_invalid_utf8_is_quarantined_with_its_raw_bytes(kind, request, tmp_path):
    spec, schema_name = _target_spec(kind, request, tmp_path)
    target = connector_for("tgt", spec)
    table = TableName(schema_name, "utf8_check")
    ids = pa.array([1, 2, 3], pa.int64())
    names = pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(pa.array([0, 2, 4, 6], pa.int32()).buffers()[1]),
                                                   pa.py_buffer(b"ok\xff\xfeok")])
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])
    batch = pa.RecordBatch.from_arrays([ids, names], schema=schema)
    stream = SourceStream(schema, lambda: pa.RecordBatchReader.from_batches(schema, [batch]), label="utf8_check",
                          key_columns=("id",))
    op = WriteOp("replace", table, ("id",), on_bad_rows="quarantine", run_id="run-1")
    written = target.write(op, stream)
    assert written.rows_quarantined == 1 and written.rows_inserted == 2
    (letter,) = dead_letters.outstanding(target, table)
    assert letter["row_key"] == "[2]" and letter["column_name"] == "name" and "invalid UTF-8" in letter["reason"]
    assert json.loads(letter["raw_row"]) == {"id": 2, "name": "\\xfffe"}  # the bytes, as hex
    assert letter["run_id"] == "run-1"


def _target_spec(kind: str, request, tmp_path):
    from sync_assets.config.models import ConnectionSpec

    if kind == "postgres":
        spec = {"kind": "postgres", "role": "target", "options": request.getfixturevalue("pg_options")}
        return ConnectionSpec.model_validate(spec), request.getfixturevalue("schema_name")("dl")
    spec = {"kind": "duckdb", "role": "target", "options": {"path": str(tmp_path / "t.duckdb")}}
    return ConnectionSpec.model_validate(spec), "main"


@only_pairs(("duckdb", "postgres"), ("postgres", "duckdb"))
def test_a_failed_apply_leaves_neither_rows_nor_dead_letters(pair, sync, monkeypatch):
    source, target = pair
    source.create_test_table([_row(i, **({"flag": None} if i == 5 else {})) for i in range(1, 21)])
    _narrow_target(target)
    before = target.rows()
    original = dead_letters.Quarantine.apply

    def apply_then_fail(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise RuntimeError("the database went away mid-apply")

    monkeypatch.setattr(dead_letters.Quarantine, "apply", apply_then_fail)
    with pytest.raises(RuntimeError, match="went away"):
        sync(INCREMENTAL)
    assert target.rows() == before and _letters(sync) == [] and target.staging_tables() == []


@only_pairs(("postgres", "duckdb"))
def test_dagster_records_the_count_and_the_no_dead_letters_check_warns(pair, sync):
    import dagster as dg

    from sync_assets.orchestration.project_definitions import build_definitions

    source, target = pair
    source.create_test_table([_row(i, **({"flag": None} if i == 3 else {})) for i in range(1, 11)])
    _narrow_target(target)
    sync(INCREMENTAL)  # writes the project; the Dagster run below re-reads row 3 (it is past the watermark)
    target.execute(f'DELETE FROM {target.qualified()} WHERE "Id" > 1')
    defs = build_definitions(sync.project)
    key = dg.AssetKey(list(sync.project.tables[0].asset_key))
    result = dg.materialize([defs.get_assets_def(key)], resources=defs.resources)
    (materialization,) = materializations_of(result, key)
    assert materialization.metadata["rows_quarantined"].value == 1
    evaluation = check_evaluation(result, "no_dead_letters")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["dead_letters"].value == 1
    assert "'flag' is NULL" in evaluation.metadata["examples"].value
    (letter,) = _letters(sync)
    assert letter["run_id"] == result.run_id
