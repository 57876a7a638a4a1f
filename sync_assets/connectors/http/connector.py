"""The HTTP source connector: a stream's endpoint read page by page into Arrow record batches.

An API entity is a stream like a table: its schema is the endpoint's (``records.infer_schema``,
from the declared types and the first page), a read walks the pages (``pages.walk``) and turns
each into a batch (``records.PageConverter``), gathering pages into batches of up to the
stream's ``batch_size`` rows, so memory stays flat however many pages there are. An incremental
read passes the target's watermark as the endpoint's ``since_param``. There is no SQL here: the
connector refuses catalog queries, and a stream option an API cannot honour is refused when the
config loads (``config.streams``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from sync_assets.config.connection_options import HttpOptions
from sync_assets.config.models import ConnectionSpec, HttpEndpoint
from sync_assets.config.names import TableName
from sync_assets.connectors.http.client import ApiClient
from sync_assets.connectors.http.pages import prefetched, walk
from sync_assets.connectors.http.records import PageConverter, infer_schema
from sync_assets.connectors.interface import Connector, SchemaInfo, TableInfo, WriteOp, WriteResult
from sync_assets.connectors.requests import Filter, ReadRequest, SourceReads, SourceStream
from sync_assets.errors import ConfigError
from sync_assets.types.value_edges import Problem

log = logging.getLogger("sync_assets")


class HttpConnector(Connector):
    kind = "http"

    def __init__(self, name: str, spec: ConnectionSpec, *, read_only: bool = False):
        super().__init__(name, spec, read_only=True)
        self.http_options = HttpOptions.model_validate(spec.options)
        self.client = ApiClient(name, self.http_options)

    # -- what an API has no notion of ------------------------------------------------------------
    def _no_sql(self, what: str) -> ConfigError:
        return ConfigError(f"connection {self.name!r} is an HTTP API: it has no {what}")

    def connect(self) -> Any:
        raise self._no_sql("database sessions")

    def table_schema(self, table: TableName) -> pa.Schema | None:
        raise self._no_sql("tables; its streams name an endpoint in their 'http' block")

    def query_schema(self, sql: str) -> pa.Schema:
        raise self._no_sql("SQL queries")

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        raise self._no_sql("SQL queries")

    def quote(self, identifier: str) -> str:
        return identifier

    def ddl_type(self, field: pa.Field) -> str:
        raise self._no_sql("column types")

    def write(self, op: WriteOp, stream: SourceStream, reads: SourceReads | None = None) -> WriteResult:
        raise self._no_sql("tables to write (an HTTP connection is a source only)")

    @property
    def database_name(self) -> str:
        return self.http_options.base_url

    def list_databases(self) -> list[str]:
        return [self.database_name]

    def list_schemas(self) -> list[SchemaInfo]:
        return []

    def list_tables(self, schema: str | None = None) -> list[TableInfo]:
        return []

    def foreign_keys(self) -> list:
        return []

    # -- reading -----------------------------------------------------------------------------------
    def endpoint_schema(self, endpoint: HttpEndpoint, stream: str) -> pa.Schema:
        """The stream's columns: declared types, then the fields of the first page's records."""
        first = next(walk(self.client, endpoint, stream, {}), None)
        schema = infer_schema(endpoint.column_types, first.records if first else [])
        if not schema.names:
            raise ConfigError(f"stream {stream!r}: GET {endpoint.path} returned no records and the stream declares "
                              "no column_types, so its columns are unknown")
        return schema

    def _params(self, request: ReadRequest) -> dict[str, Any]:
        """The run's query parameters: the watermark as ``since_param``."""
        endpoint = _endpoint(request)
        params: dict[str, Any] = {}
        for flt in request.filters:
            if isinstance(flt, Filter) and flt.op in (">", ">=") and endpoint.since_param:
                params[endpoint.since_param] = flt.value.isoformat() if hasattr(flt.value, "isoformat") \
                    else str(flt.value)
            else:
                raise ConfigError(f"stream {request.stream!r}: an HTTP endpoint can only be asked for records since "
                                  f"a watermark (since_param); it cannot apply {flt}")
        return params

    def render_select(self, request: ReadRequest, schema: pa.Schema, *, count_only: bool = False,
                      param_style: str | None = None, select_list: str | None = None) -> tuple[str, list[Any]]:
        """What the read requests, for the run log and metadata (no secrets: auth is not shown)."""
        endpoint = _endpoint(request)
        params = dict(endpoint.params) | self._params(request)
        paging = f", paged by {endpoint.pagination.style} ({endpoint.page_size} per page)" \
            if endpoint.pagination else ""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"GET {self.client.url(endpoint.path)}{'?' + query if query else ''}{paging}", []

    def count(self, request: ReadRequest, schema: pa.Schema) -> int:
        """Records the read would return (a dry run): the pages are walked, records counted."""
        total = 0
        for page in walk(self.client, _endpoint(request), request.stream or "", self._params(request)):
            total += len(page.records)
            if request.limit is not None and total >= request.limit:
                return request.limit
        return total

    def open_stream(self, request: ReadRequest, schema: pa.Schema) -> SourceStream:
        endpoint = _endpoint(request)
        stream_name = request.stream or endpoint.path
        params = self._params(request)
        pending: deque[list[Problem]] = deque()  # per batch yielded, until the shaping asks for them

        def batches() -> Iterator[pa.RecordBatch]:
            converter = PageConverter(schema)
            gathered: list[pa.RecordBatch] = []
            problems: list[Problem] = []
            gathered_rows = rows = 0
            for page in prefetched(walk(self.client, endpoint, stream_name, params)):
                records = page.records
                if request.limit is not None:
                    records = records[:max(0, request.limit - rows)]
                batch, found = converter.convert(records)
                problems += [_shifted(p, gathered_rows) for p in found]
                gathered.append(batch)
                gathered_rows += batch.num_rows
                rows += batch.num_rows
                if gathered_rows >= request.batch_size:
                    yield self._combined(gathered, problems, pending)
                    gathered, problems, gathered_rows = [], [], 0
                if request.limit is not None and rows >= request.limit:
                    break
            if gathered:
                yield self._combined(gathered, problems, pending)
            for field, count in converter.unknown_fields.items():
                log.warning("stream %r: field %r is in %s records but not in the stream's columns (it was not on "
                            "the first page); declare it in http.column_types to load it", stream_name, field,
                            f"{count:,}")

        stream = SourceStream(schema, lambda: pa.RecordBatchReader.from_batches(schema, batches()),
                              label=f"{stream_name} (GET {endpoint.path})")
        stream.rule_problems = lambda batch: pending.popleft() if pending else []
        return stream

    @staticmethod
    def _combined(batches: list[pa.RecordBatch], problems: list[Problem],
                  pending: deque[list[Problem]]) -> pa.RecordBatch:
        combined = pa.Table.from_batches(batches).combine_chunks().to_batches()
        batch = combined[0] if combined else batches[0]
        pending.append([_padded(p, batch.num_rows) for p in problems])
        return batch

    def close(self) -> None:
        self.client.close()


def _endpoint(request: ReadRequest) -> HttpEndpoint:
    if request.endpoint is None:
        raise ConfigError(f"stream {request.stream!r}: an HTTP source reads endpoints; the stream has no 'http' block")
    return request.endpoint


def _shifted(problem: Problem, rows_before: int) -> Problem:
    """A page's problem placed in the batch its page is gathered into (rows before it: not flagged)."""
    return _extended(problem, rows_before, 0)


def _padded(problem: Problem, rows: int) -> Problem:
    """A problem covering all ``rows`` of its gathered batch (rows after its page: not flagged)."""
    return _extended(problem, 0, rows - len(problem.mask))


def _extended(problem: Problem, before: int, after: int) -> Problem:
    if before <= 0 and after <= 0:
        return problem

    def padded(values: pa.Array, fill: object, arrow_type: pa.DataType) -> pa.Array:
        return pa.concat_arrays([pa.array([fill] * before, arrow_type), values, pa.array([fill] * after, arrow_type)])

    sent = problem.source_values
    return dataclasses.replace(problem, mask=padded(problem.mask, False, pa.bool_()),
                               source_values=None if sent is None else padded(sent, None, pa.string()))
