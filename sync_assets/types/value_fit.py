"""Which values of a batch an existing target column cannot take unchanged, found in Arrow (a few
vectorised compute calls per column and batch, never a Python loop over rows).

``on_bad_rows: quarantine`` loads a source column into a narrower target column (``text`` into
``varchar(40)``, ``bigint`` into ``integer``, ``numeric(38,10)`` into ``numeric(12,2)``, ``double``
into ``real``, ``timestamp(6)`` into ``timestamp(0)``) value by value: the values that fit load,
the others are quarantined, where ``fail`` refuses the column before anything is read. Each
check is exact: a value that a cast would truncate, round or overflow is one the column cannot
take. Strings are also checked for invalid UTF-8 (Arrow's own validation, per batch; only a batch
that fails it is searched value by value for the culprits).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.types.arrow import fits_in, fraction_digits, max_length
from sync_assets.types.value_edges import Problem

_INTEGER_RANGE = {
    pa.int8(): (-(2**7), 2**7 - 1), pa.int16(): (-(2**15), 2**15 - 1), pa.int32(): (-(2**31), 2**31 - 1),
    pa.int64(): (-(2**63), 2**63 - 1), pa.uint8(): (0, 2**8 - 1), pa.uint16(): (0, 2**16 - 1),
    pa.uint32(): (0, 2**32 - 1), pa.uint64(): (0, 2**64 - 1),
}


def _text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def value_checkable(source: pa.Field, target: pa.Field) -> bool:
    """True when ``unfit_values`` checks every value of ``source`` against ``target``: a column
    that does not fit as a type can then still load row by row (quarantine mode)."""
    s, t = source.type, target.type
    if _text(s) and _text(t):
        return True
    if pa.types.is_integer(s):
        return pa.types.is_integer(t) or pa.types.is_decimal(t)
    if pa.types.is_decimal(s):
        return pa.types.is_decimal(t)
    if pa.types.is_floating(s):
        return pa.types.is_floating(t)
    if pa.types.is_timestamp(s) and pa.types.is_timestamp(t):
        return (s.tz is None) == (t.tz is None)
    return False


def narrower_columns(schema: pa.Schema, targets: dict[str, pa.Field]) -> dict[str, pa.Field]:
    """The existing target columns (of ``targets``: name -> field, with its declared length and
    digits in the field metadata) that ``unfit_values`` checks value by value: those a column of
    ``schema`` does not fit as a type (``fits_in``) but can be checked in (``value_checkable``).
    Decided once per stream, not per batch."""
    return {f.name: targets[f.name] for f in schema
            if f.name in targets and not fits_in(f, targets[f.name]) and value_checkable(f, targets[f.name])}


def unfit_values(batch: pa.RecordBatch, narrower: dict[str, pa.Field]) -> Iterator[Problem]:
    """The problems of ``batch``'s values: invalid UTF-8 in any text column, and values the
    ``narrower`` target columns (``narrower_columns``) cannot take."""
    for source, column in zip(batch.schema, batch.columns, strict=True):
        if _text(source.type):
            invalid = _invalid_utf8(column)
            if invalid is not None:
                yield Problem(source.name, "holds invalid UTF-8", invalid)
                continue
        target = narrower.get(source.name)
        if target is None:
            continue
        for reason, mask in _unfit(column, source, target):
            mask = pc.fill_null(mask, False)
            if pc.any(mask).as_py():
                yield Problem(source.name, reason, mask)


def _unfit(column: pa.Array, source: pa.Field, target: pa.Field) -> Iterator[tuple[str, pa.Array]]:
    """(reason, mask) of each way values of ``column`` may not fit ``target``."""
    s, t = source.type, target.type
    if _text(s):
        length = max_length(target)
        if length is not None:
            yield f"is longer than the target column's {length} characters", pc.greater(pc.utf8_length(column), length)
    elif pa.types.is_integer(s) and pa.types.is_integer(t):
        low, high = _INTEGER_RANGE[t]
        yield f"is outside the target column's range ({t}: {low} to {high})", pc.or_(
            pc.less(column, pa.scalar(max(low, _INTEGER_RANGE[s][0]), s)),
            pc.greater(column, pa.scalar(min(high, _INTEGER_RANGE[s][1]), s)))
    elif pa.types.is_decimal(t):
        whole_digits = t.precision - t.scale
        as_decimal = column.cast(pa.decimal128(38, 0)) if pa.types.is_integer(s) else column
        if as_decimal.type.precision - as_decimal.type.scale > whole_digits:
            yield (f"has more than {whole_digits} digits before the point, too many for the target's {t}",
                   pc.greater_equal(pc.abs(as_decimal), pa.scalar(Decimal(10) ** whole_digits, as_decimal.type)))
        if pa.types.is_decimal(s) and s.scale > t.scale:
            yield (f"has more than {t.scale} decimal places, which the target's {t} would round",
                   pc.not_equal(pc.round(column, t.scale), column))
    elif pa.types.is_floating(s):
        changed = pc.not_equal(column.cast(t, safe=False).cast(s), column)
        yield f"cannot be stored exactly in the target's {t}", pc.and_(changed, pc.invert(pc.is_nan(column)))
    elif pa.types.is_timestamp(s):
        digits = fraction_digits(target)
        if digits is not None and digits < fraction_digits(source):  # type: ignore[operator]
            unit, places = ("nanosecond", 9) if s.unit == "ns" else ("microsecond", 6)
            floored = pc.floor_temporal(column, multiple=10 ** (places - digits), unit=unit)
            yield (f"has more than {digits} fractional-second digits, which the target column would round",
                   pc.not_equal(floored, column))


def _invalid_utf8(column: pa.Array) -> pa.Array | None:
    """A mask of the values that are not valid UTF-8, or None when all are (the common case:
    one validation pass over the batch's string data)."""
    try:
        column.validate(full=True)
        return None
    except pa.ArrowInvalid:
        raw = column.view(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
        return pa.array([value is not None and not _decodes(value) for value in raw.to_pylist()], pa.bool_())


def _decodes(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
