"""Schema drift: how the source's columns differ from the target's, and what the policy says.

``compare`` lists columns added in the source, dropped from it, and whose source type no longer
fits the target column. The asset calls ``enforce`` before writing (a ``fail`` policy stops the
sync with a SchemaMismatchError naming every difference; ``added: warn`` leaves new columns out
of the copy), and the ``schema_drift`` asset check reports the same comparison with severity WARN
or ERROR and the differences in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyarrow as pa

from sync_assets.config.project import TableSpec
from sync_assets.connectors.deletes import SOFT_DELETE_COLUMN
from sync_assets.connectors.hash_delta import ROW_HASH_COLUMN
from sync_assets.errors import SchemaMismatchError
from sync_assets.types.arrow import declared_type, fits_in

BOOKKEEPING_COLUMNS = (SOFT_DELETE_COLUMN, ROW_HASH_COLUMN)
"""Target columns sync_assets adds itself: never a source column, never drift."""


@dataclass(frozen=True)
class SchemaDrift:
    added: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    type_changed: tuple[str, ...] = ()
    """``column: source type -> target type`` for each column the target can no longer hold."""

    def by_category(self) -> dict[str, tuple[str, ...]]:
        return {"added": self.added, "dropped": self.dropped, "type_changed": self.type_changed}

    def describe(self) -> str:
        parts = [f"{category}: {', '.join(items)}" for category, items in self.by_category().items() if items]
        return "; ".join(parts) or "no differences"


def compare(source: pa.Schema, target: pa.Schema) -> SchemaDrift:
    return SchemaDrift(
        added=tuple(n for n in source.names if n not in target.names),
        dropped=tuple(n for n in target.names if n not in source.names and n not in BOOKKEEPING_COLUMNS),
        type_changed=tuple(
            f"{f.name}: {declared_type(f)} -> {declared_type(target.field(f.name))}" for f in source
            if f.name in target.names and not fits_in(f, target.field(f.name))
        ),
    )


def categories_with(table: TableSpec, drift: SchemaDrift, action: str) -> list[str]:
    policy = table.schema_drift
    actions = {"added": policy.added, "dropped": policy.dropped, "type_changed": policy.type_changed}
    return [category for category, items in drift.by_category().items() if items and actions[category] == action]


def enforce(table: TableSpec, drift: SchemaDrift) -> TableSpec:
    """Raise for differences the policy fails on; return the table to sync (new columns left out
    when ``added: warn``)."""
    failing = categories_with(table, drift, "fail")
    if failing:
        details = "; ".join(f"{c}: {', '.join(drift.by_category()[c])}" for c in failing)
        raise SchemaMismatchError(
            f"{table.label}: schema drift between source {table.source_object} and target "
            f"{table.target_table} that the schema_drift policy fails on ({details}); nothing was written"
        )
    if drift.added and table.schema_drift.added == "warn":
        return replace(table, exclude_columns=table.exclude_columns + drift.added)
    return table
