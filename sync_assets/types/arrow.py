"""The canonical type system: Arrow types, plus the metadata that carries a column's native type.

Connectors map their native types to and from these Arrow types. Each field also remembers the
type it had in its source database (``native_kind``/``native_type``), so a copy between two
databases of the same kind keeps the exact type (``varchar(40)`` stays ``varchar(40)``), a
logical tag for values Arrow stores as text (``json``, ``xml``), and the limits its declaration
puts on values that the Arrow type does not show, in dialect-free terms: ``max_length`` (the
characters of a ``varchar(n)``/``char(n)``, the bytes of a ``varbinary(n)``) and
``fraction_digits`` (the fractional-second digits of a ``timestamp(p)``/``datetime2(p)``/``time(p)``;
without it, the Arrow unit's: s 0, ms 3, us 6, ns 9), and for an enumerated type (PostgreSQL's
enums) its unqualified name and labels in order (``enum_type``, ``enum_labels``: a target of the
same kind recreates the type; every other target sees text). Each connector fills these in from its own
catalog, so the comparison is the same across engines. This module also decides which schema
changes are safe (``fits_in``: every value of the source column can be stored in the target
column unchanged).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

NATIVE_KIND = b"sync_assets.native_kind"
NATIVE_TYPE = b"sync_assets.native_type"
LOGICAL = b"sync_assets.logical"
MAX_LENGTH = b"sync_assets.max_length"
FRACTION_DIGITS = b"sync_assets.fraction_digits"
ENUM_TYPE = b"sync_assets.enum_type"
ENUM_LABELS = b"sync_assets.enum_labels"


def make_field(
    name: str, arrow_type: pa.DataType, *, nullable: bool = True, native_kind: str | None = None,
    native_type: str | None = None, logical: str | None = None, max_length: int | None = None,
    fraction_digits: int | None = None, enum: tuple[str, Sequence[str]] | None = None,
) -> pa.Field:
    """A canonical field; ``max_length`` and ``fraction_digits`` are the declared limits of the
    column (of its elements, for an array), where the declaration has them; ``enum`` is the
    (unqualified name, labels in order) of an enumerated type."""
    metadata = {}
    if native_kind and native_type:
        metadata[NATIVE_KIND] = native_kind.encode()
        metadata[NATIVE_TYPE] = native_type.encode()
    if logical:
        metadata[LOGICAL] = logical.encode()
    if max_length is not None:
        metadata[MAX_LENGTH] = str(max_length).encode()
    if fraction_digits is not None:
        metadata[FRACTION_DIGITS] = str(fraction_digits).encode()
    if enum is not None:
        metadata[ENUM_TYPE] = enum[0].encode()
        metadata[ENUM_LABELS] = json.dumps(list(enum[1])).encode()
    return pa.field(name, arrow_type, nullable=nullable, metadata=metadata or None)


def native_type(field: pa.Field, kind: str) -> str | None:
    """The field's type in a database of ``kind``, when it came from one."""
    meta = field.metadata or {}
    if meta.get(NATIVE_KIND, b"").decode() == kind:
        return meta[NATIVE_TYPE].decode()
    return None


def logical_type(field: pa.Field) -> str | None:
    value = (field.metadata or {}).get(LOGICAL)
    return value.decode() if value else None


def enum_of(field: pa.Field) -> tuple[str, list[str]] | None:
    """(unqualified type name, labels in order) when the column is an enumerated type."""
    meta = field.metadata or {}
    if ENUM_TYPE not in meta:
        return None
    return meta[ENUM_TYPE].decode(), json.loads(meta[ENUM_LABELS])


def declared_type(field: pa.Field) -> str:
    """The column's type as its own database spells it (``character varying(5)``), for messages;
    the Arrow type when it came from no database."""
    native = (field.metadata or {}).get(NATIVE_TYPE)
    return native.decode() if native else str(field.type)


def storage_array(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Unwrap an extension array (e.g. a driver's opaque ``numeric``) to its storage values."""
    if isinstance(array.type, pa.ExtensionType) and not isinstance(array.type, pa.UuidType):
        if isinstance(array, pa.ChunkedArray):
            return pa.chunked_array([c.storage for c in array.chunks], type=array.type.storage_type)
        return array.storage
    return array


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast a driver's batch to the canonical schema (column order and names as in ``schema``)."""
    columns = []
    for field, column in zip(schema, batch.columns, strict=True):
        if column.type != field.type:
            column = storage_array(column)
            if column.type != field.type:
                column = column.cast(field.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def conforming_reader(reader: pa.RecordBatchReader, schema: pa.Schema) -> pa.RecordBatchReader:
    """Wrap a reader so every batch it yields matches ``schema``; batches stay streamed."""
    if reader.schema.equals(schema, check_metadata=True):
        return reader

    def batches():
        for batch in reader:
            yield conform_batch(batch, schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


_CATEGORIES = (
    ("bool", pa.types.is_boolean), ("int8", pa.types.is_int8), ("int16", pa.types.is_int16),
    ("int32", pa.types.is_int32), ("int64", pa.types.is_int64), ("uint8", pa.types.is_uint8),
    ("uint16", pa.types.is_uint16), ("uint32", pa.types.is_uint32), ("uint64", pa.types.is_uint64),
    ("float16", pa.types.is_float16), ("float32", pa.types.is_float32), ("float64", pa.types.is_float64),
    ("date", pa.types.is_date), ("uuid", lambda t: isinstance(t, pa.UuidType)),
    ("binary", lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)),
    ("interval", pa.types.is_interval),
)


def simple_type_name(arrow_type: pa.DataType, names: dict[str, str]) -> str | None:
    """A dialect's name for a type that needs no parameters, from its table of category names
    (``bool``, ``int8``..``uint64``, ``float16``..``float64``, ``date``, ``uuid``, ``binary``,
    ``interval``); None when the table has no entry (decimals, timestamps and lists are
    spelled by each dialect itself)."""
    for category, matches in _CATEGORIES:
        if matches(arrow_type):
            return names.get(category)
    return None


_INT_RANK = {pa.int8(): 1, pa.int16(): 2, pa.int32(): 3, pa.int64(): 4,
             pa.uint8(): 1.5, pa.uint16(): 2.5, pa.uint32(): 3.5, pa.uint64(): 4.5}


def fits_in(source: pa.Field, target: pa.Field) -> bool:
    """True when every value the ``source`` column can hold can be stored in the ``target``
    column unchanged: the Arrow types fit, and so do the declared lengths and fractional-second
    digits (``varchar(30)`` does not fit ``varchar(5)``, ``timestamp(6)`` does not fit
    ``timestamp(0)``; an undeclared length is unbounded, so text fits ``varchar(5)`` only when its
    own length is declared and at most 5). Integers and decimals fit an unconstrained decimal
    (PostgreSQL ``numeric``, which Arrow carries as text tagged ``decimal``). An enum column takes
    only an enum whose labels include every one of the source's (text could hold any string)."""
    target_enum = enum_of(target)
    if target_enum is not None:
        source_enum = enum_of(source)
        return source_enum is not None and set(source_enum[1]) <= set(target_enum[1])
    if logical_type(target) == "decimal" and (source.type in _INT_RANK or pa.types.is_decimal(source.type)):
        return True
    if not _type_fits(source.type, target.type):
        return False
    target_length = max_length(target)
    if target_length is not None:
        source_length = max_length(source)
        if source_length is None or source_length > target_length:
            return False
    source_digits, target_digits = fraction_digits(source), fraction_digits(target)
    return source_digits is None or target_digits is None or source_digits <= target_digits


def _type_fits(source: pa.DataType, target: pa.DataType) -> bool:
    if source == target:
        return True
    if source in _INT_RANK and target in _INT_RANK:
        return _INT_RANK[source] <= _INT_RANK[target] and not (
            target in (pa.int8(), pa.int16(), pa.int32(), pa.int64()) and _INT_RANK[source] % 1
            and int(_INT_RANK[source]) >= int(_INT_RANK[target])
        )
    if source in _INT_RANK and pa.types.is_decimal(target):
        return target.precision - target.scale >= 20 or (
            source in (pa.int8(), pa.int16(), pa.int32()) and target.precision - target.scale >= 10
        )
    if pa.types.is_floating(source) and pa.types.is_floating(target):
        return source.bit_width <= target.bit_width
    if pa.types.is_decimal(source) and pa.types.is_decimal(target):
        return (source.scale <= target.scale
                and source.precision - source.scale <= target.precision - target.scale)
    if _is_text(source) and _is_text(target):
        return True
    if _is_binary(source):
        return pa.types.is_binary(target) or pa.types.is_large_binary(target)
    if pa.types.is_timestamp(source) and pa.types.is_timestamp(target):
        return (source.tz is None) == (target.tz is None)
    if pa.types.is_time(source) and pa.types.is_time(target):
        return True
    if pa.types.is_date(source) and pa.types.is_date(target):
        return True
    if _is_list(source) and _is_list(target):
        return _type_fits(source.value_type, target.value_type)
    return False


def max_length(field: pa.Field) -> int | None:
    """Declared characters (text) or bytes (binary) of the field or its elements; None: unbounded."""
    declared = (field.metadata or {}).get(MAX_LENGTH)
    if declared is not None:
        return int(declared)
    scalar = field.type.value_type if _is_list(field.type) else field.type
    return scalar.byte_width if pa.types.is_fixed_size_binary(scalar) else None


def fraction_digits(field: pa.Field) -> int | None:
    """Fractional-second digits of a timestamp or time field (or its elements); None otherwise."""
    scalar = field.type.value_type if _is_list(field.type) else field.type
    if not (pa.types.is_timestamp(scalar) or pa.types.is_time(scalar)):
        return None
    declared = (field.metadata or {}).get(FRACTION_DIGITS)
    return int(declared) if declared is not None else {"s": 0, "ms": 3, "us": 6, "ns": 9}[scalar.unit]


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)
