"""PostgreSQL through ADBC: Arrow reads (binary COPY decoded in C++) and Arrow ingestion, with the
scaled-decimal workaround and batch sizing they need.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.config.names import TableName
from sync_assets.connectors.interface import Connector


@contextlib.contextmanager
def adbc_session(uri: str) -> Iterator[Any]:
    """An ADBC PostgreSQL connection (autocommit), closed with its database handle afterwards."""
    import adbc_driver_manager
    import adbc_driver_postgresql

    with adbc_driver_postgresql.connect(uri) as database, adbc_driver_manager.AdbcConnection(database) as connection:
        yield connection


@contextlib.contextmanager
def adbc_query(uri: str, sql: str, batch_bytes: int) -> Iterator[pa.RecordBatchReader]:
    """Stream the result of ``sql`` (no parameters: ADBC runs it as a COPY) as Arrow batches.

    Closed children first, on success and on failure alike: the result stream, the statement,
    the connection, the database (ADBC refuses to close a handle with open children, and a
    refusal would follow, and hide, the query's own error)."""
    import adbc_driver_manager

    with adbc_session(uri) as connection, adbc_driver_manager.AdbcStatement(connection) as statement:
        statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(batch_bytes)})
        statement.set_sql_query(sql)
        handle, _ = statement.execute_query()
        with pa.RecordBatchReader.from_stream(handle) as reader:
            yield reader


def adbc_ingest(connection: Any, table: TableName, batches: pa.RecordBatchReader) -> int:
    """Append every batch to ``table`` through binary COPY; returns the rows written (-1 if unknown)."""
    import adbc_driver_manager

    with adbc_driver_manager.AdbcStatement(connection) as statement:
        statement.set_options(**{
            adbc_driver_manager.INGEST_OPTION_TARGET_TABLE: table.name,
            "adbc.ingest.target_db_schema": table.schema or "public",
            adbc_driver_manager.INGEST_OPTION_MODE: adbc_driver_manager.INGEST_OPTION_MODE_APPEND,
        })
        statement.bind_stream(batches.__arrow_c_stream__())
        return statement.execute_update()


def travels_scaled(field: pa.Field) -> bool:
    """numeric(p, s) with p <= 18 fits a bigint once scaled by 10^s, exactly."""
    return pa.types.is_decimal128(field.type) and field.type.precision <= 18


def arrow_select_list(connector: Connector, schema: pa.Schema) -> str:
    expressions = []
    for field in schema:
        if travels_scaled(field):
            scaled = connector.quote(field.name) + (f" * 1{'0' * field.type.scale}" if field.type.scale else "")
            expressions.append(f"({scaled})::int8 AS {connector.quote(field.name)}")
        else:
            expressions.append(connector.select_expression(field))
    return ", ".join(expressions)


def unscale(batch: pa.RecordBatch, schema: pa.Schema, scaled: list[int]) -> pa.RecordBatch:
    """Turn scaled bigints back into decimals: the integer is the decimal's unscaled value."""
    if not scaled:
        return batch
    columns = list(batch.columns)
    for i in scaled:
        columns[i] = pc.cast(columns[i], pa.decimal128(19, 0)).view(schema.field(i).type)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def batch_bytes(batch_rows: int) -> int:
    """ADBC batches by bytes: about ``batch_rows`` rows of ~40 bytes, between 1 and 16 MiB.

    Small batches keep peak memory low while DuckDB or a COPY ingest consumes them (measured on
    2 M rows: 4 MiB batches peak ~60 MB lower than ADBC's 16 MiB default, at the same speed)."""
    return max(1 << 20, min(16 << 20, batch_rows * 40))
