"""Which source columns fit an existing target column (``fits_in``), and the writes that must
refuse the ones that do not.

The unit tests walk every branch of ``fits_in`` with both outcomes, and the declared limits
(lengths, fractional-second digits) as the PostgreSQL and SQL Server catalogs spell them (there
is no SQL Server here, so its type strings go through the same parser its catalog reads use).
The end-to-end tests run incremental syncs into an existing, narrower target on the real
PostgreSQL and DuckDB: each is refused with the table and column named, and the target keeps
exactly what it had (``abcdefghij`` must never land as ``abcde``, ``12:00:00.987654`` never as
``12:00:01``).
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from sync_assets.connectors.mssql import types as mssql_types
from sync_assets.connectors.postgres.types import declared_limits
from sync_assets.errors import SchemaMismatchError
from sync_assets.sync.engine import sync_table
from sync_assets.types.arrow import fits_in, make_field
from sync_assets_tests.conftest import connectors
from sync_assets_tests.engines import Side


def f(arrow_type: pa.DataType, **limits) -> pa.Field:
    return make_field("c", arrow_type, **limits)


def pg(pg_type: str) -> pa.Field:
    """A field as the PostgreSQL catalog describes a column of ``pg_type``."""
    from sync_assets.connectors.postgres.types import arrow_type_for

    arrow_type, logical, _ = arrow_type_for(pg_type)
    length, digits = declared_limits(pg_type)
    return make_field("c", arrow_type, native_kind="postgres", native_type=pg_type, logical=logical,
                      max_length=length, fraction_digits=digits)


def mssql(type_text: str) -> pa.Field:
    """A field as the SQL Server catalog describes a column of ``type_text``."""
    return mssql_types.arrow_field(mssql_types.column_from_type_text("c", type_text))


DUCKDB_VARCHAR = make_field("c", pa.string(), native_kind="duckdb", native_type="VARCHAR")

FITS = [
    # same type
    (f(pa.int32()), f(pa.int32())),
    # integers widen, unsigned into a wider signed type
    (f(pa.int16()), f(pa.int64())), (f(pa.uint32()), f(pa.int64())), (f(pa.uint8()), f(pa.uint16())),
    # integers into decimals with enough integer digits
    (f(pa.int32()), f(pa.decimal128(12, 2))), (f(pa.int64()), f(pa.decimal128(22, 2))),
    # integers and decimals into an unconstrained decimal (PostgreSQL numeric)
    (f(pa.int64()), pg("numeric")), (f(pa.decimal128(12, 2)), pg("numeric")),
    (f(pa.float32()), f(pa.float64())),
    (f(pa.decimal128(10, 2)), f(pa.decimal128(12, 4))),
    # text: bounded into longer or unbounded, unbounded into unbounded
    (pg("character varying(5)"), pg("character varying(30)")), (pg("character varying(30)"), pg("text")),
    (pg("character(3)"), pg("character varying(3)")), (f(pa.string()), f(pa.large_string())),
    (f(pa.binary()), f(pa.large_binary())), (f(pa.binary(4)), f(pa.binary(), max_length=8)),
    (f(pa.timestamp("us", tz="UTC")), f(pa.timestamp("ns", tz="UTC"))),
    (pg("timestamp(3) without time zone"), pg("timestamp without time zone")),
    (f(pa.time32("ms")), f(pa.time64("us"))), (pg("time(0) without time zone"), pg("time(2) without time zone")),
    (f(pa.date32()), f(pa.date64())),
    (f(pa.list_(pa.int32())), f(pa.list_(pa.int64()))),
    (pg("character varying(5)[]"), pg("character varying(9)[]")),
    # across engines: a PostgreSQL varchar into DuckDB's unbounded VARCHAR
    (pg("character varying(30)"), DUCKDB_VARCHAR),
]

REFUSED = [
    (f(pa.int64()), f(pa.int32())), (f(pa.uint32()), f(pa.int32())), (f(pa.uint8()), f(pa.int8())),
    (f(pa.int64()), f(pa.decimal128(12, 2))), (f(pa.int32()), f(pa.decimal128(9, 0))),
    (pg("text"), pg("numeric(12,2)")),
    (f(pa.float64()), f(pa.float32())),
    (f(pa.decimal128(12, 4)), f(pa.decimal128(12, 2))), (f(pa.decimal128(12, 2)), f(pa.decimal128(11, 2))),
    # text: longer into shorter, unbounded into bounded (DuckDB VARCHAR into varchar(5))
    (pg("character varying(30)"), pg("character varying(5)")), (pg("text"), pg("character varying(5)")),
    (DUCKDB_VARCHAR, pg("character varying(5)")), (pg("character varying(9)"), pg("character(8)")),
    (f(pa.binary()), f(pa.binary(), max_length=8)), (f(pa.binary(16)), f(pa.binary(), max_length=8)),
    (f(pa.binary()), f(pa.string())),
    (f(pa.timestamp("us")), f(pa.timestamp("us", tz="UTC"))), (f(pa.timestamp("ns")), f(pa.timestamp("us"))),
    (pg("timestamp without time zone"), pg("timestamp(0) without time zone")),
    (pg("timestamp(6) with time zone"), pg("timestamp(3) with time zone")),
    (f(pa.time64("ns")), f(pa.time64("us"))), (pg("time(3) without time zone"), pg("time(2) without time zone")),
    (f(pa.date32()), f(pa.timestamp("us"))),
    (f(pa.list_(pa.int64())), f(pa.list_(pa.int32()))),
    (pg("character varying(9)[]"), pg("character varying(5)[]")),
    (f(pa.int32()), f(pa.string())),
]


@pytest.mark.parametrize(
    "source, target",
    FITS,
    ids=lambda x: x.metadata and x.metadata.get(b"sync_assets.native_type", b"").decode() or str(x.type),
)
def test_fits(source, target):
    assert fits_in(source, target)


@pytest.mark.parametrize(
    "source, target",
    REFUSED,
    ids=lambda x: x.metadata and x.metadata.get(b"sync_assets.native_type", b"").decode() or str(x.type),
)
def test_refused(source, target):
    assert not fits_in(source, target)


@pytest.mark.parametrize("source, target, fits", [
    ("varchar(5)", "varchar(30)", True), ("varchar(30)", "varchar(5)", False),
    ("nvarchar(40)", "nvarchar(max)", True), ("nvarchar(max)", "nvarchar(4000)", False),
    ("varchar(max)", "varchar(max)", True), ("nchar(10)", "nvarchar(10)", True), ("nchar(10)", "nchar(9)", False),
    ("datetime2(3)", "datetime2(7)", True), ("datetime2(7)", "datetime2(3)", False),
    ("datetime2(6)", "datetime2(6)", True), ("datetime2", "datetime2(6)", False),
    ("datetimeoffset(7)", "datetimeoffset(3)", False), ("time(7)", "time(6)", False), ("time(3)", "time(7)", True),
    ("decimal(12,2)", "decimal(14,4)", True), ("decimal(12,2)", "decimal(10,2)", False),
    ("decimal(12,4)", "decimal(12,2)", False), ("numeric(18,0)", "bigint", False),
    ("varbinary(10)", "varbinary(5)", False), ("varbinary(5)", "varbinary(max)", True),
    ("binary(4)", "varbinary(8)", True), ("varbinary(max)", "varbinary(8000)", False),
])
def test_sql_server_type_strings(source, target, fits):
    assert fits_in(mssql(source), mssql(target)) is fits


def test_limits_compare_across_engines():
    """Lengths and digits are compared in the same terms whichever engine declared them."""
    assert fits_in(pg("character varying(30)"), mssql("nvarchar(30)"))
    assert not fits_in(pg("character varying(31)"), mssql("nvarchar(30)"))
    assert not fits_in(pg("text"), mssql("nvarchar(4000)"))
    assert fits_in(pg("text"), mssql("nvarchar(max)"))
    assert fits_in(mssql("nvarchar(30)"), pg("character varying(30)"))
    assert not fits_in(mssql("nvarchar(max)"), pg("character varying(30)"))
    assert fits_in(mssql("datetime2(6)"), pg("timestamp without time zone"))
    assert not fits_in(mssql("datetime2(7)"), pg("timestamp without time zone"))
    assert not fits_in(pg("timestamp without time zone"), mssql("datetime2(3)"))
    assert not fits_in(DUCKDB_VARCHAR, mssql("varchar(100)"))


def test_postgres_declared_limits():
    assert declared_limits("character varying(30)") == (30, None)
    assert declared_limits("character(5)") == (5, None)
    assert declared_limits("character varying") == (None, None)
    assert declared_limits("character varying(12)[]") == (12, None)
    assert declared_limits("timestamp(0) without time zone") == (None, 0)
    assert declared_limits("time(3) with time zone") == (None, 3)
    assert declared_limits("timestamp without time zone") == (None, None)
    assert declared_limits("text") == (None, None)


# -- end to end: an incremental run into an existing, narrower target ------------------------

def _side(kind: str, role: str, request, tmp_path) -> Side:
    if kind == "postgres":
        return Side("postgres", request.getfixturevalue("schema_name")(role),
                    pg_conninfo=request.getfixturevalue("pg_conninfo"))
    return Side("duckdb", role, duckdb_path=tmp_path / f"{role}.duckdb")


def _incremental(source: Side, target: Side, write_project):
    project = write_project({
        "connections": {"src": source.connection_spec("source"), "tgt": target.connection_spec("target")},
        "source": "src", "target": "tgt",
        "streams": {f'"{source.schema}"."narrow"': {
            "mode": "incremental", "primary_key": "id", "update_key": "id",
            "object": f'"{target.schema}"."narrow"'}},
    })
    table = project.tables[0]
    return sync_table(table, *connectors(project, table))


def _prepare(source: Side, target: Side, source_type: str, target_type: str, value) -> None:
    """A source row 1 holding ``value``, and an existing target (row 0) whose column is ``target_type``."""
    for side, column_type in ((source, source_type), (target, target_type)):
        side.ensure_schema()
        side.execute(f'CREATE TABLE {side.qualified("narrow")} (id integer PRIMARY KEY, v {column_type})')
    target.execute(f'INSERT INTO {target.qualified("narrow")} VALUES (0, NULL)')
    source.execute(f'INSERT INTO {source.qualified("narrow")} VALUES (1, %s)', [value])


def _no_staging_left(side: Side) -> bool:
    return not side.query("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                          "AND table_name LIKE %s", [side.schema, "%__sync_staging%"])


LOSSY = [
    # source kind, source type, target kind, target type, a value the target would change
    ("postgres", "varchar(30)", "postgres", "varchar(5)", "abcdefghij"),
    ("postgres", "text", "postgres", "char(5)", "abcdefghij"),
    ("postgres", "timestamp(6)", "postgres", "timestamp(0)", datetime(2024, 1, 1, 12, 0, 0, 987654)),
    ("postgres", "time(6)", "postgres", "time(2)", "12:00:00.987654"),
    ("postgres", "varchar(30)[]", "postgres", "varchar(5)[]", ["abcdefghij"]),
    ("duckdb", "VARCHAR", "postgres", "varchar(5)", "abcdefghij"),
    ("duckdb", "TIMESTAMP", "postgres", "timestamp(3)", datetime(2024, 1, 1, 12, 0, 0, 987654)),
    ("postgres", "timestamp(6)", "duckdb", "TIMESTAMP_S", datetime(2024, 1, 1, 12, 0, 0, 987654)),
    ("postgres", "numeric(12,4)", "duckdb", "DECIMAL(12,2)", "1.2345"),
    ("duckdb", "DECIMAL(12,4)", "duckdb", "DECIMAL(12,2)", "1.2345"),
]


@pytest.mark.parametrize("source_kind, source_type, target_kind, target_type, value", LOSSY,
                         ids=[f"{s}:{st}-into-{t}:{tt}" for s, st, t, tt, _ in LOSSY])
def test_lossy_write_is_refused_and_the_target_is_unchanged(
        request, tmp_path, write_project, source_kind, source_type, target_kind, target_type, value):
    source, target = _side(source_kind, "src", request, tmp_path), _side(target_kind, "tgt", request, tmp_path)
    _prepare(source, target, source_type, target_type, value)
    with pytest.raises(
        SchemaMismatchError, match=r"table .*narrow: column 'v' is .* in the source but .* in the target"
    ):
        _incremental(source, target, write_project)
    assert target.query(f'SELECT id, v FROM {target.qualified("narrow")}') == [(0, None)]
    assert _no_staging_left(target)


FITTING = [
    ("postgres", "varchar(5)", "postgres", "varchar(30)", "abcde"),
    ("postgres", "varchar(30)", "duckdb", "VARCHAR", "abcdefghij"),
    ("postgres", "timestamp(0)", "postgres", "timestamp(3)", datetime(2024, 1, 1, 12, 0, 1)),
    ("postgres", "timestamp(3)", "duckdb", "TIMESTAMP", datetime(2024, 1, 1, 12, 0, 0, 987000)),
    ("duckdb", "TIMESTAMP_MS", "postgres", "timestamp(3)", datetime(2024, 1, 1, 12, 0, 0, 987000)),
    ("postgres", "integer", "postgres", "numeric", 7),
]


@pytest.mark.parametrize("source_kind, source_type, target_kind, target_type, value", FITTING,
                         ids=[f"{s}:{st}-into-{t}:{tt}" for s, st, t, tt, _ in FITTING])
def test_fitting_write_lands_exactly(request, tmp_path, write_project,
                                     source_kind, source_type, target_kind, target_type, value):
    source, target = _side(source_kind, "src", request, tmp_path), _side(target_kind, "tgt", request, tmp_path)
    _prepare(source, target, source_type, target_type, value)
    result = _incremental(source, target, write_project)
    assert result.plan.strategy == "incremental" and result.rows_written == 1
    landed = target.query(f'SELECT v FROM {target.qualified("narrow")} WHERE id = 1')[0][0]
    assert landed == value or str(landed) == str(value)
