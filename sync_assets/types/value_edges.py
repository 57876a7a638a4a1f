"""Edge values at the borders between engines: infinities, out-of-range dates and timestamps,
sub-microsecond timestamps, and finding the row that holds one.

The canonical Arrow form of an infinite timestamp is DuckDB's: ``infinity`` is the int64 maximum
and ``-infinity`` its negation (dates: the int32 maximum and its negation). DuckDB reads and
writes these as its own ``infinity``; every other engine's read path translates to them, and
every write path that cannot store a value refuses it with a ``DataError`` naming the stream,
the column and the row key (never a silent change).

Every check here is vectorised (one Arrow ``min_max`` per date/timestamp column per batch); only
a batch that holds an edge value pays for more (finding the offending row's key).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.errors import DataError

TIMESTAMP_INFINITY = 2**63 - 1
TIMESTAMP_NEG_INFINITY = -(2**63 - 1)
DATE_INFINITY = 2**31 - 1
DATE_NEG_INFINITY = -(2**31 - 1)

_POSTGRES_EPOCH_US = 946_684_800_000_000
"""PostgreSQL counts from 2000-01-01; Arrow from 1970-01-01."""
_POSTGRES_EPOCH_DAYS = 10_957
_POSTGRES_MIN_US = -210_866_803_200_000_000
"""4714-11-24 BC 00:00 (Julian day 0), PostgreSQL's earliest timestamp, in Arrow's microseconds."""
_POSTGRES_MIN_DAY = -2_440_588
_POSTGRES_MAX_DAY = 2_145_042_905
"""5874897-12-31, PostgreSQL's latest date."""
_POSTGRES_INT64_INFINITY = 2**63 - 1
_POSTGRES_INT64_NEG_INFINITY = -(2**63)
_POSTGRES_INT32_INFINITY = 2**31 - 1
_POSTGRES_INT32_NEG_INFINITY = -(2**31)


@dataclass(frozen=True)
class Problem:
    """Values of ``column`` a target cannot take: where (``mask``, one boolean per row of the
    batch, never NULL), why (``reason``), and how to fix it on purpose (``hint``)."""

    column: str
    reason: str
    mask: pa.Array
    hint: str = ""
    source_values: pa.Array | None = None
    """What the source sent, as JSON text, where the batch could not hold it (NULL there): a
    dead letter keeps the value as sent, an error message shows it."""


def _is_temporal(arrow_type: pa.DataType) -> bool:
    return pa.types.is_timestamp(arrow_type) or pa.types.is_date32(arrow_type)


def _raw(column: pa.Array) -> pa.Array:
    return column.view(pa.int64() if pa.types.is_timestamp(column.type) else pa.int32())


def row_key(batch: pa.RecordBatch, mask: pa.Array, key_columns: Sequence[str]) -> str:
    """``key=value`` of the first row where ``mask`` holds (or its position in the stream's batch)."""
    index = pc.indices_nonzero(pc.fill_null(mask, False))[0].as_py()
    names = [k for k in key_columns if k in batch.schema.names]
    if not names:
        return f"row {index + 1} of its batch (no primary key configured)"
    return ", ".join(f"{k}={batch.column(k)[index].as_py()!r}" for k in names)


def _refuse(label: str, column: str, problem: str, batch: pa.RecordBatch, mask: pa.Array,
            key_columns: Sequence[str]) -> DataError:
    count = pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py()
    return DataError(f"stream {label}: column {column!r} {problem} ({count} row(s) in this batch, first at "
                     f"{row_key(batch, mask, key_columns)}); nothing was written")


def from_postgres_adbc(batch: pa.RecordBatch, label: str, key_columns: Sequence[str]) -> pa.RecordBatch:
    """Repair what the ADBC PostgreSQL reader does to edge values, which it shifts from PostgreSQL's
    epoch to Arrow's with wrapping arithmetic: ``infinity`` and ``-infinity`` (and timestamps past
    year 292277, which no int64 of microseconds since 1970 can hold) come out as years around
    290279 BC. Infinities become canonical infinities; the others are refused."""
    columns = list(batch.columns)
    changed = False
    for i, field in enumerate(batch.schema):
        if not _is_temporal(field.type):
            continue
        raw = _raw(columns[i])
        timestamp = pa.types.is_timestamp(field.type)
        low = pc.min(raw).as_py()
        if low is None or low >= (_POSTGRES_MIN_US if timestamp else _POSTGRES_MIN_DAY):
            continue
        wrapped = pc.less(raw, _POSTGRES_MIN_US if timestamp else _POSTGRES_MIN_DAY)
        original = pc.subtract(raw, pa.scalar(_POSTGRES_EPOCH_US if timestamp else _POSTGRES_EPOCH_DAYS, raw.type))
        infinity = _POSTGRES_INT64_INFINITY if timestamp else _POSTGRES_INT32_INFINITY
        positive = pc.equal(original, pa.scalar(infinity, raw.type))
        negative = pc.equal(original, pa.scalar(
            _POSTGRES_INT64_NEG_INFINITY if timestamp else _POSTGRES_INT32_NEG_INFINITY, raw.type))
        finite = pc.and_(wrapped, pc.invert(pc.or_(positive, negative)))
        if pc.any(finite).as_py():
            raise _refuse(label, field.name, "holds timestamps after 292277 AD, beyond what any target here "
                          "can store", batch, finite, key_columns)
        infinity = TIMESTAMP_INFINITY if timestamp else DATE_INFINITY
        neg_infinity = TIMESTAMP_NEG_INFINITY if timestamp else DATE_NEG_INFINITY
        fixed = pc.if_else(pc.and_(wrapped, positive), pa.scalar(infinity, raw.type),
                           pc.if_else(pc.and_(wrapped, negative), pa.scalar(neg_infinity, raw.type), raw))
        columns[i] = fixed.view(field.type)
        changed = True
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema) if changed else batch


_NUL = re.compile(b"\x00")


def _may_hold_nul(column: pa.Array) -> bool:
    """One scan of the string data buffer, without copying it (~10x faster than a per-value
    match): True when any
    byte of it is NUL, including bytes outside a sliced array's range (the caller then checks
    value by value)."""
    data = column.buffers()[2]
    return data is not None and _NUL.search(memoryview(data)) is not None


def check_schema_for_postgres_ingest(schema: pa.Schema, label: str) -> None:
    """Refuse nested types (struct, map, union), which have no PostgreSQL column type."""
    for field in schema:
        if pa.types.is_struct(field.type) or pa.types.is_map(field.type) or pa.types.is_union(field.type):
            raise DataError(f"stream {label}: column {field.name!r} is {field.type}, which has no PostgreSQL "
                            "type; select it as JSON text (to_json(...)) in a custom sql:")


def check_for_postgres_ingest(batch: pa.RecordBatch, label: str, key_columns: Sequence[str]) -> None:
    """Refuse, naming the column and the row, the first value of ``postgres_ingest_problems``."""
    for problem in postgres_ingest_problems(batch):
        raise _refuse(label, problem.column, problem.reason + ("; " + problem.hint if problem.hint else ""),
                      batch, problem.mask, key_columns)


def postgres_ingest_problems(batch: pa.RecordBatch) -> Iterator[Problem]:
    """What ADBC's binary COPY writer into PostgreSQL would change or reject without a name: NUL
    characters in strings, infinite dates and timestamps (it writes ``infinity`` as 294247-01-10
    and fails on ``-infinity``), dates and timestamps outside PostgreSQL's range, and nanoseconds
    (PostgreSQL keeps microseconds). One problem per column at most."""
    for i, field in enumerate(batch.schema):
        column = batch.column(i)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            if not _may_hold_nul(column):
                continue
            nul = pc.fill_null(pc.match_substring(column, "\x00"), False)
            if pc.any(nul).as_py():
                yield Problem(field.name, "holds a NUL character, which PostgreSQL text cannot store", nul)
            continue
        if not _is_temporal(field.type):
            continue
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            sub_micro = pc.fill_null(pc.not_equal(pc.cast(column, pa.timestamp("us", field.type.tz), safe=False)
                                                  .cast(pa.timestamp("ns", field.type.tz)), column), False)
            if pc.any(sub_micro).as_py():
                yield Problem(field.name, "holds nanoseconds, which a PostgreSQL timestamp (microseconds) would drop",
                              sub_micro, "cast it to TIMESTAMP in a custom sql: to truncate on purpose")
            continue
        raw = _raw(column)
        bounds = pc.min_max(raw)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None:
            continue
        if pa.types.is_timestamp(field.type):
            scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}[field.type.unit]
            infinite = (TIMESTAMP_NEG_INFINITY, TIMESTAMP_INFINITY)
            minimum, maximum = _POSTGRES_MIN_US // scale, None
        else:
            infinite = (DATE_NEG_INFINITY, DATE_INFINITY)
            minimum, maximum = _POSTGRES_MIN_DAY, _POSTGRES_MAX_DAY
        if low >= minimum and (maximum is None or high <= maximum) and high not in infinite:
            continue
        is_infinite = pc.fill_null(pc.is_in(raw, pa.array(infinite, raw.type)), False)
        outside = pc.less(raw, minimum) if maximum is None else pc.or_(pc.less(raw, minimum), pc.greater(raw, maximum))
        outside = pc.and_(pc.fill_null(outside, False), pc.invert(is_infinite))
        if pc.any(is_infinite).as_py():
            yield Problem(field.name, "holds infinity or -infinity, which the PostgreSQL bulk load cannot write",
                          is_infinite)
        elif pc.any(outside).as_py():
            yield Problem(field.name, "holds values outside PostgreSQL's range (4714-11-24 BC to 5874897-12-31)",
                          outside)
