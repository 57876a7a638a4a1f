"""Benchmark: ``sync-assets diff`` (in-database bucket checksums and bisection) against fetching
both tables and comparing them in Python, PostgreSQL -> DuckDB.

    python bench/verify.py              # 2,000,000 rows
    python bench/verify.py --rows 500000

It builds ``bench_vf_src.orders`` (the peer benchmark's rows) in PostgreSQL ($BENCH_PG, default
database ``sync_bench`` on the local server), copies it into a DuckDB file, then compares the two
with 0, 10 and 10,000 planted differences in the copy (deleted, inserted and changed rows). The
baseline, measured in the same run: read both tables whole as Arrow (the connectors' own bulk
read paths) and compare them with a polars join on the key. Every comparison must find exactly
the planted differences. Tests never assert on these times.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_table import bench_project, conninfos, prepare_source, rows_to_bench  # noqa: E402

from sync_assets.connectors.requests import ReadRequest  # noqa: E402
from sync_assets.sync.engine import sync_table  # noqa: E402
from sync_assets.verify.sides import diff_table  # noqa: E402


def naive_differences(table, source, target) -> int:
    """Both tables read whole into Arrow and compared in polars: the number of differing keys."""
    def read(connector, name):
        schema = connector.table_schema(name)
        stream = connector.open_stream(ReadRequest(table=name, columns=tuple(schema.names)), schema)
        return pl.from_arrow(pa.Table.from_batches(list(stream.counted_batches()), schema=stream.schema))

    left, right = read(source, table.source_table), read(target, table.target_table)
    right = right.select(left.columns).cast(dict(left.schema), strict=False)
    joined = left.join(right, on="id", how="full", suffix="_t", coalesce=False, nulls_equal=False)
    others = [c for c in left.columns if c != "id"]
    changed = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_t")) for c in others])
    return joined.filter(pl.col("id").is_null() | pl.col("id_t").is_null() | changed).height


def plant(path: Path, count: int) -> int:
    """Delete, insert and change rows of the DuckDB copy: ``count`` differences in all."""
    if count == 0:
        return 0
    third = max(count // 3, 1)
    with duckdb.connect(str(path)) as conn:
        conn.execute(f"DELETE FROM dst.orders WHERE id IN (SELECT id FROM dst.orders ORDER BY id LIMIT {third})")
        conn.execute(f"INSERT INTO dst.orders (id, customer_id) SELECT 100000000 + i, 1 FROM range({third}) t(i)")
        conn.execute(f"UPDATE dst.orders SET customer_id = customer_id + 1 WHERE id IN "
                     f"(SELECT id FROM dst.orders WHERE id < 100000000 ORDER BY id DESC LIMIT {count - 2 * third})")
    return count


def main() -> None:
    rows = rows_to_bench(__doc__)
    admin, conninfo = conninfos()
    print(f"source: {rows:,} rows in bench_vf_src.orders", flush=True)
    prepare_source(admin, conninfo, "bench_vf_src", rows)
    with tempfile.TemporaryDirectory() as work:
        project, source, targets = bench_project(Path(work), conninfo, [{
            "source": "pg", "target": "duck",
            "streams": {"bench_vf_src.orders": {"object": "dst.orders", "primary_key": "id"}}}])
        table, target, duck = project.tables[0], targets["duck"], Path(work) / "bench.duckdb"
        print(f"\n{'planted':>8} {'diff s':>8} {'rows/s':>11} {'found':>7} {'queries':>8} {'fetched':>8} "
              f"{'naive s':>8} {'naive found':>12} {'x naive':>8}")
        for count in (0, 10, 10_000):
            sync_table(table, source, target)  # a fresh, equal copy
            planted = plant(duck, count)
            started = time.monotonic()
            result = diff_table(table, source, target)
            seconds = time.monotonic() - started
            started = time.monotonic()
            naive = naive_differences(table, source, target)
            naive_seconds = time.monotonic() - started
            print(f"{planted:>8,} {seconds:>8.2f} {rows / seconds:>11,.0f} {result.differences:>7,} "
                  f"{result.queries:>8} {result.rows_fetched:>8,} {naive_seconds:>8.2f} {naive:>12,} "
                  f"{seconds / naive_seconds:>7.2f}x")
            if result.differences != planted or naive != planted:
                raise SystemExit(f"planted {planted}, diff found {result.differences}, naive found {naive}")


if __name__ == "__main__":
    main()
