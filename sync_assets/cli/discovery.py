"""Discovery for ``sync-assets discover``: foreign keys between configured tables, read from each
source catalog (written to ``lineage.yaml`` by ``config.lineage``).
"""

from __future__ import annotations

from sync_assets.config.lineage import as_stream_name, same_table
from sync_assets.config.models import ForeignKeySpec
from sync_assets.config.project import Project


def discover_foreign_keys(project: Project) -> list[ForeignKeySpec]:
    """Foreign keys between configured source tables, read from each source connection's catalog."""
    from sync_assets.connectors import connector_for

    found: list[ForeignKeySpec] = []
    for connection in sorted({t.source for t in project.tables}):
        configured = [t.source_table for t in project.tables if t.source == connection and t.source_table]
        connector = connector_for(connection, project.connections[connection], read_only=True)
        for fk in connector.foreign_keys():
            if fk.child == fk.parent:
                continue
            if any(same_table(t, fk.child) for t in configured) and any(same_table(t, fk.parent) for t in configured):
                found.append(ForeignKeySpec(connection=connection, child=as_stream_name(fk.child),
                                            parent=as_stream_name(fk.parent),
                                            constraint=fk.constraint, columns=list(fk.columns)))
    return found
