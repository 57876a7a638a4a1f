"""Transforms and validation rules on real engines (PostgreSQL and DuckDB, as source and target):
the target holds the transformed columns with their types, bad rows fail the run naming the table,
column, rule and key (nothing written) or go to the dead letters with ``on_bad_rows: quarantine``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from sync_assets.connectors import connector_for, dead_letters
from sync_assets.errors import ConfigError, DataError
from sync_assets_tests.engines import make_row, materializations_of
from sync_assets_tests.test_modes import only_pairs, pair, sync  # noqa: F401  (fixtures: every source/target pair)

RAW = "erp raw"
RAW_ROWS = [
    # id, amount (text), day (text), email, country, rate
    (1, " 12.50 ", "2024-03-01", "  Ada@Example.COM ", "de", 2.0),
    (2, "7", "02.03.2024", "bob@example.com", "FR", 1.5),
    (3, "", "", "", "", 1.0),
    (4, "1e3", "2024-03-04", "carol@example.com", "de", 0.5),
]


def _raw_table(source, rows=RAW_ROWS) -> None:
    source.ensure_schema()
    source.execute(f"CREATE TABLE {source.qualified(RAW)} (id bigint PRIMARY KEY, amount text, day text, "
                   "email text, country text, rate double precision)")
    source.execute(f"INSERT INTO {source.qualified(RAW)} VALUES (%s, %s, %s, %s, %s, %s)", rows, many=True)


TRANSFORM = {
    "rename": {"email": "contact_email"},
    "cast": {"amount": "decimal(12,2)"},
    "trim": ["contact_email"],
    "empty_to_null": ["contact_email", "country"],
    "lowercase": ["contact_email"],
    "uppercase": ["country"],
    "parse_dates": {"day": ["%Y-%m-%d", "%d.%m.%Y"]},
    "computed": {"amount_eur": "amount * rate"},
    "drop": ["rate"],
}


def _target_rows(target, columns: list[str], table: str = RAW) -> list[tuple]:
    names = ", ".join(f'"{c}"' for c in columns)
    return target.query(f"SELECT {names} FROM {target.qualified(table)} ORDER BY id")


def test_transforms_land_in_order_with_their_types(pair, sync):
    source, target = pair
    _raw_table(source)
    result = sync({"mode": "full_refresh", "primary_key": "id", "transform": TRANSFORM}, stream=RAW)
    assert result.rows_read == result.rows_written == 4
    schema = result.target_schema
    assert schema.names == ["id", "amount", "day", "contact_email", "country", "amount_eur"]
    assert pa.types.is_decimal(schema.field("amount").type) and schema.field("amount").type.scale == 2
    assert pa.types.is_date32(schema.field("day").type)
    assert _target_rows(target, schema.names) == [
        (1, Decimal("12.50"), date(2024, 3, 1), "ada@example.com", "DE", Decimal("25.00")),
        (2, Decimal("7.00"), date(2024, 3, 2), "bob@example.com", "FR", Decimal("10.50")),
        (3, None, None, None, None, None),
        (4, Decimal("1000.00"), date(2024, 3, 4), "carol@example.com", "DE", Decimal("500.00")),
    ]


@only_pairs(("postgres", "duckdb"), ("duckdb", "postgres"))
def test_a_value_a_cast_cannot_convert_fails_the_run_naming_column_key_and_value(pair, sync):
    source, target = pair
    _raw_table(source, [*RAW_ROWS, (5, "twelve", "2024-03-05", "x@y.z", "de", 1.0)])
    with pytest.raises(DataError) as failure:
        sync({"mode": "full_refresh", "primary_key": "id", "transform": TRANSFORM}, stream=RAW)
    message = str(failure.value)
    assert "'amount' cannot be cast to decimal(12,2)" in message and "id=5" in message
    assert "'twelve'" in message and "nothing was written" in message
    assert target.query("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = %s", [RAW]) == [(0,)]


@only_pairs(("duckdb", "postgres"), ("postgres", "duckdb"))
def test_cast_errors_null_stores_null(pair, sync):
    source, target = pair
    _raw_table(source, [(1, "twelve", "31/12/2024", "a@b.c", "de", 1.0)])
    sync({"mode": "full_refresh", "primary_key": "id",
          "transform": TRANSFORM | {"cast_errors": "null"}}, stream=RAW)
    assert _target_rows(target, ["id", "amount", "day"]) == [(1, None, None)]


RULES = {
    "contact_email": {"not_null": True, "regex": r"[^@\s]+@[^@\s]+\.[a-z]+", "max_length": 30},
    "country": {"one_of": ["DE", "FR"]},
    "amount": {"min": 0, "max": 500},
    "id": {"unique": True},
}
BAD_ROWS = [
    (10, "-1", "2024-03-10", "neg@example.com", "de", 1.0),        # amount below min
    (11, "5", "2024-03-11", "not-an-email", "fr", 1.0),            # regex
    (12, "5", "2024-03-12", "ok@example.com", "us", 1.0),          # one_of
    (13, "5", "2024-03-13", None, "de", 1.0),                      # not_null
    (14, "x", "2024-03-14", "cast@example.com", "de", 1.0),        # cast fails
    (15, "5", "2024-03-15", "a" * 30 + "@example.com", "de", 1.0),  # max_length
]


def test_validation_quarantines_each_bad_row_with_its_rule_and_loads_the_rest(pair, sync):
    source, target = pair
    _raw_table(source, [RAW_ROWS[0], RAW_ROWS[1], *BAD_ROWS])
    options = {"mode": "full_refresh", "primary_key": "id", "transform": TRANSFORM, "validate": RULES,
               "on_bad_rows": "quarantine"}
    result = sync(options, stream=RAW)
    assert result.rows_quarantined == len(BAD_ROWS) and result.rows_written == 2
    assert [row[0] for row in _target_rows(target, ["id"])] == [1, 2]
    table = sync.project.tables[0]
    letters = dead_letters.outstanding(connector_for(table.target, sync.project.connections[table.target]),
                                       table.target_table)
    reasons = {json.loads(letter["row_key"])[0]: (letter["column_name"], letter["reason"]) for letter in letters}
    assert reasons[10] == ("amount", "'amount' breaks rule min: 0")
    assert reasons[11][0] == "contact_email" and "breaks rule regex" in reasons[11][1]
    assert reasons[12] == ("country", "'country' breaks rule one_of: ['DE', 'FR']")
    assert reasons[13] == ("contact_email", "'contact_email' breaks rule not_null: it is NULL")
    assert reasons[14][0] == "amount" and "cannot be cast to decimal(12,2)" in reasons[14][1]
    assert reasons[15] == ("contact_email", "'contact_email' breaks rule max_length: 30")
    assert json.loads(next(le["raw_row"] for le in letters if "[12]" == le["row_key"]))["country"] == "US"

    again = sync(options, stream=RAW)  # idempotent: the same rows again, the same dead letters
    assert again.rows_quarantined == len(BAD_ROWS) and len(dead_letters.outstanding(
        connector_for(table.target, sync.project.connections[table.target]), table.target_table)) == len(BAD_ROWS)


@only_pairs(("postgres", "postgres"), ("duckdb", "duckdb"))
def test_a_broken_rule_fails_the_run_naming_table_column_rule_and_key(pair, sync):
    source, target = pair
    _raw_table(source, [RAW_ROWS[0], BAD_ROWS[2]])
    with pytest.raises(DataError) as failure:
        sync({"mode": "full_refresh", "primary_key": "id", "transform": TRANSFORM, "validate": RULES}, stream=RAW)
    message = str(failure.value)
    assert RAW in message and "'country' breaks rule one_of" in message and "id=12" in message
    assert "'US'" in message and "on_bad_rows: quarantine" in message


@only_pairs(("postgres", "duckdb"), ("duckdb", "postgres"))
def test_unique_is_checked_across_batches_in_staging(pair, sync):
    source, target = pair
    _raw_table(source, [(i, "1", "2024-03-01", f"u{i % 3}@example.com", "de", 1.0) for i in range(1, 10)])
    options = {"mode": "full_refresh", "primary_key": "id", "batch_size": 2, "transform": TRANSFORM,
               "validate": {"contact_email": {"unique": True}}}
    with pytest.raises(DataError, match=r"column 'contact_email' breaks rule unique: rows share a value"):
        sync(options, stream=RAW)
    result = sync(options | {"on_bad_rows": "quarantine"}, stream=RAW)
    assert result.rows_quarantined == 9 and result.rows_written == 0


@only_pairs(("postgres", "postgres"))
def test_timezone_makes_local_times_instants(pair, sync):
    source, target = pair
    source.create_test_table([make_row(1)])
    result = sync({"mode": "full_refresh", "primary_key": "Id",
                   "transform": {"timezone": {"ts": {"from": "Europe/Berlin", "to": "UTC"}}}})
    assert result.target_schema.field("ts").type.tz is not None
    [(ts,)] = target.query(f"SELECT ts FROM {target.qualified()}")
    assert ts == datetime(2024, 1, 1, 11, 0, 0, 1, tzinfo=UTC)


@only_pairs(("postgres", "duckdb"))
def test_a_database_source_keeps_its_key_columns_untransformed(pair, sync):
    source, _ = pair
    _raw_table(source)
    with pytest.raises(ConfigError, match="changes key column"):
        sync({"mode": "full_refresh", "primary_key": "id", "transform": {"rename": {"id": "erp_id"}}}, stream=RAW)
    with pytest.raises(ConfigError, match=r"transform.trim': column 'rate' is double, not text"):
        sync({"mode": "full_refresh", "primary_key": "id", "transform": {"trim": ["rate"]}}, stream=RAW)
    with pytest.raises(ConfigError, match=r"transform.cast': 'nope' is not a column"):
        sync({"mode": "full_refresh", "primary_key": "id", "transform": {"cast": {"nope": "int64"}}}, stream=RAW)


@only_pairs(("postgres", "duckdb"))
def test_dagster_shows_the_transformed_schema_and_column_lineage(pair, sync):
    import dagster as dg

    from sync_assets.orchestration.project_definitions import build_definitions

    source, _ = pair
    _raw_table(source)
    sync({"mode": "full_refresh", "primary_key": "id", "transform": TRANSFORM}, stream=RAW)  # writes the project
    defs = build_definitions(sync.project)
    key = dg.AssetKey(list(sync.project.tables[0].asset_key))
    result = dg.materialize([defs.get_assets_def(key)], resources=defs.resources)
    (materialization,) = materializations_of(result, key)
    columns = {c.name: c for c in materialization.metadata["dagster/column_schema"].value.columns}
    assert list(columns) == ["id", "amount", "day", "contact_email", "country", "amount_eur"]
    assert columns["contact_email"].description == "renamed from email; trim; empty_to_null; lowercase"
    assert columns["amount_eur"].description == "computed: amount * rate" and columns["id"].description is None
    lineage = materialization.metadata["dagster/column_lineage"].value.deps_by_column
    source_key = dg.AssetKey(["source", "src", source.schema, RAW.replace(" ", "_")])  # Dagster's name characters
    assert lineage["contact_email"] == [dg.TableColumnDep(asset_key=source_key, column_name="email")]
    assert {d.column_name for d in lineage["amount_eur"]} == {"amount", "rate"}
    assert "id" not in lineage
