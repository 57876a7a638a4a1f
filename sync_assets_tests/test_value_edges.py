"""Edge values between real engines: infinities, timestamps and dates beyond a target's range,
nanoseconds, NaN and very wide numerics. Each either lands exactly or fails with one clear
``DataError`` naming the stream, the column and the row key; nothing changes silently.
"""

from __future__ import annotations

import pytest

from sync_assets.errors import DataError
from sync_assets_tests.test_modes import only_pairs, pair, sync  # noqa: F401  (fixtures: every source/target pair)

INFINITIES = [(1, "infinity"), (2, "-infinity"), (3, "2024-05-06 07:08:09.123456")]


def _as_text(side, table: str, columns: str) -> list[tuple]:
    cast = ", ".join(f"CAST({c} AS VARCHAR)" for c in columns.split(", "))
    return side.query(f"SELECT k, {cast} FROM {side.qualified(table)} ORDER BY k")


def test_infinite_dates_and_timestamps_land_as_infinity_or_fail_naming_the_key(pair, sync):
    """PostgreSQL's and DuckDB's infinities: kept where the target has them, else refused by key."""
    source, target = pair
    source.ensure_schema()
    tz = "timestamptz"
    source.execute(f'CREATE TABLE {source.qualified("edges")} (k integer PRIMARY KEY, ts timestamp, tz {tz}, d date)')
    source.execute(f'INSERT INTO {source.qualified("edges")} VALUES (%s, %s, %s, %s)',
                   [(k, v, v if v.endswith("inity") else v + "+00", v[:10] if v[0] == "2" else v)
                    for k, v in INFINITIES], many=True)
    if target.kind == "postgres" and source.kind == "duckdb":
        with pytest.raises(DataError, match=r"stream .*edges.*column 'ts'.*infinity.*k=1"):
            sync({"primary_key": "k"}, stream="edges")
        return
    sync({"primary_key": "k"}, stream="edges")
    rows = _as_text(target, "edges", "ts, d")
    assert [(k, ts, d) for k, ts, d in rows] == [
        (1, "infinity", "infinity"), (2, "-infinity", "-infinity"), (3, "2024-05-06 07:08:09.123456", "2024-05-06")]
    assert [r[1] for r in _as_text(target, "edges", "tz")][:2] == ["infinity", "-infinity"]


@only_pairs(("postgres", "duckdb"))  # only PostgreSQL holds such timestamps; PG->PG passes its bytes through
def test_postgres_timestamps_beyond_any_arrow_range_are_refused_by_key(pair, sync):
    """PostgreSQL keeps timestamps to 294276 AD; no int64 of microseconds since 1970 reaches that:
    the fast read used to wrap them into 290279 BC."""
    source, target = pair
    source.execute(f'CREATE TABLE {source.qualified("far")} (k integer PRIMARY KEY, ts timestamp)')
    source.execute(f'INSERT INTO {source.qualified("far")} VALUES (1, now()), (7, %s)',
                   ["294276-12-31 23:59:59.999999"])
    with pytest.raises(DataError, match=r"stream .*far.*column 'ts'.*292277.*k=7"):
        sync({"primary_key": "k"}, stream="far")


@only_pairs(("duckdb", "postgres"))  # TIMESTAMP_NS is DuckDB's
def test_duckdb_nanoseconds_into_postgres_are_refused_unless_whole_microseconds(pair, sync):
    source, target = pair
    source.ensure_schema()
    source.execute(f'CREATE TABLE {source.qualified("ns")} (k integer PRIMARY KEY, t TIMESTAMP_NS)')
    source.execute(f"INSERT INTO {source.qualified('ns')} VALUES (1, '2024-01-01 00:00:00.123456'), "
                   "(2, '2024-01-01 00:00:00.000001')")
    sync({"primary_key": "k"}, stream="ns")
    assert _as_text(target, "ns", "t") == [(1, "2024-01-01 00:00:00.123456"), (2, "2024-01-01 00:00:00.000001")]
    source.execute(f"INSERT INTO {source.qualified('ns')} VALUES (3, '2024-01-01 00:00:00.123456789')")
    with pytest.raises(DataError, match=r"stream .*ns.*column 't'.*nanoseconds.*k=3"):
        sync({"primary_key": "k"}, stream="ns")
    assert len(target.query(f"SELECT * FROM {target.qualified('ns')}")) == 2


@only_pairs(("duckdb", "postgres"))  # DuckDB's dates reach 5881580 AD, PostgreSQL's 5874897 AD
def test_duckdb_dates_beyond_postgres_range_are_refused_by_key(pair, sync):
    assert_duckdb_rows_refused(
        pair,
        sync,
        "late",
        "k integer PRIMARY KEY, d DATE",
        "(1, '2024-01-01'), (2, '5881580-01-01')",
        r"stream .*late.*column 'd'.*outside PostgreSQL's range.*k=2",
    )


def assert_duckdb_rows_refused(pair, sync, table: str, columns: str, values: str, message: str) -> None:
    """A DuckDB source table of ``columns`` holding ``values`` is refused with ``message``."""
    source, _ = pair
    source.ensure_schema()
    source.execute(f"CREATE TABLE {source.qualified(table)} ({columns})")
    source.execute(f"INSERT INTO {source.qualified(table)} VALUES {values}")
    with pytest.raises(DataError, match=message):
        sync({"primary_key": "k"}, stream=table)


@pytest.mark.parametrize("declared", ["numeric(10,2)", "numeric(38,10)"])
@only_pairs(("postgres", "postgres"), ("postgres", "duckdb"))  # DuckDB's DECIMAL has no NaN
def test_postgres_numeric_nan_is_refused_naming_column_and_key(pair, sync, declared):
    """A DECIMAL has no NaN: the fast read (a scaled bigint, or a decimal cast) used to fail with
    ``cannot convert NaN to bigint`` and no column; PG->PG keeps NaN (the bytes pass through)."""
    source, target = pair
    source.execute(f'CREATE TABLE {source.qualified("nan")} (k integer PRIMARY KEY, ok integer, n {declared})')
    source.execute(f'INSERT INTO {source.qualified("nan")} VALUES (1, 1, 1.5), (4, 4, %s), (5, 5, NULL)', ["NaN"])
    if target.kind == "postgres":
        sync({"primary_key": "k"}, stream="nan")
        assert target.query(f'SELECT n::text FROM {target.qualified("nan")} WHERE k = 4') == [("NaN",)]
        return
    with pytest.raises(DataError, match=r"stream .*nan.*column 'n'.*NaN.*k=4"):
        sync({"primary_key": "k"}, stream="nan")


@only_pairs(("postgres", "postgres"), ("postgres", "duckdb"))  # DuckDB's DECIMAL stops at 38 digits
def test_postgres_numeric_beyond_38_digits_lands_exactly(pair, sync):
    """numeric(60,20) has no Arrow decimal128; it lands as exact text in DuckDB, as itself in PostgreSQL."""
    source, target = pair
    source.execute(f'CREATE TABLE {source.qualified("wide")} (k integer PRIMARY KEY, n numeric(60,20))')
    value = "1234567890123456789012345678901234567890.12345678901234567890"
    source.execute(f'INSERT INTO {source.qualified("wide")} VALUES (1, %s), (2, -0.5), (3, NULL)', [value])
    sync({"primary_key": "k"}, stream="wide")
    rows = _as_text(target, "wide", "n")
    assert rows == [(1, value), (2, "-0.50000000000000000000"), (3, None)]
    if target.kind == "postgres":
        assert target.query("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                            "WHERE attrelid = %s::regclass AND attname = 'n'",
                            [target.qualified("wide")]) == [("numeric(60,20)",)]


@only_pairs(("duckdb", "postgres"))  # DuckDB values into PostgreSQL
def test_nul_in_a_duckdb_string_fails_in_one_line_naming_column_and_key(pair, sync):
    """PostgreSQL text has no NUL; the driver used to fail with a bare encoding error."""
    source, target = pair
    source.ensure_schema()
    source.execute(f'CREATE TABLE {source.qualified("odd")} (k integer PRIMARY KEY, v VARCHAR)')
    source.execute(f"INSERT INTO {source.qualified('odd')} VALUES (1, NULL), (6, 'a' || chr(0) || 'b')")
    with pytest.raises(DataError, match=r"stream .*odd.*column 'v'.*NUL.*k=6") as failure:
        sync({"primary_key": "k"}, stream="odd")
    assert "\n" not in str(failure.value)


@only_pairs(("duckdb", "postgres"), ("duckdb", "duckdb"))  # DuckDB's integer types
def test_duckdb_39_digit_integers_copy_exactly(pair, sync):
    """HUGEINT and UHUGEINT reach 39 digits, past decimal128(38, 0) (DuckDB's Arrow export), which
    PostgreSQL's bulk load turned into an encoding error: they travel as exact text."""
    source, target = pair
    source.ensure_schema()
    source.execute(f'CREATE TABLE {source.qualified("wide")} (k integer PRIMARY KEY, h HUGEINT, u UHUGEINT)')
    source.execute(f"INSERT INTO {source.qualified('wide')} VALUES (1, NULL, NULL), "
                   "(2, 170141183460469231731687303715884105727, 340282366920938463463374607431768211455), "
                   "(3, -170141183460469231731687303715884105728, 0)")
    sync({"primary_key": "k"}, stream="wide")
    assert _as_text(target, "wide", "h, u") == [
        (1, None, None), (2, "170141183460469231731687303715884105727", "340282366920938463463374607431768211455"),
        (3, "-170141183460469231731687303715884105728", "0")]
    if target.kind == "duckdb":
        assert target.query("SELECT data_type FROM information_schema.columns WHERE table_name = 'wide' "
                            "ORDER BY ordinal_position") == [("INTEGER",), ("HUGEINT",), ("UHUGEINT",)]
