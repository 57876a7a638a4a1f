"""SQL Server type mapping and value conversion, fed with the values drivers really return.

pyodbc returns ``bytes`` for rowversion, ``Decimal`` for money, a 20-byte
SQL_SS_TIMESTAMPOFFSET_STRUCT for datetimeoffset (through the output converter), ``str`` for
GUIDs read as text, and ``CONVERT(varchar(27), datetime2(7), 121)`` text for the 7-digit
watermark. The Arrow side is what arrow-odbc fetches for the rewritten SELECT expressions.
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from sync_assets.connectors.mssql import types as t
from sync_assets.types.arrow import native_type


def col(name, type_name, max_length=0, precision=0, scale=0):
    return t.MssqlColumn(name, type_name, max_length, precision, scale)


MAPPING = [
    (col("a", "bit"), pa.bool_(), "bit"),
    (col("a", "tinyint"), pa.uint8(), "tinyint"),
    (col("a", "bigint"), pa.int64(), "bigint"),
    (col("a", "decimal", 17, 38, 6), pa.decimal128(38, 6), "decimal(38,6)"),
    (col("a", "money", 8, 19, 4), pa.decimal128(19, 4), "money"),
    (col("a", "smallmoney", 4, 10, 4), pa.decimal128(10, 4), "smallmoney"),
    (col("a", "real", 4, 24), pa.float32(), "real"),
    (col("a", "float", 8, 53), pa.float64(), "float"),
    (col("a", "date"), pa.date32(), "date"),
    (col("a", "time", 5, 16, 7), pa.time64("ns"), "time(7)"),
    (col("a", "datetime", 8, 23, 3), pa.timestamp("ms"), "datetime"),
    (col("a", "smalldatetime"), pa.timestamp("s"), "smalldatetime"),
    (col("a", "datetime2", 8, 27, 7), pa.timestamp("ns"), "datetime2(7)"),
    (col("a", "datetime2", 8, 26, 6), pa.timestamp("us"), "datetime2(6)"),
    (col("a", "datetimeoffset", 10, 34, 7), pa.timestamp("ns", tz="UTC"), "datetimeoffset(7)"),
    (col("a", "uniqueidentifier", 16), pa.uuid(), "uniqueidentifier"),
    (col("a", "nvarchar", -1), pa.string(), "nvarchar(max)"),
    (col("a", "nchar", 20), pa.string(), "nchar(10)"),
    (col("a", "varchar", 40), pa.string(), "varchar(40)"),
    (col("a", "ntext", 16), pa.string(), "ntext"),
    (col("a", "varbinary", -1), pa.binary(), "varbinary(max)"),
    (col("a", "binary", 16), pa.binary(16), "binary(16)"),
    (col("a", "image", 16), pa.binary(), "image"),
    (col("a", "timestamp", 8), pa.binary(8), "rowversion"),
    (col("a", "xml", -1), pa.string(), "xml"),
    (col("a", "sql_variant", 8016), pa.string(), "sql_variant"),
    (col("a", "geography", -1), pa.binary(), "geography"),
    (col("a", "hierarchyid", 892), pa.binary(), "hierarchyid"),
]


@pytest.mark.parametrize(("column", "arrow_type", "ddl"), MAPPING, ids=[m[2] for m in MAPPING])
def test_each_sql_server_type_maps_losslessly_and_back(column, arrow_type, ddl):
    field = t.arrow_field(column)
    assert field.type == arrow_type
    assert native_type(field, "mssql") == ddl
    assert t.ddl_type(field) == ("binary(8)" if ddl == "rowversion" else ddl)


def test_canonical_fields_from_other_databases_get_faithful_types():
    assert t.ddl_type(pa.field("a", pa.timestamp("us"))) == "datetime2(6)"
    assert t.ddl_type(pa.field("a", pa.timestamp("us", tz="UTC"))) == "datetimeoffset(6)"
    assert t.ddl_type(pa.field("a", pa.decimal128(12, 2))) == "decimal(12,2)"
    assert t.ddl_type(pa.field("a", pa.string())) == "nvarchar(max)"
    assert t.ddl_type(pa.field("a", pa.uuid())) == "uniqueidentifier"
    assert t.ddl_type(pa.field("a", pa.int8())) == "smallint"


def test_type_names_from_describe_first_result_set_parse():
    assert t.column_from_type_text("a", "nvarchar(40)").ddl == "nvarchar(40)"
    assert t.column_from_type_text("a", "decimal(12,2)").ddl == "decimal(12,2)"
    assert t.column_from_type_text("a", "datetime2(7)").ddl == "datetime2(7)"
    assert t.column_from_type_text("a", "varbinary(max)").ddl == "varbinary(max)"
    assert t.column_from_type_text("a", "float").ddl == "float"
    assert t.column_from_type_text("a", "geography").ddl == "geography"


def test_datetimeoffset_struct_from_pyodbc_keeps_offset_and_100ns():
    raw = struct.pack("<6hI2h", 2024, 3, 1, 23, 59, 58, 123456700, -5, -30)
    assert len(raw) == 20
    value = t.decode_datetimeoffset(raw)
    assert value.utcoffset() == -timedelta(hours=5, minutes=30)
    assert (value.year, value.microsecond, value.hundred_ns) == (2024, 123456, 7)
    assert value.isoformat() == "2024-03-01T23:59:58.1234567-05:30"
    plain = t.decode_datetimeoffset(struct.pack("<6hI2h", 2024, 3, 1, 0, 0, 0, 5000, 0, 0))
    assert type(plain) is datetime and plain.microsecond == 5 and plain.tzinfo == UTC
    assert t.decode_datetimeoffset(None) is None


def test_datetime2_text_keeps_the_seventh_digit_through_lookback():
    value = t.parse_datetime2_text("2024-03-01 12:00:00.1234567")
    assert isinstance(value, t.PreciseDatetime)
    back = value - timedelta(days=7)
    assert back.isoformat() == "2024-02-23T12:00:00.1234567"
    assert t.bind_text(back, "datetime2(7)") == "2024-02-23T12:00:00.1234567"
    assert t.parse_datetime2_text("2024-03-01 12:00:00.1234560") == datetime(2024, 3, 1, 12, 0, 0, 123456)
    assert t.parse_datetime2_text("2024-03-01 12:00:00") == datetime(2024, 3, 1, 12)
    assert t.parse_datetime2_text(None) is None


def test_watermarks_bind_as_text_in_each_column_type():
    assert t.bind_text(datetime(2024, 3, 1, 12, 0, 0, 997000), "datetime") == "2024-03-01T12:00:00.997"
    assert t.bind_text(datetime(2024, 3, 1, 12, 0, 0, 123456), "datetime2(7)") == "2024-03-01T12:00:00.123456"
    assert t.bind_text(b"\x00\x00\x00\x00\x00\x00\x07\xd1") == "0x00000000000007D1"
    assert t.bind_text(Decimal("12.3400")) == "12.3400"
    assert t.bind_text(uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")) == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert t.bind_text(None) is None


def test_clr_values_come_back_as_bytes():
    assert t.decode_clr_bytes(memoryview(b"\xe6\x10\x00\x00\x01\x0c")) == b"\xe6\x10\x00\x00\x01\x0c"


def test_fetched_columns_become_canonical():
    fields = [t.arrow_field(c) for c in (col("at", "datetimeoffset", 10, 34, 7), col("t", "time", 5, 16, 7),
                                          col("g", "uniqueidentifier", 16), col("rv", "timestamp", 8))]
    schema = pa.schema(fields)
    guid = uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")
    fetched = pa.RecordBatch.from_arrays([
        pa.array([1_709_337_600_123_456_700, None], pa.timestamp("ns")),
        pa.array([3_723_123_456_700, None], pa.int64()),
        pa.array([guid.bytes, None], pa.binary(16)),
        pa.array([b"\x00" * 7 + b"\x01", None], pa.binary(8)),
    ], schema=pa.schema([pa.field(f.name, t.fetch_type(f)) for f in fields]))
    batch = t.canonical_batch(fetched, schema)
    assert batch.schema.equals(schema, check_metadata=True)
    assert batch.column(2)[0].as_py() == guid and batch.column(3)[0].as_py() == b"\x00" * 7 + b"\x01"
    assert batch.column(0).type.tz == "UTC" and batch.column(0).null_count == 1
    assert batch.column(0).cast(pa.int64())[0].as_py() == 1_709_337_600_123_456_700
    assert batch.column(1).cast(pa.int64())[0].as_py() == 3_723_123_456_700


def test_load_arrays_stage_times_as_seven_digit_text_and_uuids_as_bytes():
    ts = pa.array([1_709_337_600_123_456_700, None], pa.timestamp("ns"))
    assert t.to_load_array(ts, pa.field("a", ts.type)).to_pylist() == ["2024-03-02T00:00:00.1234567", None]
    utc = ts.cast(pa.timestamp("ns", tz="UTC"))
    assert t.to_load_array(utc, pa.field("a", utc.type))[0].as_py() == "2024-03-02T00:00:00.1234567+00:00"
    micros = pa.array([1_709_337_600_123_456], pa.timestamp("us"))
    assert t.to_load_array(micros, pa.field("a", micros.type))[0].as_py() == "2024-03-02T00:00:00.1234560"
    times = pa.array([3_723_123_456_700], pa.time64("ns"))
    assert t.to_load_array(times, pa.field("a", times.type))[0].as_py() == "01:02:03.1234567"
    guid = uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")
    uuids = pa.array([guid.bytes], pa.binary(16)).cast(pa.uuid())
    assert t.to_load_array(uuids, pa.field("a", pa.uuid())).to_pylist() == [guid.bytes]
    assert t.load_type(pa.field("a", pa.uuid())) == "binary(16)"
    assert t.cast_from_staging("[g]", "uniqueidentifier") == (
        "CAST(STUFF(STUFF(STUFF(STUFF(CONVERT(char(32), [g], 2), 21, 0, '-'), 17, 0, '-'), 13, 0, '-'), 9, 0, '-') "
        "AS uniqueidentifier)")


def test_uuid_hex_rebuild_positions_match_the_canonical_text():
    """The STUFF positions in cast_from_staging, replayed in Python on the hex of a known GUID."""
    guid = uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")
    text = guid.bytes.hex().upper()
    for position in (21, 17, 13, 9):
        text = text[:position - 1] + "-" + text[position - 1:]
    assert text == str(guid).upper()
