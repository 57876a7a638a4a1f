"""PostgreSQL types: the mapping to and from canonical Arrow types, declared limits, enum helpers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa

from sync_assets.types.arrow import enum_of, logical_type, native_type, simple_type_name

KIND = "postgres"

_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(),
    "real": pa.float32(), "double precision": pa.float64(), "boolean": pa.bool_(),
    "text": pa.string(), "date": pa.date32(), "bytea": pa.binary(), "uuid": pa.uuid(),
    "json": pa.string(), "jsonb": pa.string(), "name": pa.string(), "citext": pa.string(),
}


def arrow_type_for(pg_type: str) -> tuple[pa.DataType, str | None, bool]:
    """(Arrow type, logical tag, needs a ``::text`` cast when read) for a ``format_type`` string."""
    t = pg_type.lower()
    if t in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[t], ("json" if t in ("json", "jsonb") else None), False
    if t.startswith(("character varying", "varchar")):
        return pa.string(), None, False
    if t.startswith(("character", "bpchar")):  # read through ::text, which drops char(n)'s padding
        return pa.string(), None, True
    if t.startswith("numeric"):
        m = re.match(r"numeric\((\d+),(\d+)\)", t)
        if not m:  # unconstrained numeric: any precision, kept exactly as text (ADBC sends it as text)
            return pa.string(), "decimal", False
        precision, scale = int(m.group(1)), int(m.group(2))
        if precision > 38:  # beyond decimal128, which every target's Arrow scan reads: exact text
            return pa.string(), "decimal", False
        return pa.decimal128(precision, scale), None, False
    if t.startswith("timestamp"):
        return pa.timestamp("us", tz="UTC" if "with time zone" in t else None), None, False
    if t.startswith("time") and "with time zone" not in t:
        return pa.time64("us"), None, False
    if t.endswith("[]"):
        element, logical, cast = arrow_type_for(t[:-2])
        if not cast and logical is None and not pa.types.is_decimal(element):
            return pa.list_(element), None, False
    return pa.string(), None, True


_DECLARED_LENGTH = re.compile(r"(?:character varying|character)\((\d+)\)")


_DECLARED_DIGITS = re.compile(r"(?:timestamp|time)\((\d)\)")


def declared_limits(pg_type: str) -> tuple[int | None, int | None]:
    """(max characters, fractional-second digits) a ``format_type`` string declares, for the
    column or its array elements: ``character varying(30)`` -> (30, None),
    ``timestamp(0) without time zone`` -> (None, 0); undeclared is None (``text``: unbounded,
    ``timestamp``: the Arrow unit's 6 digits)."""
    length = _DECLARED_LENGTH.match(pg_type)
    digits = _DECLARED_DIGITS.match(pg_type)
    return (int(length.group(1)) if length else None), (int(digits.group(1)) if digits else None)


_PG_NAMES = {
    "bool": "boolean", "int8": "smallint", "int16": "smallint", "uint8": "smallint", "int32": "integer",
    "uint16": "integer", "int64": "bigint", "uint32": "bigint", "uint64": "numeric(20,0)", "float16": "real",
    "float32": "real", "float64": "double precision", "date": "date", "uuid": "uuid", "binary": "bytea",
    "interval": "interval",
}


def pg_type_for(field: pa.Field) -> str:
    """The PostgreSQL column type for a canonical field."""
    native = native_type(field, KIND)
    if native:
        return native
    t = field.type
    if logical_type(field) == "json":
        return "jsonb"
    if logical_type(field) == "decimal":
        return "numeric"
    simple = simple_type_name(t, _PG_NAMES)
    if simple:
        return simple
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp without time zone"
    if pa.types.is_time(t):
        return "time without time zone"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pg_type_for(pa.field("item", t.value_type)) + "[]"
    if pa.types.is_duration(t):
        return "interval"
    return "text"


def quote_ident(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


_TYPE_NAME_PART = r'(?:"(?:[^"]|"")*"|[^".]+)'


_TYPE_NAME = re.compile(rf"(?:{_TYPE_NAME_PART}\.)?({_TYPE_NAME_PART})")


def unqualified_type_name(pg_type: str) -> str:
    """``mood`` for ``"tgt"."mood"``, ``tgt.mood`` or ``mood`` (as ``format_type`` or ``quote_ident`` spell it)."""
    match = _TYPE_NAME.fullmatch(pg_type)
    if not match:
        return pg_type
    name = match.group(1)
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def enum_takes(field: pa.Field, staging_type: str) -> bool:
    """True when ``field`` is an enum and ``staging_type`` is an enum of its name (its native
    type, ``text``, is matched as such)."""
    enum = enum_of(field)
    return enum is not None and unqualified_type_name(staging_type) == enum[0]


def label_list(labels: Sequence[str]) -> str:
    return "(" + ", ".join(repr(label) for label in labels) + ")"


def label_difference(source: Sequence[str], target: Sequence[str]) -> str:
    only_source = [label for label in source if label not in target]
    only_target = [label for label in target if label not in source]
    if not only_source and not only_target:
        return "the same labels in another order"
    return "; ".join(part for part in (
        f"only in the source: {', '.join(map(repr, only_source))}" if only_source else "",
        f"only in the target: {', '.join(map(repr, only_target))}" if only_target else "") if part)
