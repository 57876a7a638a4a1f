"""Targets as Dagster IO managers, so your own assets can read and write synced tables.

``load_input`` reads the upstream asset's table (a synced table, named by its
``dagster/table_name``, or one this IO manager wrote) as a polars DataFrame, streaming Arrow
batches from the connector. ``handle_output`` writes a polars DataFrame through the same
connector write path as a full-refresh sync (staging and swap), so it is atomic too. The
connection, secrets resolved, is the target's resource (``resources.SyncConnection``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa

from sync_assets.config.names import TableName
from sync_assets.connectors import connector_for
from sync_assets.connectors.interface import WriteOp
from sync_assets.connectors.requests import ReadRequest, SourceStream
from sync_assets.orchestration.resources import SyncConnection
from sync_assets.types.arrow import make_field

if TYPE_CHECKING:
    import polars as pl


class SyncTargetIOManager(dg.ConfigurableIOManager):
    """Reads and writes tables of one connection of the sync_assets configuration."""

    connection: SyncConnection

    def _connector(self):
        return connector_for(self.connection.name, self.connection.connection_spec())

    def _table_for(self, key: dg.AssetKey, metadata: dict | None = None) -> TableName:
        """The table a synced asset names in ``dagster/table_name`` (``<connection>.<table>``), else
        ``<schema>/<table>`` from the key (the assets this IO manager writes)."""
        named = str((metadata or {}).get("dagster/table_name", ""))
        if named.startswith(self.connection.name + "."):
            return TableName.parse(named[len(self.connection.name) + 1:])
        if len(key.path) < 2:
            return TableName(None, key.path[-1])
        return TableName(key.path[-2], key.path[-1])

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        upstream = context.upstream_output.definition_metadata if context.upstream_output else None
        table = self._table_for(context.asset_key, upstream)
        connector = self._connector()
        schema = connector.table_schema(table)
        if schema is None:
            raise dg.Failure(f"table {table} does not exist on connection {self.connection.name!r}; "
                             f"materialize {context.asset_key.to_user_string()} first")
        import polars as pl  # here, not at import: it costs every Dagster process ~28 MB

        stream = connector.open_stream(ReadRequest(table=table, columns=tuple(schema.names)), schema)
        return pl.from_arrow(stream.open_batches().read_all())

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if obj is None:
            return
        import polars as pl

        table = self._table_for(context.asset_key)
        arrow = obj.to_arrow(compat_level=pl.CompatLevel.oldest())
        schema = pa.schema([make_field(f.name, f.type) for f in arrow.schema])
        arrow = pa.Table.from_batches(arrow.to_batches(), schema=schema) if arrow.num_rows else schema.empty_table()
        stream = SourceStream(schema=schema, open_batches=lambda: pa.RecordBatchReader.from_batches(
            schema, arrow.to_batches(max_chunksize=100_000)), label=context.asset_key.to_user_string())
        result = self._connector().write(WriteOp("replace", table), stream)
        context.add_output_metadata({"dagster/row_count": result.rows_written,
                                     "dagster/table_name": f"{self.connection.name}.{table}"})
