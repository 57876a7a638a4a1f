"""Change sensors: one per source connection with ``change_sensor``, polling cheap change signals.

Each tick reads one signal per table: ``MAX(update_key)`` for tables with an update key, else
``COUNT(*)``; on Snowflake the catalog's ``LAST_ALTERED`` time, one ``INFORMATION_SCHEMA``
query per schema. The cursor (JSON: asset key -> last signal) keeps what was seen. Only tables
whose signal changed, that are inside their sync window and have no run queued or in progress,
are requested (``automation.run_requests``), with run keys derived from the signals, so the same
change never runs twice; tables held back keep their old signal and are requested once the
window opens or the other run has ended.
A source that cannot be polled fails the tick with a message naming the connection; Dagster
keeps the previous cursor, so nothing is lost. Custom-SQL streams have no cheap signal and are
left to schedules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from sync_assets.config.project import Project, TableSpec
from sync_assets.connectors import connector_for
from sync_assets.connectors.interface import Connector
from sync_assets.errors import SyncAssetsError
from sync_assets.orchestration.automation import active_runs, run_requests

CATALOG_SIGNAL_KINDS = frozenset({"snowflake"})
"""Connection kinds whose catalog keeps a per-table last-altered time (cheaper than MAX/COUNT)."""

Clock = Callable[[], datetime]


class SourceUnreachable(SyncAssetsError):
    """A change sensor could not poll its source; the tick fails and the cursor is kept."""


def sensor_name(connection: str) -> str:
    return f"{connection}_changes"


def cursor_key(table: TableSpec) -> str:
    return "/".join(table.asset_key)


def _text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _catalog_signals(connector: Connector, tables: list[TableSpec]) -> dict[str, str]:
    altered: dict[tuple[str | None, str], Any] = {}
    for schema in sorted({t.source_table.schema or "" for t in tables if t.source_table}):
        for info in connector.list_tables(schema or None):
            altered[(info.table.schema, info.table.name)] = info.last_altered
    signals = {}
    for table in tables:
        name = table.source_table
        matches = [v for (s, n), v in altered.items() if n == name.name and name.schema in (None, s)]
        signals[cursor_key(table)] = f"last_altered={_text(matches[0]) if matches else 'missing'}"
    return signals


def read_signals(connector: Connector, tables: list[TableSpec]) -> dict[str, str]:
    """One cheap query per table (one per schema for catalog signals): asset key -> signal text."""
    if connector.kind in CATALOG_SIGNAL_KINDS:
        return _catalog_signals(connector, tables)
    signals = {}
    for table in tables:
        if table.update_key:
            signals[cursor_key(table)] = f"max={_text(connector.max_value(table.source_table, table.update_key))}"
        else:
            count = connector.scalar(f"SELECT COUNT(*) FROM {connector.qualified(table.source_table)}")
            signals[cursor_key(table)] = f"rows={count}"
    return signals


def _digest(transitions: dict[str, list]) -> str:
    """A run key part from each changed table's (previous, new) signal."""
    return hashlib.sha256(json.dumps(transitions, sort_keys=True).encode()).hexdigest()[:16]


def watched_tables(project: Project, connection: str) -> list[TableSpec]:
    return [t for t in project.tables if t.source == connection and t.on_change and t.source_table is not None]


def build_change_sensor(project: Project, connection: str,
                        clock: Clock = lambda: datetime.now(UTC)) -> dg.SensorDefinition | None:
    spec = project.connections[connection].change_sensor
    tables = watched_tables(project, connection)
    if spec is None or not tables:
        return None
    name = sensor_name(connection)

    @dg.sensor(
        name=name,
        minimum_interval_seconds=spec.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=dg.AssetSelection.assets(*[dg.AssetKey(list(t.asset_key)) for t in tables]),
        description=f"Polls {len(tables)} table(s) of source {connection!r} for changes and syncs the changed ones.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        connector = connector_for(connection, project.connections[connection], read_only=True)
        try:
            signals = read_signals(connector, tables)
        except Exception as exc:
            raise SourceUnreachable(
                f"change sensor {name}: source connection {connection!r} could not be polled ({exc}); "
                "the cursor is kept and the next tick tries again"
            ) from exc
        changed = [t for t in tables if signals[cursor_key(t)] != seen.get(cursor_key(t))]
        if not changed:
            return dg.SkipReason(f"no change in {len(tables)} table(s) of {connection!r}")
        transitions = {cursor_key(t): [seen.get(cursor_key(t)), signals[cursor_key(t)]] for t in changed}
        out = run_requests(changed, clock(), f"{name}:{_digest(transitions)}", trigger=f"sensor:{name}",
                           active=active_runs(context))
        for line in out.held_back:
            context.log.info(f"held back: {line}")
        requested = {cursor_key(t): signals[cursor_key(t)] for t in out.requested}
        if not out.runs:
            return out.skip_reason(f"{len(changed)} changed table(s) of {connection!r}")
        return dg.SensorResult(run_requests=out.runs, cursor=json.dumps({**seen, **requested}, sort_keys=True))

    return _sensor


def build_change_sensors(project: Project) -> list[dg.SensorDefinition]:
    sensors = (build_change_sensor(project, name) for name in sorted(project.connections))
    return [s for s in sensors if s is not None]
