"""The Dagster entry point: ``dagster ... -m sync_assets.definitions``.

Builds the Definitions from the YAML in ``$SYNC_ASSETS_CONFIG`` (default: ``config/`` in the
project). Loading touches no database (foreign keys come from ``lineage.yaml``, written by
``sync-assets discover``). The Chinook demo is its own code location: ``sync_assets.demo.definitions``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sync_assets.config.loader import load_project
from sync_assets.orchestration.project_definitions import build_definitions

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def config_dir() -> Path:
    return Path(os.environ.get("SYNC_ASSETS_CONFIG", DEFAULT_CONFIG_DIR))


defs = build_definitions(load_project(config_dir()))
