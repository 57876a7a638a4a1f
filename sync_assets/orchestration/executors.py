"""Which Dagster executor runs a project's steps, from its ``execution:`` block (docs/deployment.md).

- ``in_process`` (default): every step in the run's own process. A step already syncs its
  tables concurrently, and a step in its own process costs 1-5 s of start-up on a small machine.
- ``multiprocess``: steps in parallel processes (``max_concurrent``), one step at a time per
  DuckDB target (tag concurrency limit).
- ``celery`` (``dagster-celery``): each step is a Celery task, run by whichever worker takes it
  (``dagster-celery worker start -A dagster_celery.app -y <config>``), over ``celery.broker``.
- ``k8s`` (``dagster-k8s``): each step in its own Kubernetes pod.

``SYNC_ASSETS_EXECUTOR`` overrides the configured executor (and ``SYNC_ASSETS_MAX_CONCURRENT``
its ``max_concurrent``). DuckDB targets are files on one machine: the distributed executors are
refused for them (``check_targets``), except Celery with ``single_machine: true``, where every
worker runs here and takes its turn on the file through the table's writer lock.
"""

from __future__ import annotations

import os

import dagster as dg

from sync_assets.config.models import ExecutionSpec
from sync_assets.config.project import Project
from sync_assets.errors import ConfigError

DISTRIBUTED = ("celery", "k8s")


def execution_of(project: Project) -> ExecutionSpec:
    """The project's execution settings with the environment's overrides applied."""
    spec = project.execution or ExecutionSpec()
    updates: dict = {}
    if os.environ.get("SYNC_ASSETS_EXECUTOR"):
        updates["executor"] = os.environ["SYNC_ASSETS_EXECUTOR"]
    if os.environ.get("SYNC_ASSETS_MAX_CONCURRENT"):
        updates["max_concurrent"] = int(os.environ["SYNC_ASSETS_MAX_CONCURRENT"])
    if not updates:
        return spec
    try:
        return ExecutionSpec.model_validate({**spec.model_dump(), **updates})
    except ValueError as exc:
        raise ConfigError(f"SYNC_ASSETS_EXECUTOR / SYNC_ASSETS_MAX_CONCURRENT: {exc}") from exc


def check_targets(project: Project, spec: ExecutionSpec) -> None:
    """Refuse a distributed executor that would write a DuckDB file from several machines."""
    if spec.executor not in DISTRIBUTED:
        return
    written = _duckdb_targets(project)
    if not written or (spec.executor == "celery" and spec.single_machine):
        return
    name = written[0]
    path = project.connections[name].options.get("path")
    hint = ("set execution.single_machine: true if every Celery worker runs on this machine, "
            if spec.executor == "celery" else "")
    raise ConfigError(
        f"execution: executor {spec.executor!r} runs steps on several machines, but connection {name!r} is the "
        f"DuckDB file {path}: each machine would write its own copy of it, and DuckDB takes one writing process "
        f"per file. {hint.capitalize()}use a PostgreSQL target for distributed runs, or executor "
        f"'in_process' / 'multiprocess'.")


def _duckdb_targets(project: Project) -> list[str]:
    """The DuckDB connections the project's tables write."""
    return sorted({t.target for t in project.tables if project.connections[t.target].kind == "duckdb"})


def build_executor(project: Project) -> dg.ExecutorDefinition:
    spec = execution_of(project)
    check_targets(project, spec)
    if spec.executor == "in_process":
        return dg.in_process_executor
    if spec.executor == "multiprocess":
        return dg.multiprocess_executor.configured({
            "max_concurrent": spec.max_concurrent,
            "tag_concurrency_limits": [{"key": "sync_assets/target", "value": name, "limit": 1}
                                       for name in _duckdb_targets(project)],
        })
    if spec.executor == "celery":
        celery_executor = _import("dagster_celery", "celery_executor", "dagster-celery")
        return celery_executor.configured({"broker": spec.celery.broker, "backend": spec.celery.backend})
    k8s_job_executor = _import("dagster_k8s", "k8s_job_executor", "dagster-k8s")
    return k8s_job_executor.configured({"max_concurrent": spec.max_concurrent})


def _import(module: str, name: str, package: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ConfigError(f"execution: executor needs the {package} package (pip install {package}=="
                          f"{_integration_version()}): {exc}") from exc


def _integration_version() -> str:
    """Dagster integrations are versioned 0.X.Y alongside Dagster 1.X.Y."""
    major, minor, patch = dg.__version__.split(".")[:3]
    return f"0.{int(minor) + 16}.{patch}"
