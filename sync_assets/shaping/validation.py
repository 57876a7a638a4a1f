"""A stream's ``validate`` rules: what each column's values must keep, checked per Arrow batch.

``not_null``, ``min``/``max`` (compared in the column's own type), ``regex`` (the whole value,
RE2), ``one_of`` and ``max_length`` are vectorised Arrow compute over each batch and give one
``Problem`` (a row mask) per broken rule. ``unique`` spans batches, so it is checked in the run's
staging table by the target (``WriteOp.unique_columns``). NULLs break only ``not_null``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.config.models import ColumnRules
from sync_assets.errors import ConfigError
from sync_assets.types.value_edges import Problem


class RuleChecker:
    """The rules of one stream, checked against batches of ``schema`` (the transformed one)."""

    def __init__(self, rules: Sequence[tuple[str, ColumnRules]], schema: pa.Schema, label: str):
        self.rules = list(rules)
        for column, rule in self.rules:
            if column not in schema.names:
                raise ConfigError(f"{label}: key 'validate.{column}': no such column after the transforms "
                                  f"(columns: {', '.join(schema.names)})")
            field = schema.field(column)
            text = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
            if (rule.regex is not None or rule.max_length is not None) and not text:
                raise ConfigError(f"{label}: key 'validate.{column}': regex and max_length apply to text, "
                                  f"and {column!r} is {field.type}")
        self._bounds = {column: {name: _typed(label, column, name, value, schema.field(column).type)
                                 for name, value in (("min", rule.min), ("max", rule.max)) if value is not None}
                        for column, rule in self.rules}
        self._sets = {column: pa.array(rule.one_of).cast(schema.field(column).type)
                      for column, rule in self.rules if rule.one_of is not None}

    @property
    def unique_columns(self) -> tuple[str, ...]:
        return tuple(column for column, rule in self.rules if rule.unique)

    def problems(self, batch: pa.RecordBatch) -> Iterator[Problem]:
        for column, rule in self.rules:
            values = batch.column(column)
            if rule.not_null:
                yield Problem(column, "breaks rule not_null: it is NULL", values.is_null())
            bounds = self._bounds[column]
            if "min" in bounds:
                yield Problem(column, f"breaks rule min: {rule.min}", _true(pc.less(values, bounds["min"])))
            if "max" in bounds:
                yield Problem(column, f"breaks rule max: {rule.max}", _true(pc.greater(values, bounds["max"])))
            if rule.regex is not None:
                matches = pc.match_substring_regex(values, f"^(?:{rule.regex})$")
                yield Problem(column, f"breaks rule regex: {rule.regex}", _true(pc.invert(matches)))
            if rule.one_of is not None:
                inside = pc.is_in(values, value_set=self._sets[column])
                yield Problem(column, f"breaks rule one_of: {rule.one_of}",
                              _true(pc.and_(values.is_valid(), pc.invert(inside))))
            if rule.max_length is not None:
                yield Problem(column, f"breaks rule max_length: {rule.max_length}",
                              _true(pc.greater(pc.utf8_length(values), rule.max_length)))


def _true(mask: pa.Array) -> pa.Array:
    """A rule's mask with NULL (a NULL value) as False: NULLs break only ``not_null``."""
    return pc.fill_null(mask, False)


def _typed(label: str, column: str, rule: str, value: Any, arrow_type: pa.DataType) -> pa.Scalar:
    try:
        return pa.scalar(str(value)).cast(arrow_type)  # from text: 0 fits a decimal(12,2), "2024-01-01" a date
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ConfigError(f"{label}: key 'validate.{column}.{rule}': {value!r} is not a {arrow_type} value "
                          f"({exc})") from None
