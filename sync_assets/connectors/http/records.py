"""JSON records to Arrow: the record list inside a response, a stream's schema, and each page
converted to one record batch of that schema.

The schema is fixed before the first batch, so it never flips between pages or runs: declared
``column_types`` win; every other field seen on the first page is inferred from the kinds of its
values there, the same way every time: booleans are ``boolean``, numbers ``float64`` (JSON has
one number type; declare ``int64`` or ``decimal(p,s)`` where that matters), text ``string``,
objects and arrays ``json`` (text holding their JSON), a field that is NULL on the whole first
page or mixes kinds ``string`` (a non-text value as its JSON text). A field first seen on a
later page is not in the schema: the read logs it (with its count) once, rather than dropping it
silently; declare it to load it.

Each page converts in C++: ``pa.array`` of the record dicts into a struct of the text and
boolean columns; per column, ``pa.array`` then a safe Arrow cast for numbers, dates, timestamps
and decimals (a fraction never truncates into an integer column, a boolean never becomes 1.0);
``json`` columns serialise each value with orjson. A value that does not fit its column (text in
a number column, a malformed date) becomes NULL in the batch and a ``Problem`` for its row (with
the value as sent), so the stream's ``on_bad_rows`` decides.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.errors import SourceReadError
from sync_assets.types.arrow import logical_type, make_field
from sync_assets.types.declared import parse_type
from sync_assets.types.value_edges import Problem


def records_at(body: Any, path: str | None, where: str) -> list:
    """The list of records at dotted ``path`` (``data.items``, ``$.data.items``; a number indexes a list)."""
    found = body
    for part in [p for p in (path or "").removeprefix("$").split(".") if p]:
        if isinstance(found, dict) and part in found:
            found = found[part]
        elif isinstance(found, list) and part.lstrip("-").isdigit() and -len(found) <= int(part) < len(found):
            found = found[int(part)]
        else:
            raise SourceReadError(f"{where}: the response has no {part!r} on the 'records' path {path!r} "
                                  f"(found {_kind(found)})")
    if found is None:
        return []
    if not isinstance(found, list):
        raise SourceReadError(f"{where}: the 'records' path {path or '(the body)'!r} leads to {_kind(found)}, "
                              "not a list of records")
    return found


def value_at(body: Any, path: str) -> Any:
    """The value at dotted ``path`` in a response body (None when any part is missing)."""
    found = body
    for part in [p for p in path.removeprefix("$").split(".") if p]:
        if not isinstance(found, dict):
            return None
        found = found.get(part)
    return found


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def infer_schema(declared: dict[str, str], sample: Sequence[Any]) -> pa.Schema:
    """Declared fields, then every other field of the ``sample`` records in first-seen order."""
    fields = [parse_type(text).field(name) for name, text in declared.items()]
    kinds: dict[str, set[str]] = {}
    for record in sample:
        if isinstance(record, dict):
            for name, value in record.items():
                seen = kinds.setdefault(name, set())
                if value is not None:
                    seen.add("bool" if isinstance(value, bool) else "number" if isinstance(value, (int, float))
                             else "json" if isinstance(value, (dict, list)) else "text")
    for name, seen in kinds.items():
        if name in declared:
            continue
        if seen == {"bool"}:
            fields.append(make_field(name, pa.bool_()))
        elif seen == {"number"}:
            fields.append(make_field(name, pa.float64()))
        elif seen == {"json"}:
            fields.append(make_field(name, pa.string(), logical="json"))
        else:
            fields.append(make_field(name, pa.string()))
    return pa.schema(fields)




class PageConverter:
    """Converts pages of records into batches of ``schema`` (a projection of the stream's)."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self._plain = [f for f in schema if pa.types.is_boolean(f.type)
                       or (pa.types.is_string(f.type) and logical_type(f) != "json")]
        """Columns converted together through one struct: Arrow refuses any other kind of value
        there. Numbers are not among them: Arrow would truncate 2.5 into an int64 column and read
        true as 1.0 in a float one, so they are inferred per column and cast safely (below)."""
        self._struct = pa.struct([pa.field(f.name, f.type) for f in self._plain])
        self.unknown_fields: dict[str, int] = {}
        """Fields of records that the schema lacks, with how many records held them."""
        self._known = set(schema.names)

    def convert(self, records: list) -> tuple[pa.RecordBatch, list[Problem]]:
        records = [r if isinstance(r, dict) else {"value": r} for r in records]
        self._note_unknown(records)
        columns: dict[str, pa.Array] = {}
        problems: list[Problem] = []
        try:
            plain = pa.array(records, type=self._struct) if self._plain else None
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            plain = None
        for field in self.schema:
            if plain is not None and field in self._plain:
                columns[field.name] = plain.field(field.name)
                continue
            values = [r.get(field.name) for r in records]
            columns[field.name], problem = _column(field, values)
            if problem is not None:
                problems.append(problem)
        return pa.RecordBatch.from_arrays([columns[f.name] for f in self.schema], schema=self.schema), problems

    def _note_unknown(self, records: list[dict]) -> None:
        unknown = set().union(*(r.keys() for r in records)) - self._known
        for name in unknown:  # rare: only then are the records counted one by one
            self.unknown_fields[name] = self.unknown_fields.get(name, 0) + sum(name in r for r in records)


def _column(field: pa.Field, values: list) -> tuple[pa.Array, Problem | None]:
    """One column of a page in ``field``'s type; values that do not fit become NULL and a Problem."""
    if logical_type(field) == "json":
        return pa.array([None if v is None else json_text(v) for v in values], pa.string()), None
    if pa.types.is_string(field.type):
        return pa.array([v if v is None or isinstance(v, str) else json_text(v) for v in values], pa.string()), None
    try:
        inferred = pa.array(values)
        if pa.types.is_boolean(inferred.type) == pa.types.is_boolean(field.type) or pa.types.is_null(inferred.type):
            return _cast(inferred, field.type), None  # safe: a fraction never truncates into an integer
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError):
        pass  # a page mixing kinds of values: value by value below
    converted, bad, sent = [], [], []
    for value in values:
        fitted = _fit(value, field.type)
        unfit = fitted is None and value is not None
        bad.append(unfit)
        sent.append(json_text(value) if unfit else None)
        converted.append(fitted)
    reason = f"is not a {field.type} value in the API's records"
    return pa.array(converted, field.type), Problem(field.name, reason, pa.array(bad, pa.bool_()),
                                                    source_values=pa.array(sent, pa.string()))


def json_text(value: Any) -> str:
    """A value as JSON text: orjson (8x the standard library here), the standard library for
    integers beyond 64 bits."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


def _cast(values: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    """A safe Arrow cast; integers reach a decimal through ``decimal(38, 0)`` (Arrow casts int64
    only into a decimal with room for 19 digits before the point, whatever the values)."""
    if pa.types.is_integer(values.type) and pa.types.is_decimal(arrow_type):
        values = pc.cast(values, pa.decimal128(38, 0))
    return pc.cast(values, arrow_type)


def _fit(value: Any, arrow_type: pa.DataType) -> Any:
    if value is None or isinstance(value, (dict, list)) or (isinstance(value, bool)
                                                             and not pa.types.is_boolean(arrow_type)):
        return None
    try:
        return _cast(pa.array([value]), arrow_type)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError):
        return None
