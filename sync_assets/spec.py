"""The YAML configuration: validated models and the loader.

This module owns everything a user writes in ``config/``: connections (with secrets taken from
environment variables), replications shaped like Sling's (``source``, ``target``, ``defaults``,
``streams``), and the operations settings: named schedules, alert channels, and the foreign keys
``sync-assets discover`` records (``lineage``). Loading validates everything up front and never
touches a database; every error names the file, the stream (table) and the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sync_assets.errors import ConfigError

DEFAULT_LOCK_TIMEOUT = timedelta(minutes=5)
"""How long a run waits for another run writing the same target table, unless a stream says."""

PATH_KEYS = frozenset({"path", "private_key_file"})
"""Connection options holding file paths; relative ones are relative to their YAML file."""
SECRET_KEYS = frozenset({"password", "private_key_passphrase", "token", "webhook_url"})
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _valid_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'") from None
    return value


def parse_duration(value: Any) -> timedelta:
    """``"10 minutes"`` (or a number of seconds) as a timedelta."""
    parsed = parse_lookback(value)
    if isinstance(parsed, (int, float)):
        return timedelta(seconds=parsed)
    if parsed is None:
        raise ValueError("a duration is required")
    return parsed


class ChangeSensorSpec(_Strict):
    """Poll this source's tables for changes (one cheap query per table per tick)."""

    minimum_interval: str | int = "60 seconds"
    """Time between ticks: ``"5 minutes"`` or a number of seconds."""

    @field_validator("minimum_interval")
    @classmethod
    def _valid_interval(cls, value: Any) -> Any:
        parse_duration(value)
        return value

    @property
    def interval_seconds(self) -> int:
        return max(1, int(parse_duration(self.minimum_interval).total_seconds()))


class ConnectionSpec(_Strict):
    """One database. Kind-specific keys are checked by the connector's own ``options`` model."""

    kind: Literal["postgres", "duckdb", "mssql", "snowflake"]
    role: Literal["source", "target", "both"] = "both"
    protected: bool = False
    max_concurrent_reads: int = Field(default=4, ge=1)
    change_sensor: ChangeSensorSpec | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _snowflake_reads_only(cls, data: Any) -> Any:
        """Snowflake is a source only: its connections default to, and must keep, role source."""
        if isinstance(data, dict) and data.get("kind") == "snowflake":
            data = {"role": "source", **data}
            if data["role"] != "source":
                raise ValueError("a snowflake connection is a source only: role must be 'source'")
        return data

    @property
    def writable(self) -> bool:
        return self.role != "source" and not self.protected


class PartitionSpec(_Strict):
    """Date partitioning: each Dagster partition overwrites exactly its time window."""

    column: str
    granularity: Literal["hourly", "daily", "weekly", "monthly"] = "daily"
    start: date | datetime
    end_offset: int = 0
    timezone: str = "UTC"


LOOKBACK_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def parse_lookback(value: Any) -> timedelta | int | float | None:
    """``"7 days"`` / ``"2 hours"`` become a timedelta; a bare number is a numeric key offset."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*", str(value).lower())
    if not match or match.group(2) not in LOOKBACK_UNITS:
        raise ValueError(
            f"lookback {value!r} is not a number or '<n> <unit>' with unit one of "
            f"{', '.join(u + 's' for u in LOOKBACK_UNITS)}"
        )
    return timedelta(seconds=float(match.group(1)) * LOOKBACK_UNITS[match.group(2)])


class SyncWindow(_Strict):
    """A daily time window in which a table may sync; ``19:00-07:00`` wraps past midnight."""

    start: time
    end: time
    timezone: str = "UTC"

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        """``"19:00-07:00"`` is short for ``{start: "19:00", end: "07:00"}`` (UTC)."""
        if isinstance(data, str):
            match = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", data)
            if not match:
                raise ValueError(f"window {data!r} is not 'HH:MM-HH:MM'")
            return {"start": match.group(1), "end": match.group(2)}
        return data

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        return _valid_timezone(value)

    @model_validator(mode="after")
    def _not_empty(self) -> SyncWindow:
        if self.start == self.end:
            raise ValueError("window start and end are equal; leave the window out to allow any time")
        return self

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone)).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.timezone}"


class ChunkSpec(_Strict):
    """Copy a large table over several runs: at most ``rows`` rows, or one ``range`` of the
    update key, beyond the target's watermark per run, until the copy has caught up."""

    rows: int | None = Field(default=None, ge=1)
    range: str | int | float | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ChunkSpec:
        if (self.rows is None) == (self.range is None):
            raise ValueError("give exactly one of 'rows' (rows per run) or 'range' (update-key span per run)")
        if self.range is not None:
            parse_lookback(self.range)
        return self

    @property
    def key_range(self) -> timedelta | int | float | None:
        return parse_lookback(self.range)


class SchemaDriftPolicy(_Strict):
    """What a difference between source and target columns does: ``add`` a new column, ``warn``
    (the schema_drift check fails with severity WARN and the sync goes on) or ``fail`` (the sync
    refuses to write and the check fails with severity ERROR)."""

    added: Literal["add", "warn", "fail"] | None = None
    dropped: Literal["warn", "fail"] = "warn"
    type_changed: Literal["warn", "fail"] = "warn"


class RetrySpec(_Strict):
    """Retries for transient errors (connection drops, deadlocks, serialization failures) only."""

    max_retries: int = Field(default=3, ge=0)
    delay: str | int = "10 seconds"
    max_delay: str | int = "10 minutes"

    @field_validator("delay", "max_delay")
    @classmethod
    def _valid_duration(cls, value: Any) -> Any:
        parse_duration(value)
        return value


class StreamOptions(_Strict):
    """Per-table settings; every key may also be given once under ``defaults``."""

    sql: str | None = None
    object: str | None = None
    mode: Literal["full_refresh", "incremental", "smart", "date_partitioned"] | None = None
    primary_key: list[str] | None = None
    update_key: str | None = None
    lookback: str | int | float | None = None
    partition: PartitionSpec | None = None
    batch_size: int | None = Field(default=None, ge=1)
    columns: list[str] | None = None
    exclude_columns: list[str] | None = None
    exclude_tables: list[str] | None = None
    where: str | None = None
    limit: int | None = Field(default=None, ge=0)
    group: str | None = None
    description: str | None = None
    asset_key: list[str] | None = None
    schema_changes: Literal["evolve", "fail"] | None = None
    load_method: Literal["auto", "rename", "switch"] | None = None
    """How a full load replaces an existing target: ``rename`` builds a new table and renames it
    into place; ``switch`` (SQL Server) keeps the target's indexes, partition scheme and
    constraints and switches the new rows in; ``auto``: switch when a SQL Server target is
    partitioned, else rename."""
    disabled: bool = False
    schedule: str | None = None
    """Name of a schedule under the top-level ``schedules`` key."""
    window: SyncWindow | None = None
    chunk: ChunkSpec | None = None
    late_partitions: int | None = Field(default=None, ge=1)
    """Date-partitioned tables: re-sync the last N partitions on each schedule or sensor tick."""
    freshness: str | int | None = None
    """Maximum age of the last successful sync (``"6 hours"``), checked by a freshness check."""
    schema_drift: SchemaDriftPolicy | None = None
    retries: RetrySpec | None = None
    lock_timeout: str | int | None = None
    """How long a run waits while another run writes the same target table (``"5 minutes"``, the
    default, or seconds) before it fails naming the table and the other run."""
    on_change: bool = True
    """Include this table in its source connection's change sensor (when it has one)."""
    depends_on: list[str] | None = None
    """Streams to load before this one, besides the foreign keys in ``lineage``."""
    ignore_dependencies: list[str] | None = None
    """Parent streams whose foreign keys to ignore: how a foreign-key cycle is broken."""

    @field_validator("primary_key", "columns", "exclude_columns", "depends_on", "ignore_dependencies",
                     mode="before")
    @classmethod
    def _string_to_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("lookback")
    @classmethod
    def _valid_lookback(cls, value: Any) -> Any:
        parse_lookback(value)
        return value

    @field_validator("freshness", "lock_timeout")
    @classmethod
    def _valid_freshness(cls, value: Any) -> Any:
        if value is not None:
            parse_duration(value)
        return value


class ScheduleSpec(_Strict):
    """A named cron schedule; streams opt in with ``schedule: NAME`` (per table, or per group
    through a replication's ``defaults``)."""

    cron: str
    timezone: str = "UTC"
    description: str | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(value):
            raise ValueError(f"{value!r} is not a valid cron expression (five fields, e.g. '0 19 * * *')")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        return _valid_timezone(value)


ALERT_EVENTS = ("run_failure", "check_failure", "freshness")
AlertEvent = Literal["run_failure", "check_failure", "freshness"]


class _Channel(_Strict):
    events: list[AlertEvent] = Field(default_factory=lambda: list(ALERT_EVENTS))
    timeout_s: int = Field(default=30, ge=1)


class SlackChannel(_Channel):
    kind: Literal["slack"]
    webhook_url: str


class EmailChannel(_Channel):
    kind: Literal["email"]
    host: str
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)


class WebhookChannel(_Channel):
    kind: Literal["webhook"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    """Header values are secrets: write each as ``{env: NAME}``."""


AlertChannel = Annotated[SlackChannel | EmailChannel | WebhookChannel, Field(discriminator="kind")]


class AlertsSpec(_Strict):
    ui_base_url: str = "http://localhost:3000"
    """Where the Dagster UI is served; messages link to ``{ui_base_url}/runs/{run_id}``."""
    channels: dict[str, AlertChannel] = Field(default_factory=dict)


class ForeignKeySpec(_Strict):
    """One foreign key found in a source catalog: ``child`` references ``parent``."""

    connection: str
    child: str
    parent: str
    constraint: str | None = None
    columns: list[str] = Field(default_factory=list)


class LineageSpec(_Strict):
    foreign_keys: list[ForeignKeySpec] = Field(default_factory=list)


class ReplicationFile(_Strict):
    source: str
    target: str
    defaults: StreamOptions = StreamOptions()
    streams: dict[str, StreamOptions | None]


class ConfigFile(_Strict):
    connections: dict[str, ConnectionSpec] = Field(default_factory=dict)
    replications: list[ReplicationFile] = Field(default_factory=list)
    schedules: dict[str, ScheduleSpec] = Field(default_factory=dict)
    alerts: AlertsSpec | None = None
    lineage: LineageSpec | None = None
    catalog: dict[str, dict[str, list[str]]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _single_replication(cls, data: Any) -> Any:
        """A file may hold one replication at top level (Sling's shape) or a list of them."""
        if isinstance(data, dict) and "streams" in data:
            data = dict(data)
            single = {k: data.pop(k) for k in ("source", "target", "defaults", "streams") if k in data}
            data["replications"] = [*data.get("replications", []), single]
        return data


@dataclass(frozen=True)
class TableName:
    """A schema-qualified table name, kept exactly as written (case and spaces preserved)."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> TableName:
        return cls._from_parts(_split_qualified(text))

    @classmethod
    def from_template(cls, template: str, values: dict[str, str]) -> TableName:
        """The table an ``object`` template names: the template is split into its parts first, then
        each part's placeholders are replaced by the names exactly as they are, so a substituted
        name holding a dot, a quote or spaces (``Odd.Name``, ``q"uote``) is never re-split or unquoted.
        Raises KeyError for an unknown placeholder, ValueError for a malformed one."""
        return cls._from_parts([part.format(**values) for part in _split_qualified(template)])

    @classmethod
    def _from_parts(cls, parts: list[str]) -> TableName:
        if len(parts) == 1:
            return cls(None, parts[0])
        return cls(".".join(parts[:-1]), parts[-1])

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def quote_part(text: str) -> str:
    """One part of a table name in stream syntax, double-quoted with inner quotes doubled, so that
    ``TableName.parse`` gives it back exactly."""
    return '"' + text.replace('"', '""') + '"'


def _split_qualified(text: str) -> list[str]:
    """Split ``schema.table`` honouring double quotes: ``"my schema"."Odd.Name"``."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and i + 1 < len(text) and text[i + 1] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return [p.strip() if not p.startswith(" ") else p for p in parts]


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
    window: SyncWindow | None = None
    chunk: ChunkSpec | None = None
    late_partitions: int = 1
    freshness: timedelta | None = None
    schema_drift: SchemaDriftPolicy = SchemaDriftPolicy(added="add")
    retries: RetrySpec = RetrySpec()
    lock_timeout: timedelta = DEFAULT_LOCK_TIMEOUT
    on_change: bool = True
    depends_on: tuple[str, ...] = ()
    ignore_dependencies: tuple[str, ...] = ()
    deps: tuple[tuple[str, ...], ...] = ()
    """Asset keys of the tables loaded before this one (foreign keys and ``depends_on``)."""

    @property
    def label(self) -> str:
        return f"{self.file.name}: stream {self.name!r}"

    def fingerprint(self) -> str:
        """A stable code version: changes whenever the table's configuration changes."""
        import hashlib

        payload = repr(
            (self.source_table, self.sql, self.target_table, self.mode, self.primary_key,
             self.update_key, self.lookback, self.partition, self.columns, self.exclude_columns,
             self.where, self.limit, self.schema_changes)
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Project:
    connections: dict[str, ConnectionSpec]
    tables: tuple[TableSpec, ...]
    config_dir: Path
    schedules: dict[str, ScheduleSpec] = field(default_factory=dict)
    alerts: AlertsSpec | None = None

    def table(self, name: str) -> TableSpec:
        for table in self.tables:
            if name in (table.name, "/".join(table.asset_key), str(table.target_table)):
                return table
        raise ConfigError(f"no stream named {name!r}; known: {', '.join(t.name for t in self.tables)}")


DEFAULT_BATCH_SIZE = 100_000
DEFAULT_SCHEMA = {"duckdb": "main", "mssql": "dbo"}
"""The schema a stream without one lands in, per target kind (PostgreSQL: public)."""


def resolve_env(value: Any, where: str, key: str = "") -> Any:
    """Replace ``{env: NAME}`` and ``${NAME}`` / ``${NAME:-default}`` by environment values."""
    if isinstance(value, dict) and set(value) == {"env"}:
        name = value["env"]
        if name not in os.environ:
            raise ConfigError(f"{where}: key {key!r} needs environment variable {name}, which is not set")
        return os.environ[name]
    if isinstance(value, dict):
        return {k: resolve_env(v, where, k) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, where, key) for v in value]
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: key {key!r} needs environment variable {name}, which is not set")

        return ENV_PATTERN.sub(substitute, value)
    return value


def _check_secrets(options: dict[str, Any], where: str, secret_keys: frozenset[str] = SECRET_KEYS) -> None:
    for key, value in options.items():
        if key in secret_keys and not (isinstance(value, dict) and set(value) == {"env"}):
            if not (isinstance(value, str) and ENV_PATTERN.fullmatch(value)):
                raise ConfigError(
                    f"{where}: key {key!r} is a secret and must come from the environment: "
                    f"write it as {{env: VARIABLE_NAME}}"
                )


def _resolve_alert_secrets(path: Path, raw: dict[str, Any]) -> None:
    """Alert channels keep webhook URLs, passwords and header values in the environment."""
    alerts = raw.get("alerts")
    if not isinstance(alerts, dict) or not isinstance(alerts.get("channels"), dict):
        return
    for name, channel in alerts["channels"].items():
        if not isinstance(channel, dict):
            continue
        where = f"{path}: alert channel {name!r}"
        _check_secrets(channel, where)
        headers = channel.get("headers")
        if isinstance(headers, dict):
            _check_secrets(headers, f"{where} headers", frozenset(headers))
        alerts["channels"][name] = resolve_env(channel, where)


def _format_validation_error(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        stream = ""
        if "streams" in loc:
            idx = loc.index("streams")
            if idx + 1 < len(loc):
                stream = f" stream {loc[idx + 1]!r}"
                loc = loc[idx + 2:]
        elif "connections" in loc:
            idx = loc.index("connections")
            stream = f" connection {loc[idx + 1]!r}" if idx + 1 < len(loc) else ""
            loc = loc[idx + 2:]
        loc = [p for p in loc if not p.isdigit() and p not in ("replications", "StreamOptions")]
        key = ".".join(loc) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{path}:{stream} key {key!r}: {message}")
    return "\n".join(lines)


def _read_file(path: Path) -> ConfigFile:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    for name, conn in (raw.get("connections") or {}).items():
        if isinstance(conn, dict):
            _check_secrets(conn.get("options") or {}, f"{path}: connection {name!r}")
    _resolve_alert_secrets(path, raw)
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None


def _merge(defaults: StreamOptions, stream: StreamOptions | None) -> dict[str, Any]:
    merged = defaults.model_dump(exclude_unset=True)
    if stream is not None:
        merged.update(stream.model_dump(exclude_unset=True))
    return merged


def _asset_key_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or "_"


def _resolve_table(
    path: Path, stream_name: str, opts: dict[str, Any], replication: ReplicationFile,
    connections: dict[str, ConnectionSpec],
) -> TableSpec:
    where = f"{path}: stream {stream_name!r}"
    mode = opts.get("mode") or "full_refresh"
    source_table = None if opts.get("sql") else TableName.parse(stream_name)
    object_template = opts.get("object") or "{stream_schema}.{stream_table}"
    stream_ref = TableName.parse(stream_name)
    try:
        target_table = TableName.from_template(object_template, {
            "stream_schema": stream_ref.schema or DEFAULT_SCHEMA.get(connections[replication.target].kind, "public"),
            "stream_table": stream_ref.name,
            "source": replication.source,
            "target": replication.target,
        })
    except KeyError as exc:
        raise ConfigError(
            f"{where}: key 'object' uses unknown placeholder {exc}; "
            "use {stream_schema}, {stream_table}, {source} or {target}"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{where}: key 'object' is not a valid template ({exc}): {object_template!r}") from None
    primary_key = tuple(opts.get("primary_key") or ())
    update_key = opts.get("update_key")
    partition = opts.get("partition")
    if isinstance(partition, dict):
        partition = PartitionSpec.model_validate(partition)
    if mode in ("incremental", "smart") and not update_key and not primary_key:
        raise ConfigError(f"{where}: key 'update_key': mode {mode!r} needs an update_key (or a primary_key to use as one)")
    if mode == "date_partitioned" and partition is None:
        raise ConfigError(f"{where}: key 'partition': mode 'date_partitioned' needs a partition block (column, granularity, start)")
    if partition is not None and mode != "date_partitioned":
        raise ConfigError(f"{where}: key 'partition' is only used with mode 'date_partitioned' (mode is {mode!r})")
    if mode in ("incremental", "smart") and not update_key:
        if len(primary_key) != 1:
            raise ConfigError(f"{where}: key 'update_key': mode {mode!r} needs an update_key")
        update_key = primary_key[0]
    if opts.get("lookback") is not None and mode not in ("incremental", "smart"):
        raise ConfigError(f"{where}: key 'lookback' applies to incremental and smart modes only (mode is {mode!r})")
    lookback = parse_lookback(opts.get("lookback"))
    if lookback is not None and not primary_key:
        raise ConfigError(
            f"{where}: key 'lookback' re-reads rows, so it needs a primary_key to merge on "
            "(without one the re-read rows would be appended twice)"
        )
    columns = opts.get("columns")
    exclude = tuple(opts.get("exclude_columns") or ())
    if columns:
        for key_col in (*primary_key, *( [update_key] if update_key else [])):
            if key_col not in columns:
                raise ConfigError(f"{where}: key 'columns' must include key column {key_col!r}")
    for key_col in (*primary_key, *([update_key] if update_key else [])):
        if key_col in exclude:
            raise ConfigError(f"{where}: key 'exclude_columns' removes key column {key_col!r}")
    asset_key = tuple(opts.get("asset_key") or [
        _asset_key_part(target_table.schema or replication.target), _asset_key_part(target_table.name)
    ])
    operations = _resolve_operations(where, opts, mode, update_key, primary_key)
    return TableSpec(
        name=stream_name,
        file=path,
        source=replication.source,
        target=replication.target,
        source_table=source_table,
        sql=opts.get("sql"),
        target_table=target_table,
        mode=mode,
        primary_key=primary_key,
        update_key=update_key,
        lookback=lookback,
        partition=partition,
        batch_size=opts.get("batch_size") or DEFAULT_BATCH_SIZE,
        columns=tuple(columns) if columns else None,
        exclude_columns=exclude,
        where=opts.get("where"),
        limit=opts.get("limit"),
        group=opts.get("group") or _asset_key_part(replication.source),
        description=opts.get("description"),
        asset_key=asset_key,
        schema_changes=opts.get("schema_changes") or "evolve",
        load_method=_load_method(where, opts, connections[replication.target]),
        **operations,
    )


def _load_method(where: str, opts: dict[str, Any], target: ConnectionSpec) -> str:
    method = opts.get("load_method") or "auto"
    if method == "switch" and target.kind != "mssql":
        raise ConfigError(f"{where}: key 'load_method': 'switch' is SQL Server's ALTER TABLE ... SWITCH, but the "
                          f"target is a {target.kind} connection; use 'auto' or 'rename'")
    return method


def _as_model(model: type[BaseModel], value: Any) -> Any:
    """``defaults`` merged into a stream arrive as plain dicts; turn them back into models."""
    return model.model_validate(value) if isinstance(value, dict) else value


def _resolve_operations(where: str, opts: dict[str, Any], mode: str, update_key: str | None,
                        primary_key: tuple[str, ...]) -> dict[str, Any]:
    """The automation and operations settings of one stream, checked against its mode."""
    chunk = _as_model(ChunkSpec, opts.get("chunk"))
    if chunk is not None and mode not in ("incremental", "smart"):
        raise ConfigError(f"{where}: key 'chunk' applies to incremental and smart modes only (mode is {mode!r}): "
                          "a full refresh or a partition overwrite is one transaction")
    late = opts.get("late_partitions")
    if late is not None and mode != "date_partitioned":
        raise ConfigError(f"{where}: key 'late_partitions' applies to mode 'date_partitioned' only (mode is {mode!r})")
    schema_changes = opts.get("schema_changes") or "evolve"
    drift = _as_model(SchemaDriftPolicy, opts.get("schema_drift")) or SchemaDriftPolicy()
    if drift.added is None:
        drift = drift.model_copy(update={"added": "add" if schema_changes == "evolve" else "fail"})
    elif drift.added == "add" and schema_changes == "fail":
        raise ConfigError(f"{where}: key 'schema_drift.added' is 'add' but 'schema_changes' is 'fail'; "
                          "choose one (schema_changes: fail is the same as schema_drift.added: fail)")
    freshness = opts.get("freshness")
    return {
        "schedule": opts.get("schedule"),
        "window": _as_model(SyncWindow, opts.get("window")),
        "chunk": chunk,
        "late_partitions": late or 1,
        "freshness": parse_duration(freshness) if freshness is not None else None,
        "schema_drift": drift,
        "retries": _as_model(RetrySpec, opts.get("retries")) or RetrySpec(),
        "lock_timeout": parse_duration(opts["lock_timeout"]) if opts.get("lock_timeout") is not None
        else DEFAULT_LOCK_TIMEOUT,
        "on_change": opts.get("on_change", True),
        "depends_on": tuple(opts.get("depends_on") or ()),
        "ignore_dependencies": tuple(opts.get("ignore_dependencies") or ()),
    }


def load_project(config_dir: str | Path, *, skip_unresolved_wildcards: bool = False) -> Project:
    """Read every ``*.yaml`` in ``config_dir`` (not sub-folders) into a validated Project."""
    config_dir = Path(config_dir)
    files = sorted(p for p in config_dir.glob("*.y*ml") if p.is_file())
    if not files:
        raise ConfigError(f"{config_dir}: no *.yaml configuration files found")
    return load_files(files, config_dir, skip_unresolved_wildcards=skip_unresolved_wildcards)


def load_files(files: list[Path], config_dir: Path | None = None, *, skip_unresolved_wildcards: bool = False) -> Project:
    """Load and validate config files; ``skip_unresolved_wildcards`` lets ``sync-assets discover``
    load a project whose wildcard streams have no catalog yet (it is what writes the catalog)."""
    parsed = [(path, _read_file(path)) for path in files]
    catalog: dict[str, dict[str, list[str]]] = {}
    for _, cfg in parsed:
        for connection, schemas in cfg.catalog.items():
            catalog.setdefault(connection, {}).update(schemas)
    connections: dict[str, ConnectionSpec] = {}
    for path, cfg in parsed:
        for name, conn in cfg.connections.items():
            if name in connections:
                raise ConfigError(f"{path}: connection {name!r} is defined twice")
            resolved = resolve_env(conn.options, f"{path}: connection {name!r}")
            for key in PATH_KEYS & set(resolved):
                if resolved[key] and not Path(resolved[key]).is_absolute():
                    resolved[key] = str((path.parent / resolved[key]).resolve())
            from sync_assets.connectors import validate_options

            connections[name] = conn.model_copy(
                update={"options": validate_options(conn.kind, resolved, f"{path}: connection {name!r}")}
            )
    tables: list[TableSpec] = []
    seen_keys: dict[tuple[str, ...], str] = {}
    for path, cfg in parsed:
        for replication in cfg.replications:
            for role in ("source", "target"):
                conn_name = getattr(replication, role)
                if conn_name not in connections:
                    raise ConfigError(
                        f"{path}: key {role!r}: unknown connection {conn_name!r}; "
                        f"defined: {', '.join(sorted(connections)) or 'none'}"
                    )
            target_conn = connections[replication.target]
            if not target_conn.writable:
                why = "is marked protected" if target_conn.protected else "is a source-only connection"
                raise ConfigError(
                    f"{path}: key 'target': connection {replication.target!r} {why} and is never written"
                )
            for stream_name, opts in _streams(path, replication, catalog, skip_unresolved_wildcards):
                table = _resolve_table(path, stream_name, opts, replication, connections)
                if table.sql or table.where:  # sqlglot is imported only for streams that have source SQL
                    from sync_assets.sql_guard import check_stream_sql

                    sql, condition = check_stream_sql(f"{path}: stream {stream_name!r}",
                                                      connections[replication.source].kind, table.sql, table.where)
                    table = replace(table, sql=sql, where=condition)
                if table.asset_key in seen_keys:
                    raise ConfigError(
                        f"{table.label}: asset key {'/'.join(table.asset_key)} is already used by "
                        f"{seen_keys[table.asset_key]}; set 'object' or 'asset_key' to tell them apart"
                    )
                seen_keys[table.asset_key] = table.label
                tables.append(table)
    schedules = _collect_schedules(parsed, tables)
    alerts = _single_alerts_section(parsed)
    from sync_assets.lineage import resolve_dependencies

    foreign_keys = [(path, fk) for path, cfg in parsed if cfg.lineage for fk in cfg.lineage.foreign_keys]
    return Project(connections, resolve_dependencies(tables, foreign_keys), config_dir or files[0].parent,
                   schedules, alerts)


def _streams(path: Path, replication: ReplicationFile, catalog: dict[str, dict[str, list[str]]],
             skip_unresolved_wildcards: bool) -> list[tuple[str, dict[str, Any]]]:
    """(stream name, merged options) for every enabled stream, wildcards expanded."""
    from sync_assets import wildcards

    streams = []
    for stream_name, stream_opts in replication.streams.items():
        opts = _merge(replication.defaults, stream_opts)
        if opts.get("disabled"):
            continue
        if not wildcards.is_wildcard(stream_name):
            if opts.get("exclude_tables"):
                raise ConfigError(f"{path}: stream {stream_name!r}: key 'exclude_tables' only applies to wildcard streams")
            streams.append((stream_name, opts))
            continue
        where = f"{path}: stream {stream_name!r}"
        if opts.get("sql"):
            raise ConfigError(f"{where}: key 'sql' cannot be used with a wildcard stream")
        try:
            names = wildcards.expand(stream_name, replication.source, catalog, opts.get("exclude_tables") or [], where)
        except ConfigError:
            if skip_unresolved_wildcards:
                continue
            raise
        streams += [(name, opts) for name in names]
    return streams


def wildcard_schemas(config_dir: str | Path) -> dict[str, set[str]]:
    """Source connection -> schemas named by wildcard streams (what ``discover`` must list)."""
    from sync_assets import wildcards

    wanted: dict[str, set[str]] = {}
    for path in sorted(Path(config_dir).glob("*.y*ml")):
        for replication in _read_file(path).replications:
            for stream_name in replication.streams:
                if wildcards.is_wildcard(stream_name):
                    schema = TableName.parse(stream_name).schema
                    if schema:
                        wanted.setdefault(replication.source, set()).add(schema)
    return wanted


def _collect_schedules(parsed: list[tuple[Path, ConfigFile]], tables: list[TableSpec]) -> dict[str, ScheduleSpec]:
    schedules: dict[str, ScheduleSpec] = {}
    for path, cfg in parsed:
        for name, schedule in cfg.schedules.items():
            if name in schedules:
                raise ConfigError(f"{path}: key 'schedules.{name}': schedule {name!r} is defined twice")
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ConfigError(f"{path}: key 'schedules.{name}': use letters, digits and underscores only")
            schedules[name] = schedule
    for table in tables:
        if table.schedule is not None and table.schedule not in schedules:
            raise ConfigError(f"{table.label}: key 'schedule': unknown schedule {table.schedule!r}; "
                              f"defined: {', '.join(sorted(schedules)) or 'none'}")
    return schedules


def _single_alerts_section(parsed: list[tuple[Path, ConfigFile]]) -> AlertsSpec | None:
    found = [(path, cfg.alerts) for path, cfg in parsed if cfg.alerts is not None]
    if len(found) > 1:
        raise ConfigError(f"{found[1][0]}: key 'alerts' is already defined in {found[0][0]}; keep one alerts section")
    return found[0][1] if found else None
