"""Multi-run background copy of a large table: one bounded chunk of the update key per run.

A table with ``chunk`` reads, per run, only the next chunk beyond what the target already holds;
the position is always read back from the target, so it advances only with the commit of the
rows it covers:

- ``chunk: {rows: N}`` with a primary key: keyset pagination on (update key, primary key). The
  cursor is the target's last row in that order; the chunk ends at the N-th source row beyond
  it, found with ``ORDER BY update_key, pk OFFSET N-1`` (a range scan of an index on those
  columns, never a sort of the whole table) and read with ``(key) > cursor AND (key) <= bound``
  (rendered without row-value syntax, so T-SQL can seek). Exactly N rows per run, however many
  rows share one update-key value.
- ``chunk: {rows: N}`` without a primary key: the bound is the update-key value of the N-th row
  beyond the watermark (the target's ``MAX(update_key)``), inclusive, so every row sharing the
  boundary value lands in the same chunk and the next run's read beyond it misses nothing.
- ``chunk: {range: "7 days"}``: the bound is the watermark (or the lowest key) plus the span.

While the backlog is larger than one chunk, each run copies one chunk (the first chunk into an
empty target creates it through staging and a swap); once it fits, no bound is set and the runs
are ordinary incremental ones (with their look-back). Rows updated in the source during a
multi-day copy get a newer update key and are picked up by a later chunk. ``progress`` reports
rows done (in the target) and rows left.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.config.project import TableSpec
from sync_assets.connectors.interface import Connector
from sync_assets.connectors.requests import Filter, KeysetFilter, ReadRequest
from sync_assets.sync.planning import SyncPlan, minus_lookback


@dataclass(frozen=True)
class ChunkProgress:
    upper_bound: Any
    """The chunk's inclusive upper bound (update key, or (update key, primary key...) for keyset
    chunks), or None when the copy has caught up."""
    rows_done: int
    rows_left: int

    @property
    def caught_up(self) -> bool:
        return self.rows_left == 0

    @property
    def percent_done(self) -> float:
        total = self.rows_done + self.rows_left
        return round(100.0 * self.rows_done / total, 2) if total else 100.0

    def describe(self) -> str:
        if self.caught_up:
            return f"caught up: {self.rows_done:,} rows copied; runs are now plain incremental syncs"
        return (f"background copy in progress: {self.rows_done:,} rows done, {self.rows_left:,} left "
                f"({self.percent_done}%)")


def _keyset_columns(table: TableSpec) -> tuple[str, ...] | None:
    """(update key, primary key columns) when rows-chunks page by keyset, else None."""
    if table.chunk is None or table.chunk.rows is None or not table.primary_key:
        return None
    key = table.update_key or ""
    return (key, *(c for c in table.primary_key if c != key))


def _aggregate(source: Connector, table: TableSpec, plan: SyncPlan, beyond: Filter | KeysetFilter | None,
               aggregates: str, **extra: Any) -> tuple:
    """``aggregates`` (e.g. ``MAX(k), COUNT(*)``) over the source rows ``beyond`` a position,
    honouring the table's ``where``; the inner query is rendered by the connector (binds, quoting, LIMIT)."""
    columns = beyond.columns if isinstance(beyond, KeysetFilter) else (table.update_key or "",)
    request = ReadRequest(table=table.source_table, sql=table.sql, columns=columns,
                          filters=(beyond,) if beyond is not None else (), where=table.where, **extra)
    inner, params = source.render_select(request, pa.schema([plan.schema.field(c) for c in columns]))
    return tuple(source.fetch(f"SELECT {aggregates} FROM ({inner}) AS sync_chunk", params)[0])


def _edge_row(connector: Connector, request: ReadRequest, schema: pa.Schema, round_up: bool) -> tuple | None:
    """The single row ``request`` selects, read through the connector's Arrow path (each value in
    its column's own type). Sub-microsecond timestamps are rounded outwards to microseconds (up for
    an upper bound, down for a cursor): Python values stop at microseconds, and rounding outwards
    only widens a chunk, it never skips a row."""
    table = connector.open_stream(request, schema).open_batches().read_all()
    if table.num_rows == 0:
        return None
    values = []
    for column in table.columns:
        if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
            rounded = (pc.ceil_temporal if round_up else pc.floor_temporal)(column, unit="microsecond")
            column = rounded.cast(pa.timestamp("us", column.type.tz))
        values.append(column[0].as_py())
    return tuple(values)


def target_cursor(table: TableSpec, target: Connector) -> tuple | None:
    """The target's last row in (update key, primary key) order: where the next keyset chunk starts."""
    columns = _keyset_columns(table)
    schema = target.table_schema(table.target_table)
    if columns is None or schema is None:
        return None
    request = ReadRequest(table=table.target_table, columns=columns, order_by=columns, descending=True, limit=1)
    return _edge_row(target, request, pa.schema([schema.field(c) for c in columns]), round_up=False)


def bound_to_chunk(plan: SyncPlan, source: Connector, target: Connector) -> Any:
    """Limit ``plan`` to the next chunk when the backlog exceeds one; returns the bound (or None)."""
    table = plan.table
    if table.chunk is None or plan.strategy not in ("incremental", "full_refresh"):
        return None
    keyset = _keyset_columns(table)
    if keyset is not None:
        return _bound_to_keyset_chunk(plan, source, target, keyset)
    key = source.quote(table.update_key or "")
    watermark = plan.watermark_before if plan.strategy == "incremental" else None
    after = Filter(table.update_key or "", ">", watermark) if watermark is not None else None
    if table.chunk.rows is not None:
        upper, rows = _aggregate(source, table, plan, after, f"MAX({key}), COUNT(*)",
                                 order_by=(table.update_key,), limit=table.chunk.rows)
        if upper is None or rows < table.chunk.rows:
            return None
    else:
        lowest, highest = _aggregate(source, table, plan, after, f"MIN({key}), MAX({key})")
        if lowest is None:
            return None
        upper = minus_lookback(watermark if watermark is not None else lowest, -table.chunk.key_range, table)
        if highest <= upper:
            return None
    plan.read = plan.read.with_filters(Filter(table.update_key or "", "<=", upper))
    plan.window = (plan.window[0] if plan.window else watermark, upper)
    plan.notes.append(f"background copy: this run copies one chunk, up to {table.update_key} <= {upper!r}")
    return upper


def _bound_to_keyset_chunk(plan: SyncPlan, source: Connector, target: Connector, columns: tuple[str, ...]) -> Any:
    table = plan.table
    cursor = target_cursor(table, target) if plan.strategy == "incremental" else None
    after = (KeysetFilter(columns, ">", cursor),) if cursor is not None else ()
    page_end = ReadRequest(table=table.source_table, sql=table.sql, columns=columns, filters=after,
                           where=table.where, order_by=columns, offset=(table.chunk.rows or 1) - 1, limit=1)
    bound = _edge_row(source, page_end, pa.schema([plan.schema.field(c) for c in columns]), round_up=True)
    if bound is None:
        return None  # fewer than one chunk left: an ordinary incremental run
    # the keyset replaces the update-key filter of the plan: it is exact, so no look-back re-read
    plan.read = replace(plan.read, filters=(*after, KeysetFilter(columns, "<=", bound)))
    plan.window = (cursor, bound)
    plan.notes.append(f"background copy: this run copies one chunk of {table.chunk.rows:,} rows, "
                      f"({', '.join(columns)}) in ({cursor!r}, {bound!r}]")
    return bound


def progress(table: TableSpec, source: Connector, target: Connector, plan: SyncPlan, watermark_after: Any,
             target_rows: int) -> ChunkProgress:
    """Rows done (the target's row count) and rows left beyond the committed position."""
    keyset = _keyset_columns(table)
    if keyset is not None:
        cursor = target_cursor(table, target)
        beyond = KeysetFilter(keyset, ">", cursor) if cursor is not None else None
    else:
        beyond = Filter(table.update_key or "", ">", watermark_after) if watermark_after is not None else None
    (left,) = _aggregate(source, table, plan, beyond, "COUNT(*)")
    upper = plan.window[1] if plan.window else None
    return ChunkProgress(upper_bound=upper, rows_done=target_rows, rows_left=int(left or 0))
