"""What a read asks for and what it gives back: a ``ReadRequest`` (table or SQL, columns, filters,
order, limit) and the ``SourceStream`` of Arrow record batches a connector opens for it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from sync_assets.config.models import HttpEndpoint
from sync_assets.config.names import TableName
from sync_assets.types.value_edges import Problem

log = logging.getLogger("sync_assets")


@dataclass(frozen=True)
class Filter:
    """``column op value``; the value is bound as a parameter, compared in the column's own type."""

    column: str
    op: Literal[">", ">=", "<", "<=", "="]
    value: Any


@dataclass(frozen=True)
class KeysetFilter:
    """``(columns) op (values)`` in lexicographic order: keyset pagination on an update key with
    the primary key as tiebreak. Rendered as ``c1 >= v1 AND (c1 > v1 OR (c1 = v1 AND ...))`` (the
    leading range keeps it an index seek on engines without row-value comparison, T-SQL)."""

    columns: tuple[str, ...]
    op: Literal[">", "<="]
    values: tuple[Any, ...]


KEYS_PER_READ = 500
"""Keys bound in one statement of a ``KeysIn`` read (SQL Server takes at most 2,100 parameters)."""


@dataclass(frozen=True)
class KeysIn:
    """Rows whose ``columns`` equal one of ``keys`` (tuples of values in column order): how a
    dead-letter retry re-reads exactly the rows it retries."""

    columns: tuple[str, ...]
    keys: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class ReadRequest:
    """What to read from a source, free of any SQL dialect."""

    table: TableName | None = None
    sql: str | None = None
    columns: tuple[str, ...] | None = None
    filters: tuple[Filter | KeysetFilter | KeysIn, ...] = ()
    where: str | None = None
    order_by: tuple[str, ...] = ()
    limit: int | None = None
    batch_size: int = 100_000
    offset: int = 0
    """Rows skipped after ordering (with ``limit``): how a keyset page finds its last row."""
    descending: bool = False
    """Order by ``order_by`` descending."""
    stream: str | None = None
    """The configured stream this read serves, for messages."""
    endpoint: HttpEndpoint | None = None
    """An HTTP source's endpoint (then ``table`` and ``sql`` are None)."""

    def with_filters(self, *filters: Filter | KeysetFilter | KeysIn) -> ReadRequest:
        return dataclasses.replace(self, filters=self.filters + filters)

    @property
    def label(self) -> str:
        """What messages call this read: the stream, and its source table or "custom SQL"."""
        source = str(self.table) if self.table else "custom SQL"
        if not self.stream:
            return source
        return f"stream {self.stream!r}" + ("" if self.stream == source else f" ({source})")


@dataclass
class SourceStream:
    """A stream being read: its canonical schema, its Arrow batches, and optionally the same
    rows in a database-native bulk format that a target of the same kind can take unchanged."""

    schema: pa.Schema
    open_batches: Callable[[], pa.RecordBatchReader]
    native_format: str | None = None
    open_native: Callable[[], Iterator[bytes]] | None = None
    rows_read: int = 0
    label: str = "custom SQL"
    """The stream's name in error messages (the engine sets it to the stream's name, a source
    connector to its table, the IO manager to the asset)."""
    key_columns: tuple[str, ...] = ()
    """The primary key, so a value error can name the row that holds it."""
    failure: Exception | None = None
    """The error that ended the read (the source's, or a target's refusal of a value): a target
    whose driver consumes the batches (DuckDB's scan, ADBC's ingest, arrow-odbc) reports it only
    as text inside its own error, so ``write`` raises this one."""
    rule_problems: Callable[[pa.RecordBatch], list[Problem]] | None = None
    """The rows of a batch this stream yielded that break its own rules (``validate``, a failed
    ``cast``): a quarantining target moves them to its dead letters (``shaping.shaped``)."""

    def counted_batches(self, check: Callable[[pa.RecordBatch], None] | None = None) -> pa.RecordBatchReader:
        """The Arrow reader, counting rows as they pass (no copies) and logging progress;
        ``check`` (a target's refusal of values it cannot store) sees every batch first."""
        reader = self.open_batches()
        progress = Progress("rows")

        def batches():
            try:
                for batch in reader:
                    if check is not None:
                        check(batch)
                    self.rows_read += batch.num_rows
                    progress.advance(batch.num_rows)
                    yield batch
            except Exception as exc:
                self.failure = exc
                raise

        return pa.RecordBatchReader.from_batches(self.schema, batches())

    def counted_native(self) -> Iterator[bytes]:
        """The native bulk stream, logging progress in bytes (rows are known when it ends)."""
        progress = Progress("bytes")
        for chunk in self.open_native():  # type: ignore[misc]
            progress.advance(len(chunk))
            yield chunk


@dataclass
class SourceReads:
    """The further reads of the same source a write may need, opened only when it does: every
    key (delete detection), every key with its row hash (``hash_delta``), and the rows of given
    keys (``hash_delta``: only the rows whose hash changed)."""

    keys: Callable[[], SourceStream] | None = None
    hashes: Callable[[], SourceStream] | None = None
    rows_for: Callable[[list[tuple]], SourceStream] | None = None


class Progress:
    """Logs how far a long load has got, at most every ``every_s`` seconds (to the run log)."""

    def __init__(self, unit: str, every_s: float = 10.0):
        self.unit, self.every_s, self.done = unit, every_s, 0
        self.started = self.last = time.monotonic()

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            rate = self.done / (now - self.started)
            log.info("... %s %s so far (%s %s/s)", f"{self.done:,}", self.unit, f"{rate:,.0f}", self.unit)
