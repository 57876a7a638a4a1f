"""The resolved project: one ``TableSpec`` per stream with every default applied, and the ``Project``
that holds them with the connections, schedules and alerts. Everything downstream reads these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sync_assets.config.models import (
    DEFAULT_LOCK_TIMEOUT,
    AlertsSpec,
    AutomationSpec,
    ChunkSpec,
    ColumnRules,
    ConnectionSpec,
    DeleteDetection,
    ExecutionSpec,
    HttpEndpoint,
    PartitionSpec,
    RetrySpec,
    ScheduleSpec,
    SchemaDriftPolicy,
    SyncWindow,
    TransformSpec,
    VerifySpec,
)
from sync_assets.config.names import TableName
from sync_assets.errors import ConfigError


@dataclass(frozen=True)
class ParentKey:
    """``column`` of a child stream holds keys of ``parent_stream``'s ``parent_column``."""

    column: str
    parent_stream: str
    parent_column: str
    parent_table: TableName | None = None
    """The parent stream's target table (set when the project's streams are all known)."""


@dataclass(frozen=True)
class TableSpec:
    """One fully resolved stream: what to read, where to write it and how."""

    name: str
    file: Path
    source: str
    target: str
    source_table: TableName | None
    sql: str | None
    target_table: TableName
    mode: str
    primary_key: tuple[str, ...]
    update_key: str | None
    lookback: timedelta | int | float | None
    partition: PartitionSpec | None
    batch_size: int
    columns: tuple[str, ...] | None
    exclude_columns: tuple[str, ...]
    where: str | None
    limit: int | None
    group: str
    description: str | None
    asset_key: tuple[str, ...]
    schema_changes: str
    load_method: str = "auto"
    schedule: str | None = None
    automation: AutomationSpec | None = None
    source_asset: bool = True
    """The source table is an external asset upstream of the copy (``assets.source_asset_spec``)."""
    window: SyncWindow | None = None
    chunk: ChunkSpec | None = None
    deletes: DeleteDetection | None = None
    verify: VerifySpec | None = None
    on_bad_rows: str = "fail"
    late_partitions: int = 1
    freshness: timedelta | None = None
    schema_drift: SchemaDriftPolicy = SchemaDriftPolicy(added="add")
    retries: RetrySpec = RetrySpec()
    lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT
    on_change: bool = True
    depends_on: tuple[str, ...] = ()
    ignore_dependencies: tuple[str, ...] = ()
    deps: tuple[tuple[str, ...], ...] = ()
    """Asset keys of the tables loaded before this one (foreign keys, ``depends_on``, ``parent_key``)."""
    endpoint: HttpEndpoint | None = None
    """An HTTP source's endpoint (then ``source_table`` and ``sql`` are None)."""
    transform: TransformSpec | None = None
    validate: tuple[tuple[str, ColumnRules], ...] = ()
    """(column, rules) the transformed rows must keep."""
    parent_keys: tuple[ParentKey, ...] = ()
    orphans: str = "fail"
    orphan_attempts: int = 5
    owners: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    """(key, value) asset tags, sorted by key."""

    @property
    def label(self) -> str:
        return f"{self.file.name}: stream {self.name!r}"

    @property
    def source_object(self) -> str:
        """What the stream reads, for people: its table, ``GET <path>`` of an API, or "custom SQL"."""
        if self.endpoint is not None:
            return f"GET {self.endpoint.path}"
        return str(self.source_table) if self.source_table else "custom SQL"

    def fingerprint(self) -> str:
        """A stable code version: changes whenever the table's configuration changes."""
        import hashlib

        payload = repr(
            (self.source_table, self.sql, self.target_table, self.mode, self.primary_key,
             self.update_key, self.lookback, self.partition, self.columns, self.exclude_columns,
             self.where, self.limit, self.schema_changes, self.on_bad_rows, self.endpoint, self.transform,
             self.validate, self.parent_keys, self.orphans)
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Project:
    connections: dict[str, ConnectionSpec]
    tables: tuple[TableSpec, ...]
    config_dir: Path
    schedules: dict[str, ScheduleSpec] = field(default_factory=dict)
    alerts: AlertsSpec | None = None
    execution: ExecutionSpec | None = None
    """The ``execution:`` block, None when no file has one (``orchestration.executors``)."""

    def table(self, name: str) -> TableSpec:
        for table in self.tables:
            if name in (table.name, "/".join(table.asset_key), str(table.target_table)):
                return table
        raise ConfigError(f"no stream named {name!r}; known: {', '.join(t.name for t in self.tables)}")


DEFAULT_BATCH_SIZE = 100_000


DEFAULT_SCHEMA = {"duckdb": "main", "mssql": "dbo"}
"""The schema a stream without one lands in, per target kind (PostgreSQL: public)."""
