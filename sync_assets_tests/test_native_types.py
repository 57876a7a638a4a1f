"""Same-engine copies keep exact native types (asserted from the target's catalog, not only the
values), and the cross-engine mapping of the types with no counterpart (docs/types.md)."""

from __future__ import annotations

from sync_assets_tests.test_modes import only_pairs, pair, sync  # noqa: F401  (fixtures: every source/target pair)
from sync_assets_tests.test_value_edges import assert_duckdb_rows_refused

POSTGRES_COLUMNS = {
    "k": "integer", "i2": "smallint", "i8": "bigint", "r": "real", "f": "double precision",
    "n": "numeric(12,2)", "n38": "numeric(38,10)", "nwide": "numeric(60,20)", "nany": "numeric",
    "vc": "character varying(40)", "ch": "character(5)", "t": "text", "b": "boolean", "d": "date",
    "ts": "timestamp without time zone", "ts0": "timestamp(0) without time zone",
    "tz": "timestamp with time zone", "tm": "time without time zone", "ttz": "time with time zone",
    "iv": "interval", "u": "uuid", "by": "bytea", "j": "json", "jb": "jsonb", "x": "xml", "ip": "inet",
    "cidr": "cidr", "mac": "macaddr", "money": "money", "bits": "bit(3)", "ia": "integer[]", "ta": "text[]",
    "rng": "int4range", "mood": "{schema}.mood",
}
POSTGRES_VALUES = {
    "k": "1",
    "i2": "-2",
    "i8": "9000000000",
    "r": "1.5",
    "f": "2.25",
    "n": "12.34",
    "n38": "1.0000000001",
    "nwide": "1234567890123456789012345678901234567890.5",
    "nany": "3.14159",
    "vc": "varchar",
    "ch": "ab",
    "t": "text",
    "b": "true",
    "d": "2024-02-29",
    "ts": "2024-01-01 12:00:00.123456",
    "ts0": "2024-01-01 12:00:01",
    "tz": "2024-01-01 12:00:00+00",
    "tm": "23:59:59.999999",
    "ttz": "12:00:00+02",
    "iv": "1 year 2 mons 3 days 04:05:06",
    "u": "00000000-0000-0000-0000-000000000001",
    "by": "\\x00ff",
    "j": '{"a": [1, 2]}',
    "jb": '{"a": 1}',
    "x": "<a>1</a>",
    "ip": "192.168.0.1/24",
    "cidr": "10.0.0.0/8",
    "mac": "08:00:2b:01:02:03",
    "money": "$1.50",
    "bits": "101",
    "ia": "{1,2}",
    "ta": "{a,b}",
    "rng": "[1,5)",
    "mood": "happy",
}


def _pg_types(side, table: str) -> dict[str, str]:
    return dict(side.query(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [side.qualified(table)]))


@only_pairs(("postgres", "postgres"))  # same-engine PostgreSQL copy
def test_postgres_to_postgres_keeps_every_native_type(pair, sync):
    source, target = pair
    source.execute(f"CREATE TYPE {source.schema}.mood AS ENUM ('sad', 'happy')")
    target.execute(f"CREATE TYPE {target.schema}.mood AS ENUM ('sad', 'happy')")
    columns = {name: t.format(schema=source.schema) for name, t in POSTGRES_COLUMNS.items()}
    source.execute(f'CREATE TABLE {source.qualified("wide")} ('
                   + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ", PRIMARY KEY (k))")
    source.execute(f'INSERT INTO {source.qualified("wide")} ({", ".join(columns)}) VALUES ('
                   + ", ".join(f"%s::{t}" for t in columns.values()) + ")", list(POSTGRES_VALUES.values()))
    for _run in range(2):  # a new target, then the native COPY into an existing one
        sync({"primary_key": "k"}, stream="wide")
        expected = {c: (t.replace(source.schema, target.schema) if c == "mood" else t) for c, t in columns.items()}
        assert _pg_types(target, "wide") == expected
        text = ", ".join(f'"{c}"::text' for c in columns)
        assert target.query(f'SELECT {text} FROM {target.qualified("wide")}') == source.query(
            f'SELECT {text} FROM {source.qualified("wide")}')


DUCKDB_COLUMNS = {
    "k": "INTEGER", "i1": "TINYINT", "i2": "SMALLINT", "i8": "BIGINT", "h": "HUGEINT", "ui": "UINTEGER",
    "ub": "UBIGINT", "fl": "FLOAT", "db": "DOUBLE", "dec": "DECIMAL(12,2)", "dec38": "DECIMAL(38,10)",
    "v": "VARCHAR", "bo": "BOOLEAN", "d": "DATE", "ts": "TIMESTAMP", "ts_s": "TIMESTAMP_S",
    "ts_ms": "TIMESTAMP_MS", "ts_ns": "TIMESTAMP_NS", "tz": "TIMESTAMP WITH TIME ZONE", "tm": "TIME",
    "iv": "INTERVAL", "u": "UUID", "bl": "BLOB", "j": "JSON", "li": "INTEGER[]", "st": "STRUCT(a INTEGER, b VARCHAR)",
    "m": "MAP(VARCHAR, INTEGER)", "ttz": "TIME WITH TIME ZONE", "bits": "BIT", "big": "BIGNUM",
}
DUCKDB_VALUES = (
    "1, -1, -2, 9000000000, 170141183460469231731687303715884105727, 4000000000, 18000000000000000000, "
    "1.5, 2.25, 12.34, 1.0000000001, 'v', true, DATE '2024-02-29', TIMESTAMP '2024-01-01 12:00:00.123456', "
    "TIMESTAMP_S '2024-01-01 12:00:01', TIMESTAMP_MS '2024-01-01 12:00:01.123', "
    "TIMESTAMP_NS '2024-01-01 12:00:01.123456789', TIMESTAMPTZ '2024-01-01 12:00:00+00', TIME '23:59:59.999999', "
    "INTERVAL '1 year 2 months 3 days 04:05:06', '00000000-0000-0000-0000-000000000001', '\\x00\\xff'::BLOB, "
    "'{\"a\": 1}', [1, 2], {'a': 1, 'b': 'x'}, MAP {'x': 1}, "
    "TIMETZ '12:00:00+02', '101'::BIT, 123456789012345678901234567890123456789012345::BIGNUM"
)


@only_pairs(("duckdb", "duckdb"))  # same-engine DuckDB copy
def test_duckdb_to_duckdb_keeps_every_native_type(pair, sync):
    source, target = pair
    source.ensure_schema()
    source.execute(f'CREATE TABLE {source.qualified("wide")} ('
                   + ", ".join(f'"{c}" {t}' for c, t in DUCKDB_COLUMNS.items()) + ")")
    source.execute(f'INSERT INTO {source.qualified("wide")} VALUES ({DUCKDB_VALUES})')
    for _run in range(2):
        sync({"primary_key": "k"}, stream="wide")
        types = target.query("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'wide' ORDER BY ordinal_position")
        assert dict(types) == DUCKDB_COLUMNS
        text = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in DUCKDB_COLUMNS)
        assert target.query(f'SELECT {text} FROM {target.qualified("wide")}') == source.query(
            f'SELECT {text} FROM {source.qualified("wide")}')


@only_pairs(("postgres", "duckdb"))  # PostgreSQL -> DuckDB mapping
def test_postgres_types_without_a_duckdb_counterpart_land_as_documented(pair, sync):
    """docs/types.md: the PostgreSQL -> DuckDB column of the table, and char(n) without its padding."""
    source, target = pair
    source.execute(f"CREATE TYPE {source.schema}.mood AS ENUM ('sad', 'happy')")
    names = ["k", "ch", "iv", "ttz", "ip", "x", "nany", "nwide", "money", "mood", "ts0", "ia"]
    columns = {c: POSTGRES_COLUMNS[c].format(schema=source.schema) for c in names}
    source.execute(f'CREATE TABLE {source.qualified("wide")} ('
                   + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ", PRIMARY KEY (k))")
    source.execute(f'INSERT INTO {source.qualified("wide")} VALUES ('
                   + ", ".join(f"%s::{t}" for t in columns.values()) + ")", [POSTGRES_VALUES[c] for c in names])
    sync({"primary_key": "k"}, stream="wide")
    types = dict(target.query("SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_name = 'wide' ORDER BY ordinal_position"))
    assert types == {"k": "INTEGER", "ch": "VARCHAR", "iv": "VARCHAR", "ttz": "VARCHAR", "ip": "VARCHAR",
                     "x": "VARCHAR", "nany": "VARCHAR", "nwide": "VARCHAR", "money": "VARCHAR", "mood": "VARCHAR",
                     "ts0": "TIMESTAMP", "ia": "INTEGER[]"}
    text = ", ".join(f'"{c}"::text' for c in names[1:-1])  # arrays print differently
    assert target.query(f'SELECT {text.replace("::text", "::VARCHAR")} FROM {target.qualified("wide")}') == \
        source.query(f'SELECT {text} FROM {source.qualified("wide")}')
    assert target.query(f'SELECT ch FROM {target.qualified("wide")}') == [("ab",)]


@only_pairs(("duckdb", "postgres"))  # DuckDB -> PostgreSQL mapping
def test_duckdb_types_land_in_postgres_as_documented(pair, sync):
    """docs/types.md: the DuckDB -> PostgreSQL column of the table."""
    source, target = pair
    source.ensure_schema()
    names = ["k", "i1", "h", "ui", "ub", "dec", "v", "ts_s", "ts_ms", "ts_ns", "tz", "tm", "iv", "u", "bl", "j", "li",
             "ttz", "bits", "big"]
    source.execute(f'CREATE TABLE {source.qualified("wide")} ('
                   + ", ".join(f'"{c}" {t}' for c, t in DUCKDB_COLUMNS.items()) + ")")
    source.execute(f'INSERT INTO {source.qualified("wide")} VALUES ({DUCKDB_VALUES.replace(".123456789", ".123456")})')
    sync({"primary_key": "k", "columns": names}, stream="wide")
    assert _pg_types(target, "wide") == {
        "k": "integer", "i1": "smallint", "h": "numeric", "ui": "bigint", "ub": "numeric(20,0)",
        "dec": "numeric(12,2)", "v": "text", "ts_s": "timestamp without time zone",
        "ts_ms": "timestamp without time zone", "ts_ns": "timestamp without time zone",
        "tz": "timestamp with time zone", "tm": "time without time zone", "iv": "interval", "u": "uuid",
        "bl": "bytea", "j": "jsonb", "li": "integer[]", "ttz": "text", "bits": "text", "big": "numeric"}
    assert target.query(f'SELECT h::text, ts_ms::text, ts_ns::text, iv::text, ttz, bits, big::text '
                        f'FROM {target.qualified("wide")}') == [
        ("170141183460469231731687303715884105727", "2024-01-01 12:00:01.123", "2024-01-01 12:00:01.123456",
         "1 year 2 mons 3 days 04:05:06", "12:00:00+02", "101", "123456789012345678901234567890123456789012345")]


@only_pairs(("duckdb", "postgres"))  # DuckDB -> PostgreSQL mapping
def test_duckdb_nested_types_into_postgres_are_refused_naming_the_column(pair, sync):
    assert_duckdb_rows_refused(pair, sync, "nested", "k INTEGER, st STRUCT(a INTEGER)", "(1, {'a': 1})",
                               r"stream .*nested.*column 'st' is struct.*no PostgreSQL type")


@only_pairs(("postgres", "postgres"))
def test_a_wider_existing_target_column_takes_arrow_not_the_sources_binary_copy(pair, sync):
    """A target column wider than the source's (text for varchar(40)) makes staging take the Arrow
    path for every column: binary COPY bytes of a jsonb would land in a text staging column with
    jsonb's version byte in front (found with dead letters; fixed in ``SqlConnector._staging_types``)."""
    from datetime import timedelta

    from sync_assets_tests.engines import BASE_TIME, DDL, make_row

    source, target = pair
    source.create_test_table([make_row(i, updated=BASE_TIME + timedelta(seconds=i)) for i in range(1, 11)])
    target.ensure_schema()
    target.execute(DDL["postgres"].replace('"Name" varchar(40)', '"Name" text').format(t=target.qualified()))
    target.insert([make_row(1, updated=BASE_TIME + timedelta(seconds=1))])
    result = sync({"mode": "incremental", "primary_key": "Id", "update_key": "updatedAt"})
    assert result.plan.strategy == "incremental" and not result.native_path
    assert target.rows() == source.rows()
