"""Wildcard streams (``SALES.*``, ``dbo.fact_*``) and the table catalog they expand against.

Definitions must load without touching a database, so a wildcard cannot ask the source which
tables exist. ``sync-assets discover`` lists the tables of every schema a wildcard names and
writes them to ``catalog.yaml`` in the config folder (a normal config file with a ``catalog``
section: connection -> schema -> tables), where it can be reviewed and committed. At load time a
wildcard stream becomes one stream per matching catalog table, minus ``exclude_tables``, each with
the wildcard's options; a wildcard whose schema is not in the catalog is a clear error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from sync_assets.errors import ConfigError

CATALOG_FILE = "catalog.yaml"

Catalog = dict[str, dict[str, list[str]]]
"""connection -> schema -> table names, as listed by ``sync-assets discover``."""


def is_wildcard(stream_name: str) -> bool:
    return "*" in stream_name or "?" in stream_name


def expand(stream_name: str, connection: str, catalog: Catalog, exclude: list[str], where: str) -> list[str]:
    """The stream names a wildcard stands for, in catalog order."""
    from sync_assets.config.names import TableName, quote_part

    pattern = TableName.parse(stream_name)
    if pattern.schema is None or is_wildcard(pattern.schema):
        raise ConfigError(f"{where}: a wildcard stream names its schema exactly, e.g. 'SALES.*' (got {stream_name!r})")
    tables = catalog.get(connection, {}).get(pattern.schema)
    if tables is None:
        raise ConfigError(
            f"{where}: wildcard {stream_name!r} needs the tables of schema {pattern.schema!r} on connection "
            f"{connection!r}; run `sync-assets discover` to list them into {CATALOG_FILE}"
        )
    return [f"{quote_part(pattern.schema)}.{quote_part(name)}" for name in tables
            if fnmatchcase(name, pattern.name) and not any(fnmatchcase(name, x) for x in exclude)]


def write_catalog_file(config_dir: Path, catalog: Catalog) -> Path:
    path = Path(config_dir) / CATALOG_FILE
    header = (
        f"# Written by `sync-assets discover` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: the tables of each\n"
        "# schema a wildcard stream names. Wildcards expand against this list when definitions load.\n"
        "# Re-run discover when tables are added or dropped.\n"
    )
    path.write_text(header + yaml.safe_dump({"catalog": catalog}, sort_keys=True, allow_unicode=True))
    return path
