"""Row-level comparison of a source table (as its stream selects it) with its target copy, computed
inside each database: the engine behind ``sync-assets diff`` and the ``rows_match`` check.

Every row gets a bucket number from its key (the key itself for one integer column, else the
60-bit head of the MD5 of the key's canonical text) and a row hash (MD5 of the canonical text of
every compared column, ``types.canonical``). Level 1 groups both sides into ``FAN_OUT`` buckets
(``bucket % 64``) and compares each bucket's row count and the sum of its rows' 60-bit hash heads
(an order-independent checksum), one grouped query per side, both sides at once. Only the buckets
that differ are split again (``bucket % 64²`` among them, or finer at once when they are big)
until the differing buckets hold ``LEAF_ROWS`` rows in all, or a few rows each; then just those rows' keys and canonical
column texts are fetched and compared in Python: keys only in the source, only in the target,
and keys in both whose values differ, with the differing columns. Equal tables cost one grouped
scan per side. A table without a primary key is compared as a multiset: the "key" is the whole
row, and a leaf compares row counts.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sync_assets.connectors.interface import Connector
from sync_assets.types.canonical import hash_bucket_sql, row_hash_sql, value_text_sql

log = logging.getLogger("sync_assets")

FAN_OUT = 64
LEAF_ROWS = 256
"""Fetch the differing buckets' rows once they hold at most this many rows in all ..."""
DENSE_ROWS_PER_BUCKET = 8
"""... or at most this many per bucket (many differences: splitting further would not pay)."""


@dataclass(frozen=True)
class Side:
    """One side of a comparison: where its rows are (``source``: a qualified table or a
    parenthesised query with an alias) and which of them count (``where`` with its ``params``)."""

    connector: Connector
    source: str
    columns: tuple[tuple[str, pa.DataType], ...]
    where: str = ""
    params: tuple[Any, ...] = ()

    def text(self, name: str) -> str:
        """SQL giving the canonical text of column ``name``."""
        types = dict(self.columns)
        return value_text_sql(self.connector.kind, self.connector.quote(name), types[name])


@dataclass
class DiffResult:
    key: tuple[str, ...]
    only_in_source: list[tuple] = field(default_factory=list)
    only_in_target: list[tuple] = field(default_factory=list)
    changed: list[tuple[tuple, list[str]]] = field(default_factory=list)
    """(key, differing columns) for rows in both sides whose values differ."""
    source_rows: int = 0
    target_rows: int = 0
    differing_buckets: int = 0
    """Buckets (of ``FAN_OUT``) whose count or checksum differ at the first level."""
    queries: int = 0
    rows_fetched: int = 0
    seconds: float = 0.0

    @property
    def equal(self) -> bool:
        return not (self.differing_buckets or self.only_in_source or self.only_in_target or self.changed)

    @property
    def differences(self) -> int:
        return len(self.only_in_source) + len(self.only_in_target) + len(self.changed)

    def summary(self) -> str:
        if self.equal:
            return f"equal: {self.source_rows:,} rows on both sides"
        if not self.differences:
            return (f"checksums differ in {self.differing_buckets} of {FAN_OUT} buckets (source "
                    f"{self.source_rows:,} rows, target {self.target_rows:,})")
        return (f"{len(self.only_in_source):,} only in the source, {len(self.only_in_target):,} only in the "
                f"target, {len(self.changed):,} with different values (source {self.source_rows:,} rows, "
                f"target {self.target_rows:,})")


def compare(source: Side, target: Side, key: Sequence[str], *, locate: bool = True) -> DiffResult:
    """Compare ``source`` with ``target`` on ``key`` (empty: as multisets of whole rows);
    ``locate=False`` stops after the first grouped checksum (``differing_buckets`` says the verdict)."""
    started = time.monotonic()
    key = tuple(key)
    result = DiffResult(key or tuple(name for name, _ in source.columns))
    sides = (_Bucketed(source, key), _Bucketed(target, key))
    with ThreadPoolExecutor(max_workers=2) as pool:
        modulus, within = FAN_OUT, None
        while True:
            sums = list(pool.map(_Bucketed.bucket_sums, sides, [modulus] * 2, [within] * 2))
            result.queries += 2
            if within is None:
                result.source_rows, result.target_rows = (sum(c for c, _ in s.values()) for s in sums)
            differing = sorted(b for b in set(sums[0]) | set(sums[1]) if sums[0].get(b) != sums[1].get(b))
            if within is None:
                result.differing_buckets = len(differing)
                if not locate:
                    differing = []
            rows = sum(max(sums[0].get(b, (0, 0))[0], sums[1].get(b, (0, 0))[0]) for b in differing)
            log.info("diff %s: %d of the buckets mod %d differ (%s rows in them)", source.source,
                     len(differing), modulus, f"{rows:,}")
            if not differing or rows <= LEAF_ROWS or rows <= DENSE_ROWS_PER_BUCKET * len(differing):
                break
            within, modulus = (modulus, differing), modulus * _split(rows / len(differing))
        if differing:
            leaves = list(pool.map(_Bucketed.rows, sides, [modulus] * 2, [differing] * 2))
            result.queries += 2
            result.rows_fetched = sum(len(rows) for rows in leaves)
            _compare_rows(result, source, leaves[0], leaves[1], bool(key))
    result.seconds = time.monotonic() - started
    return result


def _split(rows_per_bucket: float) -> int:
    """How many parts to split each differing bucket into (a power of ``FAN_OUT``) so that the
    parts hold about ``DENSE_ROWS_PER_BUCKET`` rows: one level, or several at once."""
    levels = max(1, math.ceil(math.log(max(rows_per_bucket / DENSE_ROWS_PER_BUCKET, 1.0), FAN_OUT)))
    return FAN_OUT ** levels


class _Bucketed:
    """The SQL of one side: its rows' bucket numbers and row hashes, grouped or listed."""

    def __init__(self, side: Side, key: tuple[str, ...]):
        self.side = side
        kind, quote = side.connector.kind, side.connector.quote
        types = dict(side.columns)
        self.key = key or tuple(types)
        if len(key) == 1 and pa.types.is_integer(types[key[0]]):
            self.bucket = quote(key[0])
        else:
            self.bucket = hash_bucket_sql(kind, row_hash_sql(kind, [(quote(k), types[k]) for k in self.key]))
        self.row_hash = hash_bucket_sql(kind, row_hash_sql(kind, [(quote(name), t) for name, t in side.columns]))

    def _from(self, modulus: int, within: tuple[int, Sequence[int]] | None) -> tuple[str, str]:
        """(bucket expression ``% modulus``, FROM ... WHERE ...), restricted to the rows whose
        bucket ``% within[0]`` is one of ``within[1]`` (the differing buckets of the level above)."""
        side = self.side
        condition = side.where
        if within is not None:
            inside = f"({self.bucket}) % {within[0]} IN ({', '.join(str(b) for b in within[1])})"
            condition = f"{condition} AND {inside}" if condition else f" WHERE {inside}"
        return f"({self.bucket}) % {modulus}", f"FROM {side.source}{condition}"

    def bucket_sums(self, modulus: int, within: tuple[int, Sequence[int]] | None) -> dict[int, tuple[int, int]]:
        bucket, source = self._from(modulus, within)
        rows = self.side.connector.fetch_canonical(
            f"SELECT b, COUNT(*), SUM(h) FROM (SELECT {bucket} AS b, {self.row_hash} AS h {source}) AS hashed "
            "GROUP BY b", self.side.params)
        return {int(b): (int(count), int(total)) for b, count, total in rows}

    def rows(self, modulus: int, buckets: Sequence[int]) -> list[tuple]:
        """Key values, then every column's canonical text, of the rows in ``buckets`` (``% modulus``)."""
        _, source = self._from(modulus, (modulus, buckets))
        quote = self.side.connector.quote
        keys = ", ".join(quote(k) for k in self.key)
        texts = ", ".join(self.side.text(name) for name, _ in self.side.columns)
        return self.side.connector.fetch_canonical(f"SELECT {keys}, {texts} {source}", self.side.params)


def _compare_rows(result: DiffResult, source: Side, source_rows: list[tuple], target_rows: list[tuple],
                  keyed: bool) -> None:
    """Rows are (key values..., canonical column texts...); keys are matched by their canonical
    texts (drivers return the same key as different Python objects), and shown as the source's values."""
    width = len(result.key)
    names = [name for name, _ in source.columns]
    key_at = [names.index(k) for k in result.key]

    def index(rows: list[tuple]) -> dict[tuple, tuple[tuple, tuple]]:
        return {tuple(row[width + i] for i in key_at): (tuple(row[:width]), tuple(row[width:])) for row in rows}

    if not keyed:  # multisets: whole rows, with their counts
        left = Counter(tuple(row[width:]) for row in source_rows)
        right = Counter(tuple(row[width:]) for row in target_rows)
        shown = {texts: values for values, texts in index([*target_rows, *source_rows]).values()}
        result.only_in_source = _in_order(shown[t] for t in (left - right).elements())
        result.only_in_target = _in_order(shown[t] for t in (right - left).elements())
        return
    left, right = index(source_rows), index(target_rows)
    result.only_in_source = _in_order(left[k][0] for k in left.keys() - right.keys())
    result.only_in_target = _in_order(right[k][0] for k in right.keys() - left.keys())
    changed = [(left[k][0], [name for name, a, b in zip(names, left[k][1], right[k][1], strict=True) if a != b])
               for k in left.keys() & right.keys()]
    result.changed = [(key, columns) for key, columns in changed if columns]
    result.changed.sort(key=lambda item: _order(item[0]))


def _order(values: tuple) -> tuple:
    """A sort key for rows of mixed values (NULLs first, then by value, then by text)."""
    return tuple((v is not None, v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0, str(v))
                 for v in values)


def _in_order(rows) -> list[tuple]:
    return sorted(rows, key=_order)
