"""The canonical text of a value is the same on PostgreSQL and DuckDB (both executed here), type by
type, for the values where engines' own text forms differ: float magnitudes where PostgreSQL
switches to an exponent, NaN and the infinities, -0.0, decimals with trailing zeros, time zones,
bytes, UUIDs, NULL and the empty string."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest

from sync_assets.types.canonical import PINNED_SESSION, row_text_sql, value_text_sql

NAN, INF = float("nan"), float("inf")

CASES = [  # (Arrow type, PostgreSQL type, DuckDB type, values)
    (pa.float64(), "float8", "DOUBLE",
     [0.1, 1 / 3, 1e15, 1.5e15, -1e15, 123456789012345.6, 2.0**53, 9999999999999998.0, 1e16, 1.5e16, 1e300,
      1e-4, 1e-5, 5e-324, 0.0, -0.0, -2.5, 1e6, 1234567.0, NAN, INF, -INF, None]),
    (pa.float32(), "real", "FLOAT",
     [16777216.0, 1234567.9, 999999.9, 1e6, 0.1, 1.5, 1e-7, 1e-30, 3.4e38, 1e15, -7e10, -0.0, NAN, -INF, None]),
    (pa.decimal128(38, 10), "numeric(38,10)", "DECIMAL(38,10)",
     [Decimal("1.1000000000"), Decimal("0"), Decimal("-0.0000000001"), Decimal("1234567890123456789012345678.5"),
      Decimal("100"), None]),
    (pa.int64(), "bigint", "BIGINT", [0, -1, 2**63 - 1, -(2**63), None]),
    (pa.string(), "text", "VARCHAR", ["", "a", " trailing ", "é ü 漢", "1:2", "N", None]),
    (pa.bool_(), "boolean", "BOOLEAN", [True, False, None]),
    (pa.date32(), "date", "DATE", [date(2024, 2, 29), date(1, 1, 1), date(9999, 12, 31), None]),
    (pa.timestamp("us"), "timestamp", "TIMESTAMP",
     [datetime(2024, 1, 1, 12, 0, 0, 1), datetime(2024, 1, 1), datetime(1970, 1, 1, 0, 0, 0, 999999), None]),
    (pa.timestamp("us", "UTC"), "timestamptz", "TIMESTAMPTZ",
     [datetime(2024, 1, 1, 12, 0, 0, 5, tzinfo=UTC), datetime(2024, 6, 1, 2, 30, tzinfo=timezone(timedelta(hours=5))),
      None]),
    (pa.binary(), "bytea", "BLOB", [b"", b"\x00\xff\x10", None]),
    (pa.uuid(), "uuid", "UUID", [uuid.UUID(int=7919), uuid.UUID("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), None]),
]


@pytest.mark.parametrize(("arrow_type", "pg_type", "duckdb_type", "values"), CASES,
                         ids=[str(case[0]) for case in CASES])
def test_each_type_has_the_same_canonical_text_on_postgres_and_duckdb(pg, arrow_type, pg_type, duckdb_type, values):
    pg.execute("SET TimeZone = 'America/New_York'")  # a user's session settings must not change the text
    pg.execute("SET DateStyle = 'SQL, DMY'")
    pg.execute("SET extra_float_digits = 0")
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'Asia/Tokyo'")
    on_pg, on_duckdb = [], []
    for value in values:
        with pg.transaction():  # what PostgresConnector.fetch_canonical does
            for setting in PINNED_SESSION["postgres"]:
                pg.execute(setting)
            on_pg.append(pg.execute(f"SELECT {value_text_sql('postgres', 'x', arrow_type)} "
                                    f"FROM (SELECT CAST(%s AS {pg_type}) AS x) AS t", (value,)).fetchone()[0])
        on_duckdb.append(duck.execute(f"SELECT {value_text_sql('duckdb', 'x', arrow_type)} "
                                      f"FROM (SELECT CAST(? AS {duckdb_type}) AS x) AS t", (value,)).fetchone()[0])
    assert on_pg == on_duckdb
    if pa.types.is_timestamp(arrow_type):
        assert on_pg[:2] == ["2024-01-01 12:00:00.000001" if arrow_type.tz is None else "2024-01-01 12:00:00.000005",
                             "2024-01-01 00:00:00" if arrow_type.tz is None else "2024-05-31 21:30:00"]
    if pa.types.is_floating(arrow_type):
        assert "e+" not in "".join(t for t in on_pg if t and t != "NaN" and abs(float(t)) < 1e16)
        assert on_pg[values.index(-0.0)] == "0"


def test_row_text_keeps_null_empty_and_field_boundaries_apart(pg):
    def text(*fields):
        values = ", ".join("NULL" if f is None else f"'{f}'" for f in fields)
        names = [f"c{i}" for i in range(len(fields))]
        row = row_text_sql("postgres", names)
        return pg.execute(f"SELECT {row} FROM (VALUES ({values})) AS t({', '.join(names)})").fetchone()[0]

    assert len({text(None, "x"), text("", "x"), text("N", "x")}) == 3
    assert text("ab", "c") != text("a", "bc")


def test_typed_row_text_skips_length_prefixes_of_plain_fields_and_stays_unambiguous(pg):
    types = [pa.int64(), pa.string(), pa.int64()]

    def text(*fields):
        values = ", ".join("NULL" if f is None else f"CAST('{f}' AS {'bigint' if i != 1 else 'text'})"
                           for i, f in enumerate(fields))
        row = row_text_sql("postgres", [f"CAST(c{i} AS text)" for i in range(3)], types)
        return pg.execute(f"SELECT {row} FROM (SELECT {values}) AS t(c0, c1, c2)").fetchone()[0]

    assert text(12, "a|b", 3) == "12|3:a|b3|"
    assert len({text(12, "", 3), text(1, "2", 3), text(None, "", 3), text(12, None, 3), text(12, "3|", None)}) == 5
