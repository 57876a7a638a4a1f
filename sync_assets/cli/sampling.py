"""Discovery and sample data for the CLI: what databases, schemas and tables a connection has,
and a look at their rows.

All work on any connector through the connector interface, so the same commands list a
Snowflake schema before a table is added to the config, and sample the synced copy in DuckDB or
PostgreSQL afterwards.

- ``list_schemas_report``: the server's databases the login can use (the connection's own one
  marked), then the schemas of the connection's database with their numbers of tables and views.
- ``list_tables_report``: table, kind, rows, bytes and last-altered time, as the catalog keeps
  them (Snowflake's exact counts; PostgreSQL and DuckDB estimates; missing values are None).
- ``sample_table``: the first N rows (in whatever order the engine returns them: a preview, not
  a stable slice) or a uniform random sample of N rows, written as JSON (an array of objects),
  CSV or Parquet. The random sample streams the table once and keeps only N candidate rows (each
  row gets a random key, the N smallest keys win), so it works on every engine in bounded
  memory; it reads the whole table, which is cheap on a local DuckDB copy and costs a scan on a
  warehouse.
"""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.config.names import TableName
from sync_assets.connectors.interface import Connector
from sync_assets.connectors.requests import ReadRequest
from sync_assets.errors import ConfigError

SampleMethod = Literal["first", "random"]
SampleFormat = Literal["json", "csv", "parquet"]
_RANDOM_KEY = "__sync_assets_sample_key"


def list_schemas_report(connector: Connector) -> dict[str, Any]:
    """``database`` (the connection's own), ``databases`` (dicts of ``database`` and ``current``)
    and ``schemas`` (dicts of ``schema`` and ``tables``, the number of tables and views)."""
    current = connector.database_name  # one catalog query on SQL Server
    return {
        "database": current,
        "databases": [{"database": name, "current": name == current}
                      for name in connector.list_databases()],
        "schemas": [{"schema": info.name, "tables": info.table_count} for info in connector.list_schemas()],
    }


def list_tables_report(connector: Connector, schema: str | None) -> list[dict[str, Any]]:
    """One dict per table or view: ``table``, ``kind``, ``rows``, ``bytes``, ``last_altered``."""
    return [
        {"table": str(info.table), "kind": info.kind, "rows": info.row_count, "bytes": info.size_bytes,
         "last_altered": info.last_altered}
        for info in connector.list_tables(schema)
    ]


def sample_table(connector: Connector, table: TableName | str, n: int, method: SampleMethod,
                 fmt: SampleFormat, out: str | Path | IO[bytes]) -> int:
    """Write ``n`` rows of ``table`` to ``out`` (a path or a binary file); returns rows written."""
    if n < 0:
        raise ConfigError(f"sample size must be 0 or more, not {n}")
    table_name = TableName.parse(table) if isinstance(table, str) else table
    schema = connector.table_schema(table_name)
    if schema is None:
        raise ConfigError(f"connection {connector.name!r}: table {table_name} does not exist")
    if method == "first":
        request = ReadRequest(table=table_name, columns=tuple(schema.names), limit=n)
        rows = connector.open_stream(request, schema).open_batches().read_all()
    elif method == "random":
        rows = _random_rows(connector, ReadRequest(table=table_name, columns=tuple(schema.names)), schema, n)
    else:
        raise ConfigError(f"sample method must be 'first' or 'random', not {method!r}")
    _write(rows, fmt, out)
    return rows.num_rows


def _random_rows(connector: Connector, request: ReadRequest, schema: pa.Schema, n: int) -> pa.Table:
    """A uniform sample without replacement: keep the ``n`` rows with the smallest random keys."""
    kept = pa.Table.from_batches([], schema=schema).append_column(_RANDOM_KEY, pa.array([], pa.float64()))
    for batch in connector.open_stream(request, schema).open_batches():
        random_keys = pc.random(batch.num_rows, initializer="system")
        keyed = pa.Table.from_batches([batch]).append_column(_RANDOM_KEY, random_keys)
        candidates = pa.concat_tables([kept, keyed])
        indices = pc.select_k_unstable(candidates, k=min(n, candidates.num_rows),
                                       sort_keys=[(_RANDOM_KEY, "ascending")])
        kept = candidates.take(indices)
    return kept.drop_columns([_RANDOM_KEY]).combine_chunks()


def _write(rows: pa.Table, fmt: SampleFormat, out: str | Path | IO[bytes]) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(rows, out)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(_text_safe(rows), out)
    elif fmt == "json":
        text = json.dumps(rows.to_pylist(), default=_json_value, ensure_ascii=False, indent=1).encode()
        if isinstance(out, (str, Path)):
            Path(out).write_bytes(text)
        else:
            out.write(text)
    else:
        raise ConfigError(f"sample format must be json, csv or parquet, not {fmt!r}")


def _text_safe(rows: pa.Table) -> pa.Table:
    """CSV has no binary type: binary columns are written as base64 text."""
    columns = [
        pa.array([None if v is None else base64.b64encode(v).decode() for v in col.to_pylist()], pa.string())
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type) else col
        for col in rows.columns
    ]
    return pa.Table.from_arrays(columns, names=rows.column_names)


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
