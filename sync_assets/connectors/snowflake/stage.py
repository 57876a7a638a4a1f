"""Snowflake's fast path for large tables: unload to a temporary stage as Parquet, GET, stream.

For a big unfiltered read, ``COPY INTO @stage`` lets the warehouse write compressed Parquet in
parallel and ``GET`` downloads the files over parallel connections, which beats paging a result
set through the query API. The files are then read back as Arrow batches (one row group at a
time, each file deleted once read), so the target's usual staging-and-swap load takes them and
memory stays flat. The sequence is:

    CREATE TEMPORARY STAGE -> COPY INTO @stage/part FROM (SELECT ...) -> GET @stage/ file://dir/
    -> DROP STAGE (always, even when a step failed) -> stream the Parquet files -> delete them

The local folder is removed whatever happens: on success, on a failed step, and when the reader
is abandoned half-way (the generator's ``finally``). A temporary stage also vanishes with its
session, so a crashed process leaves nothing behind in Snowflake.

Bound parameters cannot be used inside ``COPY INTO <location>``, so only reads without filters
take this path (full refreshes, the case where it pays); incremental reads stream as usual.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from sync_assets.connectors.requests import ReadRequest
from sync_assets.connectors.snowflake.types import TZ_TIMESTAMPS
from sync_assets.errors import DataError
from sync_assets.types.arrow import native_type

log = logging.getLogger("sync_assets")


class UnloadingConnector(Protocol):
    """What the unload needs of the Snowflake connector (named here so this module need not import it)."""

    opts: Any

    def render_select(self, request: ReadRequest, schema: pa.Schema) -> tuple[str, list[Any]]: ...
    def quote(self, identifier: str) -> str: ...
    def session(self) -> contextlib.AbstractContextManager: ...
    def conform(self, batch: pa.RecordBatch, schema: pa.Schema, request: ReadRequest) -> pa.RecordBatch: ...

FILE_FORMAT = "FILE_FORMAT = (TYPE = PARQUET COMPRESSION = SNAPPY)"
Execute = Callable[[str], list[tuple]]
"""Runs one statement on an open Snowflake session and returns its rows."""


@dataclass(frozen=True)
class StageStatements:
    """The statements of one unload, for one uniquely named temporary stage."""

    stage: str
    """The stage's quoted, qualified name."""

    def create(self) -> str:
        return f"CREATE TEMPORARY STAGE {self.stage} {FILE_FORMAT}"

    def unload(self, select_sql: str, max_file_bytes: int) -> str:
        return (f"COPY INTO @{self.stage}/part FROM ({select_sql}) {FILE_FORMAT} "
                f"HEADER = TRUE MAX_FILE_SIZE = {int(max_file_bytes)}")

    def download(self, local_dir: Path) -> str:
        target = f"file://{local_dir.as_posix()}/".replace("'", "\\'")
        return f"GET @{self.stage}/ '{target}' PARALLEL = 8"

    def drop(self) -> str:
        return f"DROP STAGE IF EXISTS {self.stage}"


def unload_to_local(execute: Execute, statements: StageStatements, select_sql: str, local_dir: Path,
                    max_file_bytes: int) -> list[Path]:
    """Run the unload and download; the stage is dropped even when a step fails."""
    try:
        execute(statements.create())
        unloaded = execute(statements.unload(select_sql, max_file_bytes))
        execute(statements.download(local_dir))
    finally:
        try:
            execute(statements.drop())
        except Exception as exc:  # the temporary stage still ends with its session
            log.warning("could not drop stage %s (it ends with the session): %s", statements.stage, exc)
    files = sorted(local_dir.rglob("*.parquet"))
    rows = sum(int(row[0]) for row in unloaded) if unloaded else 0
    if rows and not files:
        raise DataError(f"stage {statements.stage}: {rows} rows were unloaded but GET brought back no Parquet file")
    log.info("unloaded %s rows into %d Parquet file(s) in %s", f"{rows:,}", len(files), local_dir)
    return files


def parquet_batches(files: list[Path], schema: pa.Schema, batch_rows: int,
                    conform: Callable[[pa.RecordBatch], pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Read the unloaded files as canonical batches, deleting each file once it is read."""
    for path in files:
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=batch_rows):
                yield conform(batch.rename_columns(schema.names))
        path.unlink()


def streamed_unload(execute: Execute, statements: StageStatements, select_sql: str, local_dir: Path,
                    schema: pa.Schema, conform: Callable[[pa.RecordBatch], pa.RecordBatch], *,
                    max_file_bytes: int, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Unload, download and stream; ``local_dir`` is removed on success, failure or abandonment."""
    try:
        files = unload_to_local(execute, statements, select_sql, local_dir, max_file_bytes)
        yield from parquet_batches(files, schema, batch_rows, conform)
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)


def unload_select(connector: UnloadingConnector, request: ReadRequest, schema: pa.Schema) -> str:
    """The read's SELECT, wrapped so zoned timestamps reach Parquet as UTC wall-clock values."""

    inner, params = connector.render_select(request, schema)
    if params:
        raise ValueError("a stage unload cannot take bound parameters")
    columns = []
    for field in schema:
        column = connector.quote(field.name)
        if (native_type(field, "snowflake") or "").split("(")[0] in TZ_TIMESTAMPS:
            column = f"CAST(CONVERT_TIMEZONE('UTC', {column}) AS TIMESTAMP_NTZ(9)) AS {column}"
        columns.append(column)
    return f"SELECT {', '.join(columns)} FROM ({inner}) AS sync_unload"


def unload_batches(connector: UnloadingConnector, request: ReadRequest, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The fast path for one read, on its own Snowflake session."""
    opts = connector.opts
    stage = ".".join(connector.quote(p) for p in
                     (opts.database, opts.schema_, f"SYNC_ASSETS_UNLOAD_{uuid.uuid4().hex[:16].upper()}"))
    local_dir = Path(tempfile.mkdtemp(prefix="sync_assets_unload_", dir=opts.unload_local_dir))
    with connector.session() as conn, contextlib.closing(conn.cursor()) as cur:
        def execute(sql: str) -> list[tuple]:
            cur.execute(sql)
            return cur.fetchall()

        yield from streamed_unload(
            execute, StageStatements(stage), unload_select(connector, request, schema), local_dir, schema,
            lambda batch: connector.conform(batch, schema, request),
            max_file_bytes=opts.unload_max_file_mb << 20, batch_rows=request.batch_size,
        )
