"""sync_assets: keep copies of database tables in sync, as Dagster software-defined assets.

The data flows down the packages: ``config`` (the YAML, loaded into a ``Project``), ``sync``
(planning and running one table's sync), ``connectors`` (one package or module per database),
``shaping`` and ``types`` (transforms, validation, Arrow types), ``verify`` (diffs), then
``orchestration`` (Dagster: assets, steps, checks, schedules, sensors, alerts, the Component) and
``cli``. ``definitions.py`` is the Dagster entry point; ``demo/`` the Chinook demo location.

For Python users and ``dg`` (imported on first use, so ``import sync_assets`` stays cheap):
``SyncAssetsComponent``, ``SyncAssetsTranslator``, ``build_definitions`` and ``load_project``.
"""

from importlib import import_module
from typing import Any

_PUBLIC = {
    "SyncAssetsComponent": "sync_assets.orchestration.component",
    "SyncAssetsTranslator": "sync_assets.orchestration.translator",
    "build_definitions": "sync_assets.orchestration.project_definitions",
    "load_project": "sync_assets.config.loader",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sync_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
