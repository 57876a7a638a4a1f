"""Lineage between tables: foreign keys become asset dependencies, parents loaded first.

Definitions must load without touching a database, so foreign keys are discovered in an explicit
step: ``sync-assets discover`` reads each source catalog and writes ``lineage.yaml`` (a normal
config file holding a ``lineage`` section) into the config folder, where it can be reviewed and
committed. At load time ``resolve_dependencies`` turns those foreign keys, plus any stream's
``depends_on``, into asset deps (child depends on parent, within the same target), drops the edges
a stream lists under ``ignore_dependencies``, and refuses a cycle with a message naming every
stream on it and how to break it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import yaml

from sync_assets.config.models import ForeignKeySpec
from sync_assets.config.names import TableName, quote_part
from sync_assets.config.project import ParentKey, TableSpec
from sync_assets.errors import ConfigError

LINEAGE_FILE = "lineage.yaml"


def same_table(stream_table: TableName | None, catalog_table: TableName) -> bool:
    """A stream written without a schema matches the table of that name in any schema."""
    if stream_table is None or stream_table.name != catalog_table.name:
        return False
    return stream_table.schema is None or stream_table.schema == catalog_table.schema


def _find_stream(tables: list[TableSpec], reference: str, near: TableSpec) -> TableSpec:
    """A stream named by ``reference`` (stream name or asset key ``a/b``), preferring ``near``'s target."""
    found = [t for t in tables if reference in (t.name, "/".join(t.asset_key))]
    same_target = [t for t in found if t.target == near.target]
    if not found:
        raise ConfigError(f"{near.label}: stream {reference!r} (in depends_on / ignore_dependencies / parent_key) "
                          f"is not configured; known: {', '.join(sorted({t.name for t in tables}))}")
    return (same_target or found)[0]


def _foreign_key_parents(table: TableSpec, tables: list[TableSpec],
                         foreign_keys: list[tuple[Path, ForeignKeySpec]]) -> list[TableSpec]:
    parents = []
    for _, fk in foreign_keys:
        if fk.connection != table.source or not same_table(table.source_table, TableName.parse(fk.child)):
            continue
        parent_name = TableName.parse(fk.parent)
        for candidate in tables:
            if (candidate is not table and candidate.source == fk.connection and candidate.target == table.target
                    and same_table(candidate.source_table, parent_name)):
                parents.append(candidate)
    return parents


def resolve_dependencies(tables: list[TableSpec],
                         foreign_keys: list[tuple[Path, ForeignKeySpec]]) -> tuple[TableSpec, ...]:
    """Each table with ``deps`` set to the asset keys of its parents; raises on a cycle."""
    parents_of: dict[tuple[str, ...], list[TableSpec]] = {}
    parent_keys: dict[tuple[str, ...], tuple[ParentKey, ...]] = {}
    for table in tables:
        ignored = {_find_stream(tables, ref, table).asset_key for ref in table.ignore_dependencies}
        parents = _foreign_key_parents(table, tables, foreign_keys)
        parents += [_find_stream(tables, ref, table) for ref in table.depends_on]
        keyed = _keyed_parents(table, tables)
        parent_keys[table.asset_key] = tuple(key for key, _ in keyed)
        parents += [parent for _, parent in keyed]
        unique: dict[tuple[str, ...], TableSpec] = {}
        for parent in parents:
            if parent.asset_key not in ignored:
                unique[parent.asset_key] = parent
        parents_of[table.asset_key] = list(unique.values())
    _refuse_cycles(tables, parents_of)
    return tuple(replace(t, deps=tuple(p.asset_key for p in parents_of[t.asset_key]),
                         parent_keys=parent_keys[t.asset_key]) for t in tables)


def _keyed_parents(table: TableSpec, tables: list[TableSpec]) -> list[tuple[ParentKey, TableSpec]]:
    """``table``'s parent keys, each with its parent's target table set, and the parent stream
    (which must land in the same target)."""
    keyed = []
    for key in table.parent_keys:
        parent = _find_stream(tables, key.parent_stream, table)
        if parent.target != table.target:
            raise ConfigError(f"{table.label}: key 'parent_key.{key.column}': parent stream {key.parent_stream!r} "
                              f"lands in connection {parent.target!r}, not in this stream's {table.target!r}; "
                              "orphans are found by looking the key up in the parent's target table")
        keyed.append((replace(key, parent_table=parent.target_table), parent))
    return keyed


def _refuse_cycles(tables: list[TableSpec], parents_of: dict[tuple[str, ...], list[TableSpec]]) -> None:
    state: dict[tuple[str, ...], str] = {}
    path: list[TableSpec] = []

    def visit(table: TableSpec) -> None:
        state[table.asset_key] = "visiting"
        path.append(table)
        for parent in parents_of[table.asset_key]:
            if state.get(parent.asset_key) == "visiting":
                cycle = path[path.index(parent):] + [parent]
                child, first_parent = cycle[-2], cycle[-1]
                raise ConfigError(
                    "dependency cycle (child -> parent, from foreign keys in lineage and depends_on): "
                    + " -> ".join(t.name for t in cycle)
                    + f". Break it in config: add `ignore_dependencies: [{first_parent.name}]` to {child.label} "
                    f"(that parent is then no longer loaded before it)"
                )
            if parent.asset_key not in state:
                visit(parent)
        path.pop()
        state[table.asset_key] = "done"

    for table in tables:
        if table.asset_key not in state:
            visit(table)


def as_stream_name(table: TableName) -> str:
    """``schema.table`` in the stream-name syntax, quoting parts that hold a dot or a quote."""
    def part(text: str) -> str:
        return quote_part(text) if any(c in text for c in '."') else text

    return ".".join(part(p) for p in (table.schema, table.name) if p is not None)


def write_lineage_file(config_dir: Path, foreign_keys: list[ForeignKeySpec]) -> Path:
    path = Path(config_dir) / LINEAGE_FILE
    header = (
        f"# Written by `sync-assets discover` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: the foreign keys\n"
        "# between configured source tables. Each becomes an asset dependency (parent loaded first).\n"
        "# Re-run discover after schema changes; break a cycle with `ignore_dependencies` on a stream.\n"
    )
    body = {"lineage": {"foreign_keys": [fk.model_dump(exclude_none=True) for fk in foreign_keys]}}
    path.write_text(header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True))
    return path
