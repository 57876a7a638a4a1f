"""Resolving streams: a replication's defaults merged into each stream, wildcards expanded, and
every option checked against the mode and the connections, giving one ``TableSpec`` per table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sync_assets.config.models import (
    DEFAULT_LOCK_TIMEOUT,
    AutomationSpec,
    ChunkSpec,
    ColumnRules,
    ConnectionSpec,
    DeleteDetection,
    HttpEndpoint,
    PartitionSpec,
    ReplicationFile,
    RetrySpec,
    SchemaDriftPolicy,
    StreamOptions,
    SyncWindow,
    TransformSpec,
    VerifySpec,
    parse_duration,
    parse_lookback,
)
from sync_assets.config.names import TableName
from sync_assets.config.project import DEFAULT_BATCH_SIZE, DEFAULT_SCHEMA, ParentKey, TableSpec
from sync_assets.errors import ConfigError


def _merge(defaults: StreamOptions, stream: StreamOptions | None) -> dict[str, Any]:
    merged = defaults.model_dump(exclude_unset=True)
    if stream is not None:
        own = stream.model_dump(exclude_unset=True)
        if merged.get("tags") and own.get("tags") is not None:
            own["tags"] = {**merged["tags"], **own["tags"]}
        merged.update(own)
    return merged


def _asset_key_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or "_"


def resolve_table(
    path: Path, stream_name: str, opts: dict[str, Any], replication: ReplicationFile,
    connections: dict[str, ConnectionSpec],
) -> TableSpec:
    where = f"{path}: stream {stream_name!r}"
    mode = opts.get("mode") or "full_refresh"
    from_api = connections[replication.source].kind == "http"
    source_table = None if opts.get("sql") or from_api else TableName.parse(stream_name)
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
        raise ConfigError(f"{where}: key 'update_key': mode {mode!r} needs an update_key "
                          "(or a primary_key to use as one)")
    if mode == "hash_delta" and not primary_key:
        raise ConfigError(f"{where}: key 'primary_key': mode 'hash_delta' needs a primary_key "
                          "(rows are matched by key, then compared by hash)")
    if mode == "hash_delta" and update_key:
        raise ConfigError(f"{where}: key 'update_key': mode 'hash_delta' reads every row and needs no update_key; "
                          "use mode 'incremental' for a trustworthy update column")
    if mode == "date_partitioned" and partition is None:
        raise ConfigError(f"{where}: key 'partition': mode 'date_partitioned' needs a partition block "
                          "(column, granularity, start)")
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
    shaping = _resolve_shaping(where, opts, mode, from_api, primary_key,
                               (*([update_key] if update_key else []), *([partition.column] if partition else [])))
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
        owners=tuple(opts.get("owners") or ()),
        tags=tuple(sorted((opts.get("tags") or {}).items())),
        asset_key=asset_key,
        schema_changes=opts.get("schema_changes") or "evolve",
        load_method=_load_method(where, opts, connections[replication.target]),
        **operations,
        **shaping,
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
    deletes = _as_model(DeleteDetection, opts.get("deletes"))
    if deletes is not None and mode not in ("incremental", "smart"):
        raise ConfigError(f"{where}: key 'deletes' applies to incremental and smart modes only (mode is {mode!r}): "
                          "a full refresh already mirrors deletes, a partition overwrite mirrors them in its window")
    if deletes is not None and not primary_key:
        raise ConfigError(f"{where}: key 'deletes' needs a primary_key: deleted rows are found by their key")
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
    automation = _as_model(AutomationSpec, opts.get("automation"))
    if automation is not None and opts.get("schedule"):
        raise ConfigError(f"{where}: keys 'schedule' and 'automation' both set; a table is triggered by one of "
                          "them (set 'schedule: null' on the stream to leave a default schedule)")
    return {
        "schedule": opts.get("schedule"),
        "automation": automation,
        "source_asset": opts.get("source_asset") is not False,
        "window": _as_model(SyncWindow, opts.get("window")),
        "chunk": chunk,
        "deletes": deletes,
        "verify": _as_model(VerifySpec, opts.get("verify")),
        "on_bad_rows": opts.get("on_bad_rows") or "fail",
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


API_STREAM_REFUSES = {
    "sql": "an HTTP source runs no SQL; the endpoint is the stream's 'http' block",
    "where": "an HTTP source cannot filter rows in SQL; use 'http.params' (the API's own filters)",
    "chunk": "an HTTP source has no ordered key ranges to copy in chunks",
    "verify": "rows_match compares in-database checksums, and an HTTP source has no database",
}
"""Stream keys an HTTP source cannot honour, and why."""


def _resolve_shaping(where: str, opts: dict[str, Any], mode: str, from_api: bool, primary_key: tuple[str, ...],
                     other_keys: tuple[str, ...]) -> dict[str, Any]:
    """The HTTP endpoint, transforms, validation rules and parent keys of one stream, checked."""
    endpoint = _as_model(HttpEndpoint, opts.get("http"))
    if from_api:
        if endpoint is None:
            raise ConfigError(f"{where}: key 'http': a stream of an HTTP source needs an 'http' block "
                              "(path, records, pagination)")
        for key, why in API_STREAM_REFUSES.items():
            if opts.get(key) is not None:
                raise ConfigError(f"{where}: key {key!r}: {why}")
        if mode in ("hash_delta", "date_partitioned"):
            raise ConfigError(f"{where}: key 'mode': {mode!r} needs a database source (the source hashes or filters "
                              "rows in SQL); an HTTP stream runs full_refresh, incremental or smart")
        if mode in ("incremental", "smart") and not endpoint.since_param:
            raise ConfigError(f"{where}: key 'http.since_param': mode {mode!r} asks the API for records changed "
                              "since the target's watermark, so name the query parameter that takes it")
    elif endpoint is not None:
        raise ConfigError(f"{where}: key 'http' applies to streams of a kind: http source only")
    transform = _as_model(TransformSpec, opts.get("transform"))
    if transform is not None and not from_api:
        keys = {*primary_key, *other_keys}
        changed = {*transform.rename, *transform.rename.values(), *transform.cast, *transform.trim,
                   *transform.empty_to_null, *transform.lowercase, *transform.uppercase, *transform.timezone,
                   *transform.parse_dates, *transform.computed, *transform.drop}
        touched = sorted(keys & changed)
        if touched:
            raise ConfigError(f"{where}: key 'transform' changes key column(s) {', '.join(map(repr, touched))}: a "
                              "database source is read, filtered and compared by its keys as they are there")
    if transform is not None and opts.get("verify") is not None:
        raise ConfigError(f"{where}: key 'verify' compares source and target values row by row, and 'transform' "
                          "changes them by design; check the transformed rows with 'validate' instead")
    rules = {name: _as_model(ColumnRules, value) for name, value in (opts.get("validate_") or {}).items()}
    parent_keys = []
    for column, reference in (opts.get("parent_key") or {}).items():
        parent_stream, _, parent_column = str(reference).rpartition(".")
        if not parent_stream or not parent_column:
            raise ConfigError(f"{where}: key 'parent_key.{column}': write the parent as 'parent_stream.column', "
                              f"not {reference!r}")
        parent_keys.append(ParentKey(column, parent_stream, parent_column))
    orphans = opts.get("orphans") or "fail"
    if opts.get("orphans") is not None and not parent_keys:
        raise ConfigError(f"{where}: key 'orphans' needs 'parent_key' (which column holds the parent's key)")
    if orphans == "wait" and mode == "hash_delta":
        raise ConfigError(f"{where}: key 'orphans': 'wait' puts pending rows back among the staged ones, which "
                          "hash_delta stages by hash; use 'quarantine', or mode incremental")
    if orphans == "wait" and not primary_key:
        raise ConfigError(f"{where}: key 'orphans': 'wait' retries pending rows by their primary key; "
                          "the stream has none")
    return {
        "endpoint": endpoint, "transform": transform, "validate": tuple(rules.items()),
        "parent_keys": tuple(parent_keys), "orphans": orphans, "orphan_attempts": opts.get("orphan_attempts") or 5,
    }


def enabled_streams(path: Path, replication: ReplicationFile, catalog: dict[str, dict[str, list[str]]],
             skip_unresolved_wildcards: bool) -> list[tuple[str, dict[str, Any]]]:
    """(stream name, merged options) for every enabled stream, wildcards expanded."""
    from sync_assets.config import wildcards

    streams = []
    for stream_name, stream_opts in replication.streams.items():
        opts = _merge(replication.defaults, stream_opts)
        if opts.get("disabled"):
            continue
        if not wildcards.is_wildcard(stream_name):
            if opts.get("exclude_tables"):
                raise ConfigError(f"{path}: stream {stream_name!r}: "
                                  "key 'exclude_tables' only applies to wildcard streams")
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
