"""SQL Server types: the mapping to and from canonical Arrow types, and the value conversions.

Reading: every SQL Server column becomes a canonical Arrow field that remembers its exact T-SQL
type (``datetime2(7)``, ``money``, ``nvarchar(40)``). A few types cannot be fetched losslessly as
they are, so they are rewritten in the SELECT and converted back in Arrow, column by column
(vectorised, no Python object per value):

- ``datetimeoffset(n)``: ``SWITCHOFFSET(.., '+00:00')`` then ``datetime2(n)``; Arrow
  ``timestamp(tz=UTC)`` keeps the instant (the original offset is not kept).
- ``time(n)``: nanoseconds since midnight (``DATEDIFF_BIG``), then Arrow ``time64[ns]``.
- ``uniqueidentifier``: its canonical text as 16 bytes in RFC 4122 order, then Arrow ``uuid``.
- ``geography``/``geometry``/``hierarchyid``: SQL Server's own serialisation as bytes (lossless,
  SRID included; a SQL Server target casts it back). ``xml`` and ``sql_variant``: text.
- ``rowversion``: ``binary(8)`` (a target never gets a rowversion column: it cannot be written).

Writing: the bulk path binds Arrow columns; date/time columns are staged as ISO text with 7
fractional digits and cast in T-SQL (binding a nanosecond timestamp makes the Microsoft driver
refuse the scale), and ``uuid`` is staged as 16 bytes and rebuilt from its hex text.

Control queries through pyodbc need output converters: pyodbc raises on ``datetimeoffset``
(ODBC type -155) and on CLR types (-151) without them.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.types.arrow import logical_type, make_field, native_type, simple_type_name

KIND = "mssql"

SQL_SS_TIMESTAMPOFFSET = -155
SQL_SS_UDT = -151
CLR_TYPES = frozenset({"geography", "geometry", "hierarchyid"})
LOGICAL_CLR = "mssql_clr"


@dataclass(frozen=True)
class MssqlColumn:
    """One column as the catalog describes it (``sys.columns`` / ``dm_exec_describe_first_result_set``)."""

    name: str
    type_name: str
    max_length: int
    precision: int
    scale: int
    nullable: bool = True

    @property
    def ddl(self) -> str:
        """The type as written in DDL: ``nvarchar(40)``, ``decimal(12,2)``, ``datetime2(7)``."""
        t = self.type_name.lower()
        if t in ("varchar", "char", "varbinary", "binary"):
            return f"{t}({'max' if self.max_length == -1 else self.max_length})"
        if t in ("nvarchar", "nchar"):
            return f"{t}({'max' if self.max_length == -1 else self.max_length // 2})"
        if t in ("decimal", "numeric"):
            return f"{t}({self.precision},{self.scale})"
        if t in ("datetime2", "datetimeoffset", "time"):
            return f"{t}({self.scale})"
        if t == "float":
            return "real" if self.precision <= 24 else "float"
        if t == "timestamp":
            return "rowversion"
        return t


def nstring(text: str) -> str:
    """A T-SQL Unicode literal (for procedure arguments such as ``sp_rename``'s names)."""
    return "N'" + text.replace("'", "''") + "'"


_TYPE_TEXT = re.compile(r"^\s*(\w+)\s*(?:\(\s*(max|\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$", re.IGNORECASE)


def column_from_type_text(name: str, type_text: str, nullable: bool = True) -> MssqlColumn:
    """Parse a ``system_type_name`` such as ``nvarchar(40)`` or ``decimal(12,2)``."""
    match = _TYPE_TEXT.match(type_text)
    if not match:
        return MssqlColumn(name, type_text, 0, 0, 0, nullable)
    base, first, second = match.group(1).lower(), match.group(2), match.group(3)
    length = -1 if (first or "").lower() == "max" else int(first) if first else 0
    if base in ("nvarchar", "nchar") and length > 0:
        length *= 2
    if base in ("decimal", "numeric"):
        return MssqlColumn(name, base, 0, length or 18, int(second or 0), nullable)
    if base in ("datetime2", "datetimeoffset", "time"):
        return MssqlColumn(name, base, 0, 0, 7 if first is None else length, nullable)
    if base == "float":
        return MssqlColumn(name, base, 8, length or 53, 0, nullable)
    return MssqlColumn(name, base, length, 0, 0, nullable)


def _time_unit(scale: int) -> str:
    return "ns" if scale > 6 else "us" if scale > 3 else "ms" if scale > 0 else "s"


_FIXED: dict[str, pa.DataType] = {
    "bit": pa.bool_(), "tinyint": pa.uint8(), "smallint": pa.int16(), "int": pa.int32(),
    "bigint": pa.int64(), "real": pa.float32(), "money": pa.decimal128(19, 4),
    "smallmoney": pa.decimal128(10, 4), "date": pa.date32(), "datetime": pa.timestamp("ms"),
    "smalldatetime": pa.timestamp("s"), "uniqueidentifier": pa.uuid(), "timestamp": pa.binary(8),
    "rowversion": pa.binary(8), "image": pa.binary(), "text": pa.string(), "ntext": pa.string(),
}


def arrow_field(column: MssqlColumn) -> pa.Field:
    """The canonical Arrow field for a SQL Server column, carrying its exact T-SQL type."""
    t = column.type_name.lower()
    logical = None
    if t in _FIXED:
        arrow_type = _FIXED[t]
    elif t in ("decimal", "numeric"):
        arrow_type = pa.decimal128(column.precision, column.scale)
    elif t == "float":
        arrow_type = pa.float32() if column.precision <= 24 else pa.float64()
    elif t == "datetime2":
        arrow_type = pa.timestamp(_time_unit(column.scale))
    elif t == "datetimeoffset":
        arrow_type = pa.timestamp(_time_unit(column.scale), tz="UTC")
    elif t == "time":
        arrow_type = pa.time64("ns") if column.scale > 6 else pa.time64("us")
    elif t in ("char", "varchar", "nchar", "nvarchar", "sysname"):
        arrow_type = pa.string()
    elif t == "binary":
        arrow_type = pa.binary(column.max_length)
    elif t == "varbinary":
        arrow_type = pa.binary()
    elif t in CLR_TYPES:
        arrow_type, logical = pa.binary(), LOGICAL_CLR
    elif t in ("xml", "sql_variant"):
        arrow_type, logical = pa.string(), t
    else:
        raise ValueError(f"column {column.name!r}: SQL Server type {column.type_name!r} is not supported")
    return make_field(column.name, arrow_type, nullable=column.nullable, native_kind=KIND,
                      native_type=column.ddl, logical=logical, max_length=declared_length(column),
                      fraction_digits=column.scale if t in ("datetime2", "datetimeoffset", "time") else None)


def declared_length(column: MssqlColumn) -> int | None:
    """The declared length of a ``(n)varchar(n)``/``(n)char(n)``/``varbinary(n)`` column in its
    own units (None for ``max`` and other types): characters for the ``n`` types (UTF-16 code
    units: one per character of the Basic Multilingual Plane), bytes for ``varchar``/``char``
    (one per character in single-byte code pages) and ``varbinary``."""
    t = column.type_name.lower()
    if t not in ("char", "varchar", "nchar", "nvarchar", "sysname", "varbinary") or column.max_length == -1:
        return None
    return column.max_length // 2 if t in ("nchar", "nvarchar", "sysname") else column.max_length


def read_expression(quoted: str, field: pa.Field) -> str:
    """The SELECT expression that fetches ``field`` losslessly (aliased to its own name)."""
    native = (native_type(field, KIND) or "").lower()
    base = native.split("(")[0]
    if base == "datetimeoffset":
        expression = f"CAST(SWITCHOFFSET({quoted}, '+00:00') AS datetime2({native[len(base) + 1:-1] or 7}))"
    elif base == "time":
        expression = f"DATEDIFF_BIG(NANOSECOND, CAST('00:00:00' AS time(7)), {quoted})"
    elif base == "uniqueidentifier":
        expression = f"CONVERT(binary(16), REPLACE(CONVERT(char(36), {quoted}), '-', ''), 2)"
    elif base in CLR_TYPES:
        expression = f"CAST({quoted} AS varbinary(max))"
    elif base in ("xml", "sql_variant"):
        expression = f"CONVERT(nvarchar(max), {quoted})"
    else:
        return quoted
    return f"{expression} AS {quoted}"


def fetch_type(field: pa.Field) -> pa.DataType:
    """The Arrow type the ODBC reader fetches for ``field`` (before ``to_canonical``)."""
    t = field.type
    if pa.types.is_timestamp(t) and t.tz:
        return pa.timestamp(t.unit)
    if pa.types.is_time(t):
        return pa.int64()
    if isinstance(t, pa.UuidType):
        return pa.binary(16)
    return t


def to_canonical(array: pa.Array, field: pa.Field) -> pa.Array:
    """Turn a fetched column (see ``fetch_type``) into the field's canonical Arrow type."""
    if array.type == field.type:
        return array
    if pa.types.is_time(field.type):
        return array.cast(pa.time64("ns")).cast(field.type)
    return array.cast(field.type)


def canonical_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [to_canonical(column, field) for column, field in zip(batch.columns, schema, strict=True)], schema=schema
    )


# -- writing ---------------------------------------------------------------------------------
_TSQL_NAMES = {
    "bool": "bit", "uint8": "tinyint", "int8": "smallint", "int16": "smallint", "int32": "int", "uint16": "int",
    "int64": "bigint", "uint32": "bigint", "uint64": "decimal(20,0)", "float16": "real", "float32": "real",
    "float64": "float", "date": "date", "uuid": "uniqueidentifier", "binary": "varbinary(max)",
}


def ddl_type(field: pa.Field) -> str:
    """The T-SQL column type for a canonical field (exact when it came from SQL Server)."""
    native = native_type(field, KIND)
    if native:
        return "binary(8)" if native == "rowversion" else native
    t, logical = field.type, logical_type(field)
    if logical == "xml":
        return "xml"
    if pa.types.is_fixed_size_binary(t) and t.byte_width <= 8000:
        return f"binary({t.byte_width})"
    simple = simple_type_name(t, _TSQL_NAMES)
    if simple:
        return simple
    if pa.types.is_decimal(t) and t.precision <= 38:
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        digits = {"s": 0, "ms": 3, "us": 6, "ns": 7}[t.unit]
        return f"datetimeoffset({digits})" if t.tz else f"datetime2({digits})"
    if pa.types.is_time(t):
        return f"time({ {'s': 0, 'ms': 3, 'us': 6, 'ns': 7}[t.unit] })"
    return "nvarchar(max)"


_TEXT_STAGED = ("date", "datetime", "smalldatetime", "datetime2", "datetimeoffset", "time")


def load_type(field: pa.Field) -> str:
    """The staging column type the Arrow bulk insert writes; ``cast_from_staging`` finishes it."""
    final = ddl_type(field)
    base = final.split("(")[0]
    if base in ("datetime", "smalldatetime", "datetime2", "datetimeoffset", "time"):
        return "varchar(40)"
    if base == "uniqueidentifier":
        return "binary(16)"
    return final


def cast_from_staging(quoted: str, final_type: str) -> str:
    """Cast a staged value into ``final_type``: staged ISO text goes through a 7-digit type first,
    so ``datetime`` gets its own rounding; staged uuid bytes are rebuilt from their hex text."""
    base = final_type.split("(")[0].lower()
    if base in ("datetime", "smalldatetime", "datetime2"):
        return f"CAST(CAST({quoted} AS datetime2(7)) AS {final_type})"
    if base == "datetimeoffset":
        return f"CAST(CAST({quoted} AS datetimeoffset(7)) AS {final_type})"
    if base == "time":
        return f"CAST(CAST({quoted} AS time(7)) AS {final_type})"
    if base == "uniqueidentifier":
        hex_text = f"CONVERT(char(32), {quoted}, 2)"
        return (f"CAST(STUFF(STUFF(STUFF(STUFF({hex_text}, 21, 0, '-'), 17, 0, '-'), 13, 0, '-'), 9, 0, '-') "
                f"AS uniqueidentifier)")
    return f"CAST({quoted} AS {final_type})"


def to_load_array(array: pa.Array, field: pa.Field) -> pa.Array:
    """The column as the bulk insert binds it into its ``load_type`` staging column."""
    t = array.type
    if pa.types.is_timestamp(t):
        text = pc.strftime(array.cast(pa.timestamp("ns", tz=t.tz)), format="%Y-%m-%dT%H:%M:%S")
        text = pc.utf8_slice_codeunits(text, 0, 27)
        return pc.binary_join_element_wise(text, "+00:00", "") if t.tz else text
    if pa.types.is_time(t):
        return pc.utf8_slice_codeunits(pc.strftime(array.cast(pa.time64("ns")), format="%H:%M:%S"), 0, 16)
    if pa.types.is_date(t) and ddl_type(field).split("(")[0] != "date":
        return array.cast(pa.string())
    if isinstance(t, pa.UuidType):
        return array.storage
    if pa.types.is_uint16(t) or pa.types.is_uint32(t):
        return array.cast(pa.int64())
    if pa.types.is_uint64(t):
        return array.cast(pa.decimal128(20, 0))
    if isinstance(t, pa.ExtensionType):
        return array.storage
    return array


def load_batch(batch: pa.RecordBatch, quoted_names: list[str]) -> pa.RecordBatch:
    """A batch ready for the ODBC bulk insert; names are pre-quoted because the insert uses them as-is."""
    arrays = [to_load_array(column, field) for column, field in zip(batch.columns, batch.schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, names=quoted_names)


# -- values pyodbc returns ---------------------------------------------------------------------
class PreciseDatetime(datetime):
    """A ``datetime`` that also keeps the 100 ns digit of a ``datetime2(7)`` value.

    Python datetimes stop at microseconds; a watermark read from ``datetime2(7)`` keeps its
    seventh digit here, survives ``- timedelta`` (look-back) and prints it in ``isoformat``.
    """

    hundred_ns: int = 0

    @classmethod
    def from_parts(cls, value: datetime, hundred_ns: int) -> PreciseDatetime:
        result = cls(value.year, value.month, value.day, value.hour, value.minute, value.second,
                     value.microsecond, value.tzinfo)
        result.hundred_ns = hundred_ns
        return result

    def __add__(self, other: Any) -> Any:
        result = datetime.__add__(self, other)
        return PreciseDatetime.from_parts(result, self.hundred_ns) if isinstance(other, timedelta) else result

    def __sub__(self, other: Any) -> Any:
        result = datetime.__sub__(self, other)
        return PreciseDatetime.from_parts(result, self.hundred_ns) if isinstance(other, timedelta) else result

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        whole_seconds = datetime.isoformat(self.replace(microsecond=0), sep)
        stamp, offset = whole_seconds[:19], whole_seconds[19:]
        return f"{stamp}.{self.microsecond:06d}{self.hundred_ns}{offset}"


def parse_datetime2_text(text: str | None) -> datetime | None:
    """``'2024-03-01 12:00:00.1234567'`` (CONVERT style 121) -> a datetime keeping all 7 digits."""
    if text is None:
        return None
    stamp, _, fraction = text.strip().replace("T", " ").partition(".")
    value = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    digits = (fraction + "0000000")[:7]
    value = value.replace(microsecond=int(digits[:6]))
    return PreciseDatetime.from_parts(value, int(digits[6])) if digits[6] != "0" else value


_DATETIMEOFFSET = struct.Struct("<6hI2h")


def decode_datetimeoffset(raw: bytes | None) -> datetime | None:
    """pyodbc output converter for ODBC type -155: the 20-byte SQL_SS_TIMESTAMPOFFSET_STRUCT."""
    if raw is None:
        return None
    year, month, day, hour, minute, second, nanos, tz_hour, tz_minute = _DATETIMEOFFSET.unpack(raw)
    offset = timezone(timedelta(hours=tz_hour, minutes=tz_minute))
    value = datetime(year, month, day, hour, minute, second, nanos // 1000, offset)
    hundred_ns = (nanos // 100) % 10
    return PreciseDatetime.from_parts(value, hundred_ns) if hundred_ns else value


def decode_clr_bytes(raw: bytes | None) -> bytes | None:
    """pyodbc output converter for ODBC type -151 (geography, geometry, hierarchyid): the bytes."""
    return None if raw is None else bytes(raw)


def register_output_converters(connection: Any) -> None:
    connection.add_output_converter(SQL_SS_TIMESTAMPOFFSET, decode_datetimeoffset)
    connection.add_output_converter(SQL_SS_UDT, decode_clr_bytes)


def bind_text(value: Any, native: str | None = None) -> str | None:
    """A watermark or window bound as text; the placeholder casts it to the column's own type.
    ``datetime``/``smalldatetime`` take at most 3 fractional digits, so they get milliseconds."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex().upper()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        if (native or "").lower() in ("datetime", "smalldatetime"):
            return datetime.isoformat(value.replace(tzinfo=None), timespec="milliseconds")
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)
