"""The Python hook on asset specs, like dagster-sling's ``DagsterSlingTranslator``.

``SyncAssetsTranslator.get_asset_spec`` receives each table and the spec sync_assets made for it
(``assets.asset_spec``: key, group, description, owners and tags from the YAML, kinds, deps,
partitions and metadata) and returns the spec to use; ``spec.replace_attributes`` and
``spec.merge_attributes`` change what they name and keep the rest. ``translate`` applies it to a
project: a changed key renames the table everywhere (its step, checks, freshness check,
schedules, sensors and its children's deps), so only the spec needs to say it.

Partitions and the IO manager are the sync's own: a translator that changes them is refused.
"""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from sync_assets.config.project import Project, TableSpec
from sync_assets.errors import ConfigError
from sync_assets.orchestration.assets import asset_spec

AssetKeyPath = tuple[str, ...]


class SyncAssetsTranslator:
    """Subclass and override ``get_asset_spec``; pass an instance to ``build_definitions`` (or
    override ``get_asset_spec`` on your ``SyncAssetsComponent`` subclass)."""

    def get_asset_spec(self, table: TableSpec, default_spec: dg.AssetSpec) -> dg.AssetSpec:
        return default_spec


def translate(project: Project, translator: SyncAssetsTranslator) -> tuple[Project, dict[AssetKeyPath, dg.AssetSpec]]:
    """The project with the translator's keys, and each table's spec by its (new) key."""
    specs: dict[AssetKeyPath, dg.AssetSpec] = {}
    for table in project.tables:
        default = asset_spec(project, table)
        spec = translator.get_asset_spec(table, default)
        if spec.partitions_def != default.partitions_def or spec.metadata.get("dagster/io_manager_key") != \
                default.metadata.get("dagster/io_manager_key"):
            raise ConfigError(f"{table.label}: the translator changed the partitions or the IO manager of "
                              f"{default.key.to_user_string()}; those belong to the sync (change the YAML instead)")
        specs[table.asset_key] = spec
    renamed = {old: tuple(spec.key.path) for old, spec in specs.items()}
    if all(old == new for old, new in renamed.items()):
        return project, specs
    tables = tuple(replace(t, asset_key=renamed[t.asset_key], deps=tuple(renamed.get(d, d) for d in t.deps))
                   for t in project.tables)
    moved = {renamed[old]: spec.replace_attributes(deps=[_renamed_dep(dep, renamed) for dep in spec.deps])
             for old, spec in specs.items()}
    return replace(project, tables=tables), moved


def _renamed_dep(dep: dg.AssetDep, renamed: dict[AssetKeyPath, AssetKeyPath]) -> dg.AssetDep:
    new = renamed.get(tuple(dep.asset_key.path))
    return dg.AssetDep(dg.AssetKey(list(new)), partition_mapping=dep.partition_mapping) if new else dep

