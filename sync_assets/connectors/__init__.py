"""The connector registry: which class serves each connection ``kind``.

Connector modules are imported lazily, so loading definitions never imports a database driver
that a project does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from sync_assets.connectors.base import Connector
from sync_assets.errors import ConfigError
from sync_assets.spec import ConnectionSpec

_REGISTRY = {
    "postgres": ("sync_assets.connectors.postgres", "PostgresConnector", "PostgresOptions"),
    "duckdb": ("sync_assets.connectors.duckdb", "DuckDBConnector", "DuckDBOptions"),
    "mssql": ("sync_assets.connectors.mssql", "MssqlConnector", "MssqlOptions"),
    "snowflake": ("sync_assets.connectors.snowflake", "SnowflakeConnector", "SnowflakeOptions"),
}


def _load(kind: str, attr_index: int) -> Any:
    if kind not in _REGISTRY:
        raise ConfigError(f"connection kind {kind!r} is not supported yet; supported: {', '.join(_REGISTRY)}")
    module_name, *attrs = _REGISTRY[kind]
    return getattr(importlib.import_module(module_name), attrs[attr_index])


def validate_options(kind: str, options: dict[str, Any], where: str) -> dict[str, Any]:
    """Check a connection's ``options`` against its connector's model; errors name the key."""
    model = _load(kind, 1)
    try:
        return model.model_validate(options).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"key 'options.{'.'.join(str(p) for p in e['loc'])}': "
            f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None


def connector_for(name: str, spec: ConnectionSpec, *, read_only: bool = False) -> Connector:
    """The connector of connection ``name``; ``read_only`` for every use as a source (reads,
    counts, schemas, samples), so even a ``role: both`` connection is only read there."""
    return _load(spec.kind, 0)(name, spec, read_only=read_only)
