"""Snowflake types: declared types (DESC TABLE, cursor descriptions) mapped to canonical Arrow types.
"""

from __future__ import annotations

import re

import pyarrow as pa

_DECLARED = re.compile(r"^\s*([A-Z_ ]+?)\s*(?:\((\d+)(?:\s*,\s*(\d+))?\))?\s*$")


_TEXT_TYPES = {"VARCHAR", "STRING", "TEXT", "CHAR", "CHARACTER", "NCHAR", "NVARCHAR", "NVARCHAR2",
               "CHAR VARYING", "NCHAR VARYING"}


_FLOAT_TYPES = {"FLOAT", "FLOAT4", "FLOAT8", "DOUBLE", "DOUBLE PRECISION", "REAL"}


_INTEGER_ALIASES = {"INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT"}


JSON_TYPES = {"VARIANT", "OBJECT", "ARRAY"}


TZ_TIMESTAMPS = {"TIMESTAMP_LTZ", "TIMESTAMP_TZ"}


def arrow_type_for(declared: str) -> tuple[pa.DataType, str | None]:
    """(canonical Arrow type, logical tag) for a type as Snowflake spells it in DESC TABLE."""
    match = _DECLARED.match(declared.upper())
    base = match.group(1) if match else declared.upper()
    if base in ("NUMBER", "DECIMAL", "NUMERIC"):
        precision = int(match.group(2)) if match and match.group(2) else 38
        scale = int(match.group(3)) if match and match.group(3) else 0
        return pa.decimal128(precision, scale), None
    if base in _INTEGER_ALIASES:
        return pa.decimal128(38, 0), None
    if base in _FLOAT_TYPES:
        return pa.float64(), None
    if base in _TEXT_TYPES:
        return pa.string(), None
    if base in ("BINARY", "VARBINARY"):
        return pa.binary(), None
    if base == "BOOLEAN":
        return pa.bool_(), None
    if base == "DATE":
        return pa.date32(), None
    if base == "TIME":
        return pa.time64("us"), None
    if base in ("TIMESTAMP_NTZ", "DATETIME", "TIMESTAMP"):
        return pa.timestamp("us"), None
    if base in TZ_TIMESTAMPS:
        return pa.timestamp("us", tz="UTC"), None
    if base in JSON_TYPES:
        return pa.string(), "json"
    return pa.string(), "text_cast"


def declared_length(declared: str) -> int | None:
    """The characters of a ``VARCHAR(n)`` (or the bytes of a ``BINARY(n)``); None otherwise."""
    match = _DECLARED.match(declared.upper())
    if match and match.group(2) and (match.group(1) in _TEXT_TYPES or match.group(1) in ("BINARY", "VARBINARY")):
        return int(match.group(2))
    return None


_TYPE_CODE_NAMES = {0: "NUMBER", 1: "FLOAT", 2: "VARCHAR", 3: "DATE", 4: "TIMESTAMP_LTZ", 5: "VARIANT",
                    6: "TIMESTAMP_LTZ", 7: "TIMESTAMP_TZ", 8: "TIMESTAMP_NTZ", 9: "OBJECT", 10: "ARRAY",
                    11: "BINARY", 12: "TIME", 13: "BOOLEAN"}


def declared_type_from_description(type_code: int, precision: int | None, scale: int | None) -> str:
    """Rebuild a declared type from a cursor description (for custom SQL streams)."""
    name = _TYPE_CODE_NAMES.get(type_code, "UNKNOWN")
    if name == "NUMBER":
        return f"NUMBER({precision if precision is not None else 38},{scale or 0})"
    if name.startswith(("TIMESTAMP", "TIME")) and scale is not None:
        return f"{name}({scale})"
    return name


def quote_ident(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
