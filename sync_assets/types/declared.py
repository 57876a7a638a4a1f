"""Types written in a config file (``cast``, ``http.column_types``): one small vocabulary, each
name with its canonical Arrow field and the DuckDB type that converts values into it.

``string``/``text``, ``json``, ``boolean``/``bool``, ``int16``/``smallint``, ``int32``/``integer``/``int``,
``int64``/``bigint``, ``float32``/``real``, ``float64``/``double``, ``date``, ``timestamp``
(without zone), ``timestamptz`` (an instant, in UTC), ``decimal(p,s)``/``numeric(p,s)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from sync_assets.types.arrow import make_field

_SIMPLE: dict[str, tuple[pa.DataType, str]] = {
    "string": (pa.string(), "VARCHAR"), "text": (pa.string(), "VARCHAR"), "json": (pa.string(), "JSON"),
    "boolean": (pa.bool_(), "BOOLEAN"), "bool": (pa.bool_(), "BOOLEAN"),
    "int16": (pa.int16(), "SMALLINT"), "smallint": (pa.int16(), "SMALLINT"),
    "int32": (pa.int32(), "INTEGER"), "integer": (pa.int32(), "INTEGER"), "int": (pa.int32(), "INTEGER"),
    "int64": (pa.int64(), "BIGINT"), "bigint": (pa.int64(), "BIGINT"),
    "float32": (pa.float32(), "REAL"), "real": (pa.float32(), "REAL"),
    "float64": (pa.float64(), "DOUBLE"), "double": (pa.float64(), "DOUBLE"),
    "date": (pa.date32(), "DATE"),
    "timestamp": (pa.timestamp("us"), "TIMESTAMP"),
    "timestamptz": (pa.timestamp("us", tz="UTC"), "TIMESTAMPTZ"),
}
_DECIMAL = re.compile(r"(?:decimal|numeric)\(\s*(\d+)\s*,\s*(\d+)\s*\)")
NAMES = (*_SIMPLE, "decimal(p,s)")


@dataclass(frozen=True)
class DeclaredType:
    name: str
    arrow: pa.DataType
    duckdb: str

    def field(self, column: str) -> pa.Field:
        return make_field(column, self.arrow, logical="json" if self.duckdb == "JSON" else None)


def parse_type(text: str) -> DeclaredType:
    """The declared type ``text`` names; ValueError listing the vocabulary when it names none."""
    name = text.strip().lower()
    if name in _SIMPLE:
        arrow, duck = _SIMPLE[name]
        return DeclaredType(name, arrow, duck)
    match = _DECIMAL.fullmatch(name)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise ValueError(f"type {text!r}: precision must be 1-38 and scale at most the precision")
        return DeclaredType(name, pa.decimal128(precision, scale), f"DECIMAL({precision},{scale})")
    raise ValueError(f"unknown type {text!r}; use one of {', '.join(NAMES)}")
