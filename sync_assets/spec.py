"""The YAML configuration: validated models and the loader.

This module owns everything a user writes in ``config/``: connections (with secrets taken from
environment variables), and replications shaped like Sling's (``source``, ``target``,
``defaults``, ``streams``). Loading validates everything up front and never touches a database;
every error names the file, the stream (table) and the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sync_assets.errors import ConfigError

PATH_KEYS = frozenset({"path", "private_key_file"})
"""Connection options holding file paths; relative ones are relative to their YAML file."""
SECRET_KEYS = frozenset({"password", "private_key_passphrase", "token"})
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvRef(_Strict):
    """``{env: NAME}``: a value read from an environment variable when the config is loaded."""

    env: str


class ConnectionSpec(_Strict):
    """One database. Kind-specific keys are checked by the connector's own ``options`` model."""

    kind: Literal["postgres", "duckdb", "mssql", "snowflake"]
    role: Literal["source", "target", "both"] = "both"
    protected: bool = False
    max_concurrent_reads: int = Field(default=4, ge=1)
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


MODES = ("full_refresh", "incremental", "smart", "date_partitioned")


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
    where: str | None = None
    limit: int | None = Field(default=None, ge=0)
    group: str | None = None
    description: str | None = None
    asset_key: list[str] | None = None
    schema_changes: Literal["evolve", "fail"] | None = None
    disabled: bool = False

    @field_validator("primary_key", "columns", "exclude_columns", mode="before")
    @classmethod
    def _string_to_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("lookback")
    @classmethod
    def _valid_lookback(cls, value: Any) -> Any:
        parse_lookback(value)
        return value


class ReplicationFile(_Strict):
    source: str
    target: str
    defaults: StreamOptions = StreamOptions()
    streams: dict[str, StreamOptions | None]


class ConfigFile(_Strict):
    connections: dict[str, ConnectionSpec] = Field(default_factory=dict)
    replications: list[ReplicationFile] = Field(default_factory=list)

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
        parts = _split_qualified(text)
        if len(parts) == 1:
            return cls(None, parts[0])
        return cls(".".join(parts[:-1]), parts[-1])

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


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

    def table(self, name: str) -> TableSpec:
        for table in self.tables:
            if name in (table.name, "/".join(table.asset_key), str(table.target_table)):
                return table
        raise ConfigError(f"no stream named {name!r}; known: {', '.join(t.name for t in self.tables)}")


DEFAULT_BATCH_SIZE = 100_000


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


def _check_secrets(options: dict[str, Any], where: str) -> None:
    for key, value in options.items():
        if key in SECRET_KEYS and not (isinstance(value, dict) and set(value) == {"env"}):
            if not (isinstance(value, str) and ENV_PATTERN.fullmatch(value)):
                raise ConfigError(
                    f"{where}: key {key!r} is a secret and must come from the environment: "
                    f"write it as {{env: VARIABLE_NAME}}"
                )


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
        target_text = object_template.format(
            stream_schema=stream_ref.schema or "main" if connections[replication.target].kind == "duckdb"
            else stream_ref.schema or "public",
            stream_table=stream_ref.name,
            source=replication.source,
            target=replication.target,
        )
    except KeyError as exc:
        raise ConfigError(
            f"{where}: key 'object' uses unknown placeholder {exc}; "
            "use {stream_schema}, {stream_table}, {source} or {target}"
        ) from None
    target_table = TableName.parse(target_text)
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
    )


def load_project(config_dir: str | Path) -> Project:
    """Read every ``*.yaml`` in ``config_dir`` (not sub-folders) into a validated Project."""
    config_dir = Path(config_dir)
    files = sorted(p for p in config_dir.glob("*.y*ml") if p.is_file())
    if not files:
        raise ConfigError(f"{config_dir}: no *.yaml configuration files found")
    return load_files(files, config_dir)


def load_files(files: list[Path], config_dir: Path | None = None) -> Project:
    parsed = [(path, _read_file(path)) for path in files]
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
            for stream_name, stream_opts in replication.streams.items():
                opts = _merge(replication.defaults, stream_opts)
                if opts.get("disabled"):
                    continue
                table = _resolve_table(path, stream_name, opts, replication, connections)
                if table.asset_key in seen_keys:
                    raise ConfigError(
                        f"{table.label}: asset key {'/'.join(table.asset_key)} is already used by "
                        f"{seen_keys[table.asset_key]}; set 'object' or 'asset_key' to tell them apart"
                    )
                seen_keys[table.asset_key] = table.label
                tables.append(table)
    return Project(connections, tuple(tables), config_dir or files[0].parent)
