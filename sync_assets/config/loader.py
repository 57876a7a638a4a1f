"""Loading a project: every ``*.yaml`` of a config folder read, validated and resolved into a
``Project`` (connections, tables with their lineage, schedules, alerts). Errors name the file and key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sync_assets.config.environment import (
    CONNECTION_SECRET_KEYS,
    PATH_KEYS,
    SECRET_KEYS,
    check_secrets,
    resolve_alert_secrets,
    resolve_env,
)
from sync_assets.config.models import ConfigFile, ConnectionSpec, ScheduleSpec
from sync_assets.config.names import TableName
from sync_assets.config.project import Project, TableSpec
from sync_assets.config.streams import enabled_streams, resolve_table
from sync_assets.errors import ConfigError


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


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: the same documents, parsed 5-10x faster (3,000 streams)."""


def _read_file(path: Path) -> ConfigFile:
    try:
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_document(raw, path)


def parse_document(raw: Any, path: Path) -> ConfigFile:
    """One configuration document (a YAML file's content, or a Component's attributes) checked
    and validated; ``path`` is where it was written (errors name it; relative paths start there)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    for name, conn in (raw.get("connections") or {}).items():
        if isinstance(conn, dict):
            options = conn.get("options") or {}
            check_secrets(options, f"{path}: connection {name!r}")
            if isinstance(options.get("auth"), dict):
                check_secrets(options["auth"], f"{path}: connection {name!r} auth", SECRET_KEYS | {"key"})
    resolve_alert_secrets(path, raw)
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None


def load_project(config_dir: str | Path, *, skip_unresolved_wildcards: bool = False) -> Project:
    """Read every ``*.yaml`` in ``config_dir`` (not sub-folders) into a validated Project."""
    config_dir = Path(config_dir)
    files = sorted(p for p in config_dir.glob("*.y*ml") if p.is_file())
    if not files:
        raise ConfigError(f"{config_dir}: no *.yaml configuration files found (start from a file in config/examples/; "
                          "the demo has its own location: sync-assets demo)")
    return load_files(files, config_dir, skip_unresolved_wildcards=skip_unresolved_wildcards)


def load_files(files: list[Path], config_dir: Path | None = None, *,
               skip_unresolved_wildcards: bool = False, documents: Sequence[tuple[Path, ConfigFile]] = ()) -> Project:
    """Load and validate config files, and ``documents`` already parsed (``parse_document``: the
    Component's attributes); ``skip_unresolved_wildcards`` lets ``sync-assets discover`` load a
    project whose wildcard streams have no catalog yet (it is what writes the catalog)."""
    parsed = [*((path, _read_file(path)) for path in files), *documents]
    if not parsed:
        raise ConfigError(f"{config_dir}: no configuration (no *.yaml files, no attributes)")
    catalog: dict[str, dict[str, list[str]]] = {}
    for _, cfg in parsed:
        for connection, schemas in cfg.catalog.items():
            catalog.setdefault(connection, {}).update(schemas)
    connections: dict[str, ConnectionSpec] = {}
    for path, cfg in parsed:
        for name, conn in cfg.connections.items():
            if name in connections:
                raise ConfigError(f"{path}: connection {name!r} is defined twice")
            resolved = resolve_env(conn.options, f"{path}: connection {name!r}", deferred=CONNECTION_SECRET_KEYS)
            for key in PATH_KEYS & set(resolved):
                if resolved[key] and not Path(resolved[key]).is_absolute():
                    resolved[key] = str((path.parent / resolved[key]).resolve())
            from sync_assets.config.connection_options import validate_options

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
            for stream_name, opts in enabled_streams(path, replication, catalog, skip_unresolved_wildcards):
                table = resolve_table(path, stream_name, opts, replication, connections)
                if table.sql or table.where:  # sqlglot is imported only for streams that have source SQL
                    from sync_assets.config.sql_guard import check_stream_sql

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
    alerts = _single_section(parsed, "alerts")
    execution = _single_section(parsed, "execution")
    from sync_assets.config.lineage import resolve_dependencies

    foreign_keys = [(path, fk) for path, cfg in parsed if cfg.lineage for fk in cfg.lineage.foreign_keys]
    return Project(connections, resolve_dependencies(tables, foreign_keys), config_dir or parsed[0][0].parent,
                   schedules, alerts, execution)


def wildcard_schemas(config_dir: str | Path) -> dict[str, set[str]]:
    """Source connection -> schemas named by wildcard streams (what ``discover`` must list)."""
    from sync_assets.config import wildcards

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
        if table.deletes is not None and table.deletes.schedule is not None and table.deletes.schedule not in schedules:
            raise ConfigError(f"{table.label}: key 'deletes.schedule': unknown schedule {table.deletes.schedule!r}; "
                              f"defined: {', '.join(sorted(schedules)) or 'none'}")
    return schedules


def _single_section(parsed: list[tuple[Path, ConfigFile]], key: str) -> Any:
    """The project's one ``alerts`` or ``execution`` section (None when no file has it)."""
    found = [(path, getattr(cfg, key)) for path, cfg in parsed if getattr(cfg, key) is not None]
    if len(found) > 1:
        raise ConfigError(f"{found[1][0]}: key {key!r} is already defined in {found[0][0]}; keep one {key} section")
    return found[0][1] if found else None
