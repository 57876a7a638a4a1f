"""The two sides of a table's comparison: the source as its stream selects it (table or query,
``columns``, ``exclude_columns``, ``where``) and the target copy (without soft-deleted rows),
restricted alike by an optional condition, column list or partition window."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from sync_assets.config.project import TableSpec
from sync_assets.connectors.deletes import live_rows_condition
from sync_assets.connectors.interface import Connector
from sync_assets.connectors.requests import Filter, ReadRequest
from sync_assets.errors import ConfigError
from sync_assets.sync.planning import source_relation, source_schema
from sync_assets.verify.diff import DiffResult, Side, compare


def stream_sides(table: TableSpec, source: Connector, target: Connector, *, columns: Sequence[str] | None = None,
                 where: str | None = None, filters: Sequence[Filter] = (),
                 schema: pa.Schema | None = None) -> tuple[Side, Side]:
    """(source side, target side) of ``table``; ``where`` is one condition both sides understand;
    ``schema``: the stream's source schema, when the caller has already read it."""
    schema = schema if schema is not None else source_schema(table, source)
    names = list(columns) if columns else list(schema.names)
    unknown = [c for c in names if c not in schema.names]
    if unknown:
        raise ConfigError(f"{table.label}: cannot compare column(s) {', '.join(unknown)}: the stream selects "
                          f"{', '.join(schema.names)}")
    names = [*(k for k in table.primary_key if k not in names), *names]
    target_schema = target.table_schema(table.target_table)
    if target_schema is None:
        raise ConfigError(f"{table.label}: target table {table.target_table} does not exist yet; sync it first")
    missing = [c for c in names if c not in target_schema.names]
    if missing:
        raise ConfigError(f"{table.label}: target table {table.target_table} has no column(s) {', '.join(missing)}")
    source_where = " AND ".join(f"({c})" for c in (table.where, where) if c) or None
    live = live_rows_condition(target, target_schema)
    target_where = " AND ".join(f"({c})" for c in (where, live) if c) or None
    source_from = source_relation(table, source)
    source_sql, source_params = source.where_clause(
        ReadRequest(table=table.source_table, sql=table.sql, where=source_where, filters=tuple(filters)), schema)
    target_sql, target_params = target.where_clause(
        ReadRequest(table=table.target_table, where=target_where, filters=tuple(filters)), target_schema)
    return (
        Side(source, source_from, tuple((c, schema.field(c).type) for c in names), source_sql, tuple(source_params)),
        Side(target, target.qualified(table.target_table),
             tuple((c, target_schema.field(c).type) for c in names), target_sql, tuple(target_params)),
    )


def diff_table(table: TableSpec, source: Connector, target: Connector, *, locate: bool = True,
               **restrictions) -> DiffResult:
    """Compare ``table``'s source with its target (see ``stream_sides`` for ``restrictions``;
    ``locate=False``: whole-table checksums only)."""
    return compare(*stream_sides(table, source, target, **restrictions), table.primary_key, locate=locate)
