"""The canonical text of a row, as SQL each engine computes itself: the one definition that
verification (``sync-assets diff``, the ``rows_match`` check) and ``hash_delta`` hash.

A row's canonical text is its fields concatenated, each ``<length>:<text>`` or ``N`` for NULL
(NULL and the empty string differ; no value can imitate a field boundary). ``value_text_sql``
gives ``<text>`` for one column from its canonical Arrow type, the same on every engine for the
same value (version ``CANONICAL_VERSION``):

- integers, text, UUIDs (lowercase), dates (``YYYY-MM-DD``): their plain text;
- decimals by value: no trailing fractional zeros, no exponent (``1.10`` and ``1.1`` are equal);
- floats: the shortest text that round-trips, no exponent below 1e16, ``NaN``, ``Infinity``,
  ``-Infinity``; ``-0.0`` is ``0`` (equal to ``0.0``), and a whole number has no ``.0``;
- timestamps with a time zone in UTC, both kinds as ``YYYY-MM-DD HH:MM:SS.ffffff`` without trailing
  fractional zeros (``2024-01-01 00:00:00``, ``2024-01-01 00:00:00.5``);
- booleans ``true``/``false``; bytes as lowercase hex.

Other types (JSON, intervals, times, arrays) use the engine's own text, which matches between
engines only where their text forms agree (docs/verification.md lists the known differences).
PostgreSQL and DuckDB are executed in the tests; SQL Server and Snowflake expressions are
generated the same way and checked by parsing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

CANONICAL_VERSION = 3
"""2: PostgreSQL floats in [1e6, 1e16) without an exponent (version 1 kept PostgreSQL's ``1e+15``);
3: timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` without trailing fractional zeros (the engines'
own text, several times cheaper on PostgreSQL than ``to_char``)."""

_TEXT = {"postgres": "text", "duckdb": "VARCHAR", "mssql": "NVARCHAR(MAX)", "snowflake": "VARCHAR"}
_TIMESTAMP_TEXT = {
    "postgres": "CAST({v} AS text)",
    "duckdb": "CAST({v} AS VARCHAR)",
    "mssql": "CONVERT(NVARCHAR(30), CAST({v} AS DATETIME2(6)), 121)",
    "snowflake": "TO_CHAR({v}, 'YYYY-MM-DD HH24:MI:SS.FF6')",
}
"""A timestamp as ``YYYY-MM-DD HH:MM:SS.ffffff``: PostgreSQL's and DuckDB's own text (PostgreSQL's
under ``PINNED_SESSION``), which leave out trailing fractional zeros; the others trim them."""
_IN_UTC = {
    "postgres": "({v} AT TIME ZONE 'UTC')",
    "duckdb": "({v} AT TIME ZONE 'UTC')",
    "mssql": "({v} AT TIME ZONE 'UTC')",
    "snowflake": "CONVERT_TIMEZONE('UTC', {v})",
}
PINNED_SESSION = {
    "postgres": ["SET LOCAL DateStyle = 'ISO, YMD'", "SET LOCAL extra_float_digits = 1",
                 "SET LOCAL IntervalStyle = 'postgres'", "SET LOCAL TimeZone = 'UTC'"],
}
"""Session settings the canonical text of an engine assumes (run before its verification queries)."""


def _trim_fraction(text: str) -> str:
    """SQL dropping trailing fractional zeros (and a bare point) from a number or time text."""
    return f"CASE WHEN {text} LIKE '%.%' THEN RTRIM(RTRIM({text}, '0'), '.') ELSE {text} END"


def engine_text_sql(kind: str, value: str) -> str:
    """SQL casting ``value`` to text the engine's own way (no canonical form)."""
    return f"CAST({value} AS {_TEXT[kind]})"


def value_text_sql(kind: str, value: str, type_: pa.DataType) -> str:
    """SQL giving the canonical text of ``value`` (an SQL expression of Arrow type ``type_``)."""
    text = engine_text_sql(kind, value)
    if isinstance(type_, pa.UuidType):  # PostgreSQL and DuckDB write lowercase already
        return text if kind in ("postgres", "duckdb") else f"LOWER({text})"
    if pa.types.is_decimal(type_):
        if kind == "postgres":
            return f"CAST(trim_scale({value}) AS text)"
        return _trim_fraction(text)
    if pa.types.is_floating(type_):
        nan = {"postgres": f"{value} = 'NaN'", "duckdb": f"isnan({value})", "mssql": "1 = 0",
               "snowflake": f"{value} = 'NaN'"}[kind]
        plain = f"REGEXP_REPLACE({text}, '\\.0$', '')"
        if kind == "postgres":  # PostgreSQL writes 1e+15 (float8) and 1.6777216e+07 (real) where others do not
            plain = (f"CASE WHEN abs({value}) >= 1e6 AND abs({value}) < 1e16 "
                     f"THEN CAST(trim_scale(CAST({text} AS numeric)) AS text) ELSE {text} END")
        if kind == "mssql":
            plain = f"CONVERT(NVARCHAR(40), {value}, 3)"
        return (f"CASE WHEN {nan} THEN 'NaN' WHEN {value} = 0 THEN '0' "
                f"WHEN {value} > 0 AND {value} * 0 <> 0 THEN 'Infinity' "
                f"WHEN {value} < 0 AND {value} * 0 <> 0 THEN '-Infinity' ELSE {plain} END")
    if pa.types.is_timestamp(type_):
        moment = _IN_UTC[kind].format(v=value) if type_.tz is not None else value
        as_text = _TIMESTAMP_TEXT[kind].format(v=moment)
        return as_text if kind in ("postgres", "duckdb") else _trim_fraction(as_text)
    if pa.types.is_boolean(type_):
        truth = f"{value} = 1" if kind == "mssql" else value
        return f"CASE WHEN {truth} THEN 'true' ELSE 'false' END"
    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_) or pa.types.is_fixed_size_binary(type_):
        return {"postgres": f"encode({value}, 'hex')", "duckdb": f"lower(hex({value}))",
                "mssql": f"LOWER(CONVERT(NVARCHAR(MAX), {value}, 2))",
                "snowflake": f"LOWER(HEX_ENCODE({value}))"}[kind]
    if pa.types.is_date(type_):
        dated = {"mssql": f"CONVERT(NVARCHAR(10), {value}, 23)", "snowflake": f"TO_CHAR({value}, 'YYYY-MM-DD')"}
        return dated.get(kind, text)
    return text


def has_plain_text(type_: pa.DataType) -> bool:
    """True when every canonical text of ``type_`` is made of digits, letters, ``-+.: `` only
    (numbers, booleans, dates, timestamps, UUIDs, hex bytes): it needs no length prefix."""
    return (pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)
            or pa.types.is_boolean(type_) or pa.types.is_date(type_) or pa.types.is_timestamp(type_)
            or isinstance(type_, pa.UuidType) or pa.types.is_binary(type_) or pa.types.is_large_binary(type_)
            or pa.types.is_fixed_size_binary(type_))


def row_text_sql(kind: str, values: Sequence[str], types: Sequence[pa.DataType] | None = None) -> str:
    """SQL concatenating field texts (``values``: SQL expressions already giving text): each
    ``<length>:<text>``, or ``N`` for NULL. With the fields' ``types``, a field of plain text
    (``has_plain_text``) is ``<text>|`` instead, or ``N|``: no value of it holds a ``|``, so the
    boundary stays unambiguous, and its text is computed once instead of twice (its length)."""
    length = "LEN" if kind == "mssql" else "length"
    plus = " + " if kind == "mssql" else " || "
    plain = [has_plain_text(t) for t in types] if types is not None else [False] * len(values)
    fields = [f"COALESCE({v}, 'N'){plus}'|'" if is_plain
              else f"COALESCE({engine_text_sql(kind, f'{length}({v})')}{plus}':'{plus}{v}, 'N')"
              for v, is_plain in zip(values, plain, strict=True)]
    if not fields:
        return "''"
    if kind == "mssql":
        return "CONCAT(" + ", ".join([*fields, "N''"]) + ")"
    return "(" + " || ".join(fields) + ")"


def md5_hex_sql(kind: str, text: str) -> str:
    """SQL giving the lowercase hex MD5 of ``text`` (UTF-8 bytes on every engine)."""
    if kind == "mssql":
        return f"LOWER(CONVERT(CHAR(32), HASHBYTES('MD5', CAST({text} AS VARCHAR(MAX))), 2))"
    return f"md5({text})"


def row_hash_sql(kind: str, columns: Sequence[tuple[str, pa.DataType]]) -> str:
    """SQL giving the lowercase hex MD5 of the canonical text of ``columns`` ((SQL expression,
    Arrow type) pairs, in order)."""
    texts = [value_text_sql(kind, v, t) for v, t in columns]
    return md5_hex_sql(kind, row_text_sql(kind, texts, [t for _, t in columns]))


def hash_bucket_sql(kind: str, hex_hash: str) -> str:
    """SQL turning a hex MD5 into a non-negative 60-bit integer (its first 15 hex digits), the
    same number on every engine: summed for order-independent segment checksums."""
    head = f"SUBSTRING({hex_hash}, 1, 15)" if kind == "mssql" else f"substr({hex_hash}, 1, 15)"
    return {
        "postgres": f"('x0' || {head})::bit(64)::bigint",
        "duckdb": f"CAST('0x' || {head} AS BIGINT)",
        "mssql": f"CONVERT(BIGINT, CONVERT(VARBINARY(8), '0' + {head}, 2))",
        "snowflake": f"TO_NUMBER({head}, 'XXXXXXXXXXXXXXX')",
    }[kind]
