"""``SyncAssetsComponent``: sync_assets as a Dagster Component, for ``dg`` projects.

``dg scaffold defs sync_assets.SyncAssetsComponent ingest`` writes ``defs/ingest/defs.yaml``.
Its ``attributes`` are a sync_assets configuration document, the schema of ``config/*.yaml``
(connections; source, target, defaults and streams, or ``replications``; schedules, alerts,
execution, lineage), read by the same loader (``config.loader.parse_document``) with the same
checks and messages, which name the defs.yaml. ``config_dir`` (relative to the defs.yaml) adds
the YAML files of a folder, so an existing project's ``config/`` can be used as it is. Relative
paths in the attributes (a DuckDB file) are relative to the defs.yaml.

What the Component builds is what ``sync_assets.definitions`` builds (``build_definitions``):
assets, checks, IO managers, connection resources, schedules, sensors; the executor only when
the attributes have an ``execution`` block (a ``dg`` project chooses its own). Override
``get_asset_spec`` in a subclass to change any table's asset spec in Python (the translator hook).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel, ConfigDict

from sync_assets.config.loader import load_files, parse_document
from sync_assets.config.models import ConfigFile, ReplicationFile
from sync_assets.config.project import TableSpec
from sync_assets.orchestration.project_definitions import build_definitions
from sync_assets.orchestration.translator import SyncAssetsTranslator

SCAFFOLD = """\
type: {type_name}

# A sync_assets configuration, the same schema as config/*.yaml (see the sync_assets README).
# Secrets come from the environment: {{env: NAME}}; relative paths start at this file.
attributes:
  connections:
    shop:
      kind: duckdb
      role: source
      options: {{path: shop.duckdb}}
    lake:
      kind: duckdb
      role: target
      options: {{path: lake.duckdb}}
  source: shop
  target: lake
  defaults:
    mode: full_refresh
    object: "raw.{{stream_table}}"
  streams:
    main.customers:
      primary_key: id
"""


class SyncAssetsAttributes(BaseModel):
    """The attributes as Dagster sees them: anything goes through to the sync_assets loader, which
    validates them (so errors read as they do for config/*.yaml); the JSON schema is the
    loader's, for editors and ``dg``."""

    model_config = ConfigDict(extra="allow")
    config_dir: str | None = None

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        schema = ConfigFile.model_json_schema(*args, **kwargs)
        single = ReplicationFile.model_json_schema(*args, **kwargs)
        schema.setdefault("$defs", {}).update(single.pop("$defs", {}))
        schema["properties"].update(single["properties"])  # one replication at top level (Sling's shape)
        schema["properties"]["config_dir"] = {
            "type": "string", "description": "A folder of sync_assets YAML files, relative to this defs.yaml."}
        return schema


class SyncAssetsScaffolder(dg.Scaffolder):
    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(SCAFFOLD.format(type_name=request.type_name))


class _ComponentTranslator(SyncAssetsTranslator):
    def __init__(self, component: SyncAssetsComponent):
        self._component = component

    def get_asset_spec(self, table: TableSpec, default_spec: dg.AssetSpec) -> dg.AssetSpec:
        return self._component.get_asset_spec(table, default_spec)


@dg.scaffold_with(SyncAssetsScaffolder)
class SyncAssetsComponent(dg.Component):
    """Database and API tables kept in sync as assets, configured like sync_assets' config/*.yaml.

    Override ``get_asset_spec`` to change the asset specs in Python."""

    def __init__(self, document: dict[str, Any] | None = None, config_dir: str | None = None):
        self.document = document or {}
        self.config_dir = config_dir

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return SyncAssetsAttributes

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> SyncAssetsComponent:
        if attributes is None:
            return cls()
        return cls(document=dict(attributes.model_extra or {}),
                   config_dir=getattr(attributes, "config_dir", None))

    def get_asset_spec(self, table: TableSpec, default_spec: dg.AssetSpec) -> dg.AssetSpec:
        """The translator hook: the spec to use for ``table`` (default: sync_assets' own)."""
        return default_spec

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        folder = Path(context.path)
        defs_yaml = folder / "defs.yaml"
        documents = [(defs_yaml, parse_document(self.document, defs_yaml))] if self.document else []
        files = sorted(p for p in (folder / self.config_dir).glob("*.y*ml") if p.is_file()) if self.config_dir else []
        project = load_files(files, folder, documents=documents)
        return build_definitions(project, translator=_ComponentTranslator(self), default_executor=False)
