"""Multi-run background copy of a large table: one bounded chunk of the update key per run.

A table with ``chunk`` reads, per run, only the next chunk beyond the target's watermark (its
own ``MAX(update_key)``): rows up to an upper bound, which is the update-key value of the N-th
row beyond the watermark (``chunk: {rows: N}``) or the watermark plus a span
(``chunk: {range: "7 days"}``). The bound is inclusive, so every row sharing the boundary value
lands in the same chunk and the next run's read beyond the new watermark misses nothing; the
watermark still advances only with the commit of the rows it covers. Rows updated in the source
during a multi-day copy get a newer update key and are picked up by a later chunk.

While the backlog is larger than one chunk, each run copies one chunk (the first chunk into an
empty target creates it through staging and a swap); once it fits, no bound is set and the runs
are ordinary incremental ones. ``progress`` reports rows done (in the target) and rows left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sync_assets.connectors.base import Connector, Filter, ReadRequest
from sync_assets.planning import SyncPlan, minus_lookback
from sync_assets.spec import TableSpec


@dataclass(frozen=True)
class ChunkProgress:
    upper_bound: Any
    """The chunk's inclusive upper bound on the update key, or None when the copy has caught up."""
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


def _aggregate(source: Connector, table: TableSpec, plan: SyncPlan, after: Any, aggregates: str,
               **extra: Any) -> tuple:
    """``aggregates`` (e.g. ``MAX(k), COUNT(*)``) over the update keys beyond ``after``, honouring
    the table's ``where``; the inner query is rendered by the connector (binds, quoting, LIMIT)."""
    key = table.update_key or ""
    request = ReadRequest(table=table.source_table, sql=table.sql, columns=(key,),
                          filters=(Filter(key, ">", after),) if after is not None else (),
                          where=table.where, **extra)
    inner, params = source.render_select(request, pa.schema([plan.schema.field(key)]))
    return tuple(source.fetch(f"SELECT {aggregates} FROM ({inner}) AS sync_chunk", params)[0])


def bound_to_chunk(plan: SyncPlan, source: Connector) -> Any:
    """Limit ``plan`` to the next chunk when the backlog exceeds one; returns the bound (or None)."""
    table = plan.table
    if table.chunk is None or plan.strategy not in ("incremental", "full_refresh"):
        return None
    key = source.quote(table.update_key or "")
    watermark = plan.watermark_before if plan.strategy == "incremental" else None
    if table.chunk.rows is not None:
        upper, rows = _aggregate(source, table, plan, watermark, f"MAX({key}), COUNT(*)",
                                 order_by=(table.update_key,), limit=table.chunk.rows)
        if upper is None or rows < table.chunk.rows:
            return None
    else:
        lowest, highest = _aggregate(source, table, plan, watermark, f"MIN({key}), MAX({key})")
        if lowest is None:
            return None
        upper = minus_lookback(watermark if watermark is not None else lowest, -table.chunk.key_range, table)
        if highest <= upper:
            return None
    plan.read = plan.read.with_filters(Filter(table.update_key or "", "<=", upper))
    plan.window = (plan.window[0] if plan.window else watermark, upper)
    plan.notes.append(f"background copy: this run copies one chunk, up to {table.update_key} <= {upper!r}")
    return upper


def progress(table: TableSpec, source: Connector, plan: SyncPlan, watermark_after: Any,
             target_rows: int) -> ChunkProgress:
    """Rows done (the target's row count) and rows left beyond the committed watermark."""
    (left,) = _aggregate(source, table, plan, watermark_after, "COUNT(*)")
    upper = plan.window[1] if plan.window else None
    return ChunkProgress(upper_bound=upper, rows_done=target_rows, rows_left=int(left or 0))
