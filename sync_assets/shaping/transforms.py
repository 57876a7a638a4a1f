"""A stream's ``transform``: rename, cast, trim, empty_to_null, lowercase/uppercase, timezone,
parse_dates, computed and drop, applied to every Arrow batch in that order (``cast`` and
``parse_dates`` take blank text as NULL, so ``empty_to_null`` need not come first).

The steps compile once per stream into one DuckDB SELECT over the batch (vectorised, zero-copy
Arrow in and out; ``TRY_CAST``/``TRY_STRPTIME`` say which values failed without stopping the
batch). Only the columns a step changes, and the computed ones, go through DuckDB: the others
are passed through from the batch as they are, with their native type metadata. A value that
``cast`` or ``parse_dates`` cannot convert becomes NULL, and with ``cast_errors: fail`` its row
is a bad row (a ``Problem``: the run fails, or the row is quarantined, by ``on_bad_rows``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from sync_assets.config.models import TransformSpec
from sync_assets.errors import ConfigError
from sync_assets.types.arrow import LOGICAL, make_field
from sync_assets.types.declared import parse_type
from sync_assets.types.value_edges import Problem

_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%f", "%p", "%T", "%R", "%c", "%X", "%z", "%Z")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class ColumnOrigin:
    """Where a transformed column comes from: the source columns and what was done to them."""

    sources: tuple[str, ...]
    how: str


@dataclass
class _Fallible:
    """A step that may fail per value: its column, what it was asked, and its flag column."""

    column: str
    reason: str
    flag: str


class Transformer:
    """The compiled ``transform`` of one stream over batches of ``schema``."""

    def __init__(self, spec: TransformSpec, schema: pa.Schema, label: str):
        self.spec, self.label = spec, label
        self.input_schema = schema
        self._fallible: list[_Fallible] = []
        self.origins: dict[str, ColumnOrigin] = {}
        names = list(schema.names)
        self._check_columns("rename", spec.rename, names)
        renamed = [spec.rename.get(n, n) for n in names]
        self._from_input = dict(zip(renamed, names, strict=True))
        for old, new in spec.rename.items():
            self.origins[new] = ColumnOrigin((old,), f"renamed from {old}")
        expressions = {new: _quote(old) for new, old in self._from_input.items()}
        types = {new: schema.field(old).type for new, old in self._from_input.items()}
        changed: set[str] = set()
        self._compile_steps(expressions, types, changed, renamed)
        clashes = [c for c in spec.computed if c in renamed]
        if clashes:
            raise ConfigError(f"{self.label}: key 'transform.computed': {clashes[0]!r} is already a column; "
                              "give the computed column a new name (and drop the old one)")
        self._check_columns("drop", spec.drop, [*renamed, *spec.computed])
        self.output_names = [n for n in [*renamed, *spec.computed] if n not in spec.drop]
        self._via_duckdb = [n for n in self.output_names if n in changed or n in spec.computed]
        for name in spec.computed:
            self.origins[name] = ColumnOrigin(tuple(n for n in renamed if _mentions(spec.computed[name], n)),
                                              f"computed: {spec.computed[name]}")
        used = {n for n in renamed if n in changed or any(_mentions(e, n) for e in spec.computed.values())}
        self._inputs = [self._from_input[n] for n in renamed if n in used]
        """The input columns DuckDB sees: the others pass through without it (any Arrow type)."""
        inner = ", ".join([*(f"{expr} AS {_quote(name)}" for name, expr in expressions.items() if name in used),
                           *(f"{f.flag} AS {_quote(f'__sync_flag_{i}')}" for i, f in enumerate(self._fallible))])
        outer = [*(f"({spec.computed[n]}) AS {_quote(n)}" if n in spec.computed else _quote(n)
                   for n in self._via_duckdb),
                 *(_quote(f"__sync_flag_{i}") for i in range(len(self._fallible)))]
        inner = inner or "1 AS __sync_row"  # computed columns that read no column
        self.sql = f"SELECT {', '.join(outer) or '1'} FROM (SELECT {inner} FROM batch) AS transformed"
        self._connection = None
        self._zones = {name: shift.to for name, shift in spec.timezone.items()}
        self.schema: pa.Schema | None = None
        self.schema = self._output_schema(schema)  # every batch is assembled in it from now on

    # -- compiling -----------------------------------------------------------------------------
    def _check_columns(self, step: str, columns: Iterable[str], names: list[str]) -> None:
        for column in columns:
            if column not in names:
                raise ConfigError(f"{self.label}: key 'transform.{step}': {column!r} is not a column at this step "
                                  f"(columns: {', '.join(names)})")

    def _compile_steps(self, expressions: dict[str, str], types: dict[str, pa.DataType], changed: set[str],
                       names: list[str]) -> None:
        spec = self.spec
        for column, type_text in spec.cast.items():
            self._check_columns("cast", [column], names)
            declared = parse_type(type_text)
            before = expressions[column]
            if _is_text(types[column]) and declared.duckdb not in ("VARCHAR", "JSON"):
                before = f"NULLIF(trim({before}), '')"  # blank text is no value: it casts to NULL
            expressions[column] = f"TRY_CAST({before} AS {declared.duckdb})"
            self._note_fallible(column, before, expressions[column], f"cannot be cast to {declared.name}")
            types[column] = declared.arrow
            self._origin(column, f"cast to {declared.name}")
            changed.add(column)
        for step, function in (("trim", "trim({})"), ("empty_to_null", "NULLIF({}, '')"),
                               ("lowercase", "lower({})"), ("uppercase", "upper({})")):
            for column in getattr(spec, step):
                self._check_columns(step, [column], names)
                if not _is_text(types[column]):
                    raise ConfigError(f"{self.label}: key 'transform.{step}': column {column!r} is "
                                      f"{types[column]}, not text")
                expressions[column] = function.format(expressions[column])
                self._origin(column, step)
                changed.add(column)
        for column, shift in spec.timezone.items():
            self._check_columns("timezone", [column], names)
            if not pa.types.is_timestamp(types[column]):
                raise ConfigError(f"{self.label}: key 'transform.timezone': column {column!r} is {types[column]}, "
                                  "not a timestamp (parse it first with parse_dates, which runs later: cast it)")
            if types[column].tz is None:
                expressions[column] = f"timezone({_literal(shift.from_)}, {expressions[column]})"
            types[column] = pa.timestamp("us", tz=shift.to)
            self._origin(column, f"time zone {shift.to}")
            changed.add(column)
        for column, dates in spec.parse_dates.items():
            self._check_columns("parse_dates", [column], names)
            formats = "[" + ", ".join(_literal(f) for f in dates.formats) + "]"
            before = f"NULLIF(trim(CAST({expressions[column]} AS VARCHAR)), '')"
            parsed = f"TRY_STRPTIME({before}, {formats})"
            if not any(d in f for f in dates.formats for d in _TIME_DIRECTIVES):
                parsed = f"CAST({parsed} AS DATE)"
            expressions[column] = parsed
            self._note_fallible(column, before, parsed, f"matches none of the date formats {dates.formats}")
            self._origin(column, f"parsed with {', '.join(dates.formats)}")
            changed.add(column)

    def _note_fallible(self, column: str, before: str, after: str, reason: str) -> None:
        self._fallible.append(_Fallible(column, reason, f"({before} IS NOT NULL AND {after} IS NULL)"))

    def _origin(self, column: str, how: str) -> None:
        old = self._from_input[column]
        earlier = self.origins.get(column)
        self.origins[column] = ColumnOrigin((old,), f"{earlier.how}; {how}" if earlier else how)

    def _output_schema(self, schema: pa.Schema) -> pa.Schema:
        empty = pa.RecordBatch.from_pylist([], schema=schema)
        return self.apply(empty, check=False)[0].schema

    # -- running -------------------------------------------------------------------------------
    def _duckdb(self):
        if self._connection is None:
            import duckdb

            self._connection = duckdb.connect(config={"threads": 1})
            self._connection.execute("SET TimeZone = 'UTC'")
        return self._connection

    def apply(self, batch: pa.RecordBatch, check: bool = True) -> tuple[pa.RecordBatch, list[Problem]]:
        """The transformed batch, and the rows whose values a fallible step could not convert."""
        computed: dict[str, pa.Array] = {}
        problems: list[Problem] = []
        if self._via_duckdb or self._fallible:
            connection = self._duckdb()
            connection.register("batch", pa.Table.from_batches([batch.select(self._inputs)]))
            try:
                result = connection.sql(self.sql).to_arrow_table().combine_chunks()
            except Exception as exc:
                raise ConfigError(f"{self.label}: key 'transform': DuckDB refuses it: {exc}") from exc
            finally:
                connection.unregister("batch")
            for name in self._via_duckdb:
                computed[name] = self._conformed(name, result.column(name).combine_chunks())
            for i, fallible in enumerate(self._fallible):
                mask = result.column(f"__sync_flag_{i}").combine_chunks().fill_null(False)
                if check and self.spec.cast_errors == "fail":
                    problems.append(Problem(fallible.column, fallible.reason, mask,
                                            "or set transform.cast_errors: null to store NULL"))
        arrays = [computed[name] if name in computed else batch.column(self._from_input[name])
                  for name in self.output_names]
        schema = self.schema or pa.schema([  # once, on the empty probe batch
            self._field(name, computed[name].type) if name in computed
            else batch.schema.field(self._from_input[name]).with_name(name) for name in self.output_names])
        return pa.RecordBatch.from_arrays(arrays, schema=schema), problems

    def _conformed(self, name: str, column: pa.Array) -> pa.Array:
        if name in self._zones:
            return column.cast(pa.timestamp(column.type.unit, tz=self._zones[name]))
        if pa.types.is_large_string(column.type):
            return column.cast(pa.string())
        return column

    def _field(self, name: str, arrow_type: pa.DataType) -> pa.Field:
        if name in self.spec.cast and parse_type(self.spec.cast[name]).duckdb == "JSON":
            return make_field(name, arrow_type, logical="json")
        if name not in self.spec.computed and name not in self.spec.cast:
            source = self.input_schema.field(self._from_input[name])
            logical = (source.metadata or {}).get(LOGICAL)
            if logical and arrow_type == source.type:
                return make_field(name, arrow_type, logical=logical.decode())
        return pa.field(name, arrow_type)

    def lineage(self) -> Iterator[tuple[str, ColumnOrigin]]:
        """(output column, origin) for every column a step renamed, changed or computed."""
        for name in self.output_names:
            if name in self.origins:
                yield name, self.origins[name]

    def source_name(self, name: str) -> str | None:
        """The input column an output column passes through from (None: computed)."""
        return self._from_input.get(name)


def _is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _mentions(expression: str, column: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(column)}(?![A-Za-z0-9_])", expression) is not None \
        or _quote(column) in expression
