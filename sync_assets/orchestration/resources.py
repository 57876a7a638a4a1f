"""Connections as Dagster resources: one ``SyncConnection`` per configured connection, listed by
name (``<connection>_connection``) on the UI's Resources page with its kind, role and options.

A connection's secrets (``password``, ``token``, an API ``key`` ...: written ``{env: NAME}``) are
Dagster ``EnvVar``s here. Dagster reads them when a run that needs the connection starts: a step
requires the resources of the connections it reads and writes, so a missing variable fails
exactly the runs of those tables (Dagster names the resource and the variable), while the
definitions load and every other run goes on. The sync builds its connectors from these
resolved options (``connection_spec``); the IO managers hold the target's resource.
"""

from __future__ import annotations

import copy
from typing import Any

import dagster as dg

from sync_assets.config.environment import ENV_PATTERN
from sync_assets.config.models import ConnectionSpec
from sync_assets.config.project import Project


def resource_key(connection: str) -> str:
    return f"{connection}_connection"


class SyncConnection(dg.ConfigurableResource):
    """One connection of the sync_assets configuration."""

    name: str
    kind: str
    role: str
    protected: bool = False
    options: dict[str, Any] = {}
    """The options, without the secrets."""
    secrets: dict[str, str] = {}
    """Option path (``password``, ``auth.token``) -> its value, from an environment variable."""

    def connection_spec(self, configured: ConnectionSpec | None = None) -> ConnectionSpec:
        """The connection with its secrets filled in (the rest as ``configured`` says, if given)."""
        options = _with_secrets(self.options, self.secrets)
        if configured is not None:
            return configured.model_copy(update={"options": options})
        return ConnectionSpec(kind=self.kind, role=self.role, protected=self.protected, options=options)


def connection_resources(project: Project) -> dict[str, SyncConnection]:
    return {resource_key(name): _resource(name, spec) for name, spec in sorted(project.connections.items())}


def _resource(name: str, spec: ConnectionSpec) -> SyncConnection:
    options, secrets = _split_secrets(spec.options)
    return SyncConnection(name=name, kind=spec.kind, role=spec.role, protected=spec.protected, options=options,
                          secrets={path: dg.EnvVar(variable) for path, variable in secrets.items()})


def _split_secrets(options: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], dict[str, str]]:
    """Options without the values that are exactly ``${NAME}`` (the loader's deferred secrets), and
    option path -> NAME for those."""
    kept: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for key, value in options.items():
        match = ENV_PATTERN.fullmatch(value) if isinstance(value, str) else None
        if match and match.group(2) is None:
            secrets[prefix + key] = match.group(1)
        elif isinstance(value, dict):
            kept[key], inner = _split_secrets(value, f"{prefix}{key}.")
            secrets.update(inner)
        elif value is not None:  # unset (Dagster's config maps take no nulls)
            kept[key] = value
    return kept, secrets


def _with_secrets(options: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    merged = copy.deepcopy(options)
    for path, value in secrets.items():
        *parents, key = path.split(".")
        place = merged
        for part in parents:
            place = place.setdefault(part, {})
        place[key] = value
    return merged
