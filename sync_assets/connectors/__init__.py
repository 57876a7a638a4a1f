"""Connectors: one per database engine, behind one interface, and the registry that picks them.

``connector_for`` returns the connector that serves a connection's ``kind``. Connector modules
are imported lazily, so loading definitions never imports a database driver that a project does
not use.
"""

from __future__ import annotations

import importlib

from sync_assets.config.environment import resolve_env
from sync_assets.config.models import ConnectionSpec
from sync_assets.connectors.interface import Connector
from sync_assets.errors import ConfigError

CONNECTOR_CLASSES = {
    "postgres": ("sync_assets.connectors.postgres.connector", "PostgresConnector"),
    "duckdb": ("sync_assets.connectors.duckdb", "DuckDBConnector"),
    "mssql": ("sync_assets.connectors.mssql.connector", "MssqlConnector"),
    "snowflake": ("sync_assets.connectors.snowflake.connector", "SnowflakeConnector"),
    "http": ("sync_assets.connectors.http.connector", "HttpConnector"),
}


def connector_for(name: str, spec: ConnectionSpec, *, read_only: bool = False) -> Connector:
    """The connector of connection ``name``; ``read_only`` for every use as a source (reads,
    counts, schemas, samples), so even a ``role: both`` connection is only read there."""
    if spec.kind not in CONNECTOR_CLASSES:
        raise ConfigError(f"connection kind {spec.kind!r} is not supported yet; "
                          f"supported: {', '.join(CONNECTOR_CLASSES)}")
    module_name, class_name = CONNECTOR_CLASSES[spec.kind]
    spec = spec.model_copy(update={"options": resolve_env(spec.options, f"connection {name!r}")})  # its secrets
    return getattr(importlib.import_module(module_name), class_name)(name, spec, read_only=read_only)
