"""SQL Server "staging + partition switch": a full refresh that keeps the target's own structure.

A plain full refresh rebuilds the target from the source (staging renamed into place), which
drops the indexes, partition scheme, compression and constraints a DBA gave a big UAT table.
``load_method: switch`` (and ``auto`` on a partitioned target) keeps them instead:

1. ``read_layout`` reads the target's structure from the catalog views: columns (types,
   collation, nullability), the table's filegroup or partition scheme, every index with its keys,
   included columns, filter, data space and per-partition compression, CHECK constraints, foreign
   keys, and the foreign keys of other tables that reference it.
2. ``switch_replace_sql`` scripts, for one transaction: a switch stage built exactly like the
   target (same columns in the same order, on the same filegroup or partition scheme, with the
   same clustered and nonclustered indexes and trusted constraints), the load from the bulk-loaded
   staging table with a TABLOCK insert, ``TRUNCATE TABLE`` of the target, ``ALTER TABLE ...
   SWITCH`` of the whole stage (or of every partition, partition by partition, when the table is
   partitioned), and the drop of the emptied stage. Switching is a metadata change: readers of
   the target see the old rows until the commit and the new ones after it.

What SQL Server cannot switch is refused by ``check_switchable`` before any row is loaded, with
the table, column or index named: a
target referenced by foreign keys (TRUNCATE is not allowed), computed, sparse or FILESTREAM
columns, typed xml, XML/spatial/hash indexes and disabled indexes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Protocol

from sync_assets.config.names import TableName
from sync_assets.connectors.mssql.types import MssqlColumn, nstring
from sync_assets.errors import SchemaMismatchError

SWITCH_SUFFIX = "__sync_switch"
CLUSTERED, NONCLUSTERED, CLUSTERED_COLUMNSTORE, NONCLUSTERED_COLUMNSTORE = 1, 2, 5, 6
_UNSUPPORTED_INDEX_TYPES = {3: "XML", 4: "spatial", 7: "hash (memory-optimized)"}

_COLUMNS_SQL = (
    "SELECT c.name, TYPE_NAME(CASE WHEN c.system_type_id = 240 THEN c.user_type_id ELSE c.system_type_id END), "
    "c.max_length, c.precision, c.scale, c.is_nullable, c.collation_name, c.is_identity, c.is_rowguidcol, "
    "c.is_computed, c.is_sparse, c.is_filestream, c.xml_collection_id "
    "FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(?) ORDER BY c.column_id"
)
_INDEXES_SQL = (
    "SELECT i.index_id, i.name, i.type, i.is_unique, i.is_primary_key, i.is_unique_constraint, "
    "i.filter_definition, i.is_disabled, ds.name, ds.type, pc.name, lob.name "
    "FROM sys.indexes AS i "
    "JOIN sys.tables AS t ON t.object_id = i.object_id "
    "JOIN sys.data_spaces AS ds ON ds.data_space_id = i.data_space_id "
    "LEFT JOIN sys.index_columns AS pic ON pic.object_id = i.object_id AND pic.index_id = i.index_id "
    "AND pic.partition_ordinal = 1 "
    "LEFT JOIN sys.columns AS pc ON pc.object_id = pic.object_id AND pc.column_id = pic.column_id "
    "LEFT JOIN sys.data_spaces AS lob ON lob.data_space_id = t.lob_data_space_id "
    "WHERE i.object_id = OBJECT_ID(?) AND i.is_hypothetical = 0 ORDER BY i.index_id"
)
_INDEX_COLUMNS_SQL = (
    "SELECT ic.index_id, c.name, ic.key_ordinal, ic.is_descending_key, ic.is_included_column "
    "FROM sys.index_columns AS ic "
    "JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id "
    "WHERE ic.object_id = OBJECT_ID(?) ORDER BY ic.index_id, ic.key_ordinal, ic.index_column_id"
)
_PARTITIONS_SQL = (
    "SELECT p.index_id, p.partition_number, p.data_compression_desc FROM sys.partitions AS p "
    "WHERE p.object_id = OBJECT_ID(?) ORDER BY p.index_id, p.partition_number"
)
_CHECKS_SQL = (
    "SELECT cc.name, cc.definition FROM sys.check_constraints AS cc "
    "WHERE cc.parent_object_id = OBJECT_ID(?) AND cc.is_disabled = 0 ORDER BY cc.name"
)
_FOREIGN_KEYS_SQL = (
    "SELECT fk.name, pc.name, OBJECT_SCHEMA_NAME(fk.referenced_object_id), OBJECT_NAME(fk.referenced_object_id), "
    "rc.name, fk.delete_referential_action_desc, fk.update_referential_action_desc "
    "FROM sys.foreign_keys AS fk "
    "JOIN sys.foreign_key_columns AS fkc ON fkc.constraint_object_id = fk.object_id "
    "JOIN sys.columns AS pc ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id "
    "JOIN sys.columns AS rc ON rc.object_id = fkc.referenced_object_id AND rc.column_id = fkc.referenced_column_id "
    "WHERE fk.parent_object_id = OBJECT_ID(?) AND fk.is_disabled = 0 ORDER BY fk.name, fkc.constraint_column_id"
)
_REFERENCED_BY_SQL = (
    "SELECT fk.name, OBJECT_SCHEMA_NAME(fk.parent_object_id), OBJECT_NAME(fk.parent_object_id) "
    "FROM sys.foreign_keys AS fk WHERE fk.referenced_object_id = OBJECT_ID(?) ORDER BY fk.name"
)
_PARTITIONED_SQL = (
    "SELECT ds.type FROM sys.indexes AS i JOIN sys.data_spaces AS ds ON ds.data_space_id = i.data_space_id "
    "WHERE i.object_id = OBJECT_ID(?) AND i.index_id IN (0, 1)"
)
CATALOG_QUERIES = (_COLUMNS_SQL, _INDEXES_SQL, _INDEX_COLUMNS_SQL, _PARTITIONS_SQL, _CHECKS_SQL,
                   _FOREIGN_KEYS_SQL, _REFERENCED_BY_SQL, _PARTITIONED_SQL)

Fetch = Callable[[str, Sequence[Any]], list[tuple]]
Quote = Callable[[str], str]


class Dialect(Protocol):
    """The connector's T-SQL spelling of names and casts."""

    def quote(self, identifier: str) -> str: ...

    def qualified(self, table: TableName) -> str: ...

    def cast_expression(self, column: str, target_type: str, qualifier: str = "") -> str: ...


@dataclass(frozen=True)
class SwitchColumn:
    column: MssqlColumn
    collation: str | None = None
    identity: bool = False
    rowguid: bool = False
    computed: bool = False
    sparse: bool = False
    filestream: bool = False
    typed_xml: bool = False


@dataclass(frozen=True)
class DataSpace:
    """A filegroup (``FG``) or a partition scheme (``PS``) with its partitioning column."""

    name: str
    kind: str
    partition_column: str | None = None

    @property
    def partitioned(self) -> bool:
        return self.kind == "PS"

    def clause(self, quote: Quote) -> str:
        if self.partitioned:
            return f" ON {quote(self.name)}({quote(self.partition_column or '')})"
        return f" ON {quote(self.name)}"


@dataclass(frozen=True)
class IndexDef:
    index_id: int
    name: str | None
    type_code: int
    unique: bool
    primary_key: bool
    unique_constraint: bool
    filter: str | None
    disabled: bool
    space: DataSpace
    keys: tuple[tuple[str, bool], ...] = ()
    """(column, descending) in key order."""
    included: tuple[str, ...] = ()
    compression: tuple[tuple[int, str], ...] = ()
    """(partition number, DATA_COMPRESSION) for every partition of the index."""


@dataclass(frozen=True)
class ForeignKeyDef:
    name: str
    columns: tuple[str, ...]
    parent: TableName
    parent_columns: tuple[str, ...]
    on_delete: str
    on_update: str


@dataclass(frozen=True)
class TableLayout:
    """What a switch stage must reproduce of a target table."""

    columns: tuple[SwitchColumn, ...]
    space: DataSpace
    lob_filegroup: str | None
    partition_count: int
    heap: IndexDef
    """The heap (``index_id`` 0) or the clustered index (1): where the rows live."""
    indexes: tuple[IndexDef, ...] = ()
    """Every index (the clustered one included), in ``index_id`` order."""
    checks: tuple[tuple[str, str], ...] = ()
    foreign_keys: tuple[ForeignKeyDef, ...] = ()
    referenced_by: tuple[str, ...] = field(default=())
    """Foreign keys of other tables (or of the table itself) that reference it, as ``name (table)``."""


def is_partitioned(fetch: Fetch, qualified: str) -> bool:
    """True when the table's rows (heap or clustered index) live on a partition scheme."""
    return any(row[0] == "PS" for row in fetch(_PARTITIONED_SQL, (qualified,)))


def read_layout(fetch: Fetch, qualified: str) -> TableLayout:
    """The target's structure from the catalog views (``qualified``: its bracket-quoted name)."""
    args = (qualified,)
    return layout_from_catalog(
        columns=fetch(_COLUMNS_SQL, args), indexes=fetch(_INDEXES_SQL, args),
        index_columns=fetch(_INDEX_COLUMNS_SQL, args), partitions=fetch(_PARTITIONS_SQL, args),
        checks=fetch(_CHECKS_SQL, args), foreign_keys=fetch(_FOREIGN_KEYS_SQL, args),
        referenced_by=fetch(_REFERENCED_BY_SQL, args),
    )


def layout_from_catalog(*, columns: Sequence[tuple], indexes: Sequence[tuple], index_columns: Sequence[tuple],
                        partitions: Sequence[tuple], checks: Sequence[tuple], foreign_keys: Sequence[tuple],
                        referenced_by: Sequence[tuple]) -> TableLayout:
    """Build the layout from the rows of the catalog queries above, as pyodbc returns them."""
    switch_columns = tuple(
        SwitchColumn(MssqlColumn(name, type_name, max_length, precision, scale, bool(nullable)), collation,
                     bool(identity), bool(rowguid), bool(computed), bool(sparse), bool(filestream),
                     bool(xml_collection))
        for (name, type_name, max_length, precision, scale, nullable, collation, identity, rowguid, computed,
             sparse, filestream, xml_collection) in columns
    )
    keys: dict[int, list[tuple[str, bool]]] = {}
    included: dict[int, list[str]] = {}
    for index_id, column, key_ordinal, descending, is_included in index_columns:
        if is_included:
            included.setdefault(index_id, []).append(column)
        elif key_ordinal:
            keys.setdefault(index_id, []).append((column, bool(descending)))
    compression = {index_id: tuple((number, desc) for _, number, desc in rows)
                   for index_id, rows in groupby(partitions, key=lambda row: row[0])}
    defs = [
        IndexDef(index_id, name, type_code, bool(unique), bool(pk), bool(uq), filter_, bool(disabled),
                 DataSpace(space, space_kind, partition_column), tuple(keys.get(index_id, ())),
                 tuple(included.get(index_id, ())), compression.get(index_id, ()))
        for (index_id, name, type_code, unique, pk, uq, filter_, disabled, space, space_kind, partition_column,
             _lob) in indexes
    ]
    heap = next(d for d in defs if d.index_id in (0, 1))
    fks = []
    for name, rows in groupby(foreign_keys, key=lambda row: row[0]):
        rows = list(rows)
        _, _, parent_schema, parent, _, on_delete, on_update = rows[0]
        fks.append(ForeignKeyDef(name, tuple(r[1] for r in rows), TableName(parent_schema, parent),
                                 tuple(r[4] for r in rows), on_delete, on_update))
    return TableLayout(
        columns=switch_columns, space=heap.space, lob_filegroup=indexes[0][11] if indexes else None,
        partition_count=len(heap.compression) or 1, heap=heap,
        indexes=tuple(d for d in defs if d.index_id > 0), checks=tuple((n, d) for n, d in checks),
        foreign_keys=tuple(fks), referenced_by=tuple(f"{n} ({s}.{t})" for n, s, t in referenced_by),
    )


def check_switchable(layout: TableLayout, table: TableName, columns: Sequence[str]) -> None:
    """Raise, naming the table and the object, for what SQL Server cannot switch or the stage
    cannot take from ``columns`` (the source's); called before any row is loaded."""
    hint = "; load it with load_method: rename instead (which rebuilds the table)"
    if layout.referenced_by:
        raise SchemaMismatchError(
            f"table {table}: load_method switch empties the target with TRUNCATE TABLE, which SQL Server refuses "
            f"while foreign keys reference it: {', '.join(layout.referenced_by)}{hint}")
    for col in layout.columns:
        problem = ("a computed column" if col.computed else "a sparse column" if col.sparse else
                   "a FILESTREAM column" if col.filestream else "typed xml (an XML schema collection)"
                   if col.typed_xml else None)
        if problem:
            raise SchemaMismatchError(f"table {table}: column {col.column.name!r} is {problem}, "
                                      f"which the switch stage does not reproduce{hint}")
    for index in layout.indexes:
        if index.type_code in _UNSUPPORTED_INDEX_TYPES:
            raise SchemaMismatchError(f"table {table}: index {index.name!r} is a "
                                      f"{_UNSUPPORTED_INDEX_TYPES[index.type_code]} index, which the switch "
                                      f"stage does not reproduce{hint}")
        if index.disabled:
            raise SchemaMismatchError(f"table {table}: index {index.name!r} is disabled; rebuild or drop it "
                                      f"before a switch load{hint}")
    target_names = [c.column.name for c in layout.columns]
    extra = [c for c in columns if c not in target_names]
    if extra:
        raise SchemaMismatchError(
            f"table {table}: source column(s) {', '.join(map(repr, extra))} are not in the target; a switch "
            "load keeps the target's structure, so add them to the target (and its indexes) first, "
            "or load with load_method: rename")
    missing = [c.column.name for c in layout.columns if c.column.name not in columns and not c.column.nullable]
    if missing:
        raise SchemaMismatchError(
            f"table {table}: target column(s) {', '.join(map(repr, missing))} are NOT NULL but the source "
            "does not provide them; select them from the source or make them nullable")


def stage_for(table: TableName) -> TableName:
    return TableName(table.schema, table.name + SWITCH_SUFFIX)


def switch_replace_sql(sql: Dialect, layout: TableLayout, target: TableName, staging: TableName,
                       columns: Sequence[str], casts: Mapping[str, str]) -> list[str]:
    """The statements of one transaction that replace every row of ``target`` with the rows of
    ``staging`` (the bulk-loaded source columns) through a switch stage built like the target;
    ``check_switchable`` has accepted ``layout`` and ``columns``."""
    quote, qualified = sql.quote, sql.qualified
    stage = stage_for(target)
    suffix = _constraint_suffixer(quote)
    column_list = ", ".join(quote(c) for c in columns)
    selected = ", ".join(sql.cast_expression(c, casts[c]) if c in casts else quote(c) for c in columns)
    statements = [
        _create_stage_sql(quote, layout, qualified(stage)),
        f"INSERT INTO {qualified(stage)} WITH (TABLOCK) ({column_list}) SELECT {selected} FROM {qualified(staging)}",
    ]
    clustered_first = sorted(layout.indexes, key=lambda i: (i.type_code not in (CLUSTERED, CLUSTERED_COLUMNSTORE),
                                                            i.index_id))
    statements += [_index_sql(quote, index, qualified(stage), suffix) for index in clustered_first]
    statements += [f"ALTER TABLE {qualified(stage)} WITH CHECK ADD CONSTRAINT {suffix(name)} CHECK {definition}"
                   for name, definition in layout.checks]
    statements += [_foreign_key_sql(sql, fk, qualified(stage), suffix) for fk in layout.foreign_keys]
    statements.append(f"TRUNCATE TABLE {qualified(target)}")
    if layout.space.partitioned:
        statements += [f"ALTER TABLE {qualified(stage)} SWITCH PARTITION {n} TO {qualified(target)} PARTITION {n}"
                       for n in range(1, layout.partition_count + 1)]
    else:
        statements.append(f"ALTER TABLE {qualified(stage)} SWITCH TO {qualified(target)}")
    statements.append(f"DROP TABLE {qualified(stage)}")
    if any(c.identity for c in layout.columns):
        # switched-in rows do not move the identity seed: reseed to the new maximum
        statements.append(f"DBCC CHECKIDENT ({nstring(qualified(target))}, RESEED)")
    return statements


def _constraint_suffixer(quote: Quote) -> Callable[[str], str]:
    """Constraint names are unique per schema: the stage's copies get a suffix (within 128 chars)."""
    return lambda name: quote(name[:128 - len(SWITCH_SUFFIX)] + SWITCH_SUFFIX)


def _create_stage_sql(quote: Quote, layout: TableLayout, stage: str) -> str:
    """The stage's columns exactly as the target's (same order, type, collation, nullability; the
    IDENTITY property is left out, SWITCH ignores it) on the target's filegroup or scheme."""
    definitions = []
    for col in layout.columns:
        parts = [quote(col.column.name), col.column.ddl]
        if col.collation:
            parts.append(f"COLLATE {col.collation}")
        if col.rowguid:
            parts.append("ROWGUIDCOL")
        parts.append("NULL" if col.column.nullable else "NOT NULL")
        definitions.append(" ".join(parts))
    sql = f"CREATE TABLE {stage} ({', '.join(definitions)}){layout.space.clause(quote)}"
    if layout.lob_filegroup and any(c.column.ddl.endswith("(max)") or c.column.ddl in ("text", "ntext", "image", "xml")
                                    for c in layout.columns):
        sql += f" TEXTIMAGE_ON {quote(layout.lob_filegroup)}"
    if layout.heap.index_id == 0:
        sql += _with(_compression_options(layout.heap))
    return sql


def _index_sql(quote: Quote, index: IndexDef, stage: str, suffix: Callable[[str], str]) -> str:
    kind = "CLUSTERED" if index.type_code in (CLUSTERED, CLUSTERED_COLUMNSTORE) else "NONCLUSTERED"
    options = _with(_compression_options(index))
    keys = ", ".join(f"{quote(c)} {'DESC' if desc else 'ASC'}" for c, desc in index.keys)
    space = index.space.clause(quote)
    if index.primary_key or index.unique_constraint:
        constraint = "PRIMARY KEY" if index.primary_key else "UNIQUE"
        return (f"ALTER TABLE {stage} ADD CONSTRAINT {suffix(index.name or '')} {constraint} {kind} ({keys})"
                f"{options}{space}")
    where = f" WHERE {index.filter}" if index.filter else ""
    name = quote(index.name or "")
    if index.type_code == CLUSTERED_COLUMNSTORE:
        return f"CREATE CLUSTERED COLUMNSTORE INDEX {name} ON {stage}{options}{space}"
    if index.type_code == NONCLUSTERED_COLUMNSTORE:
        members = ", ".join(quote(c) for c in (*(c for c, _ in index.keys), *index.included))
        return f"CREATE NONCLUSTERED COLUMNSTORE INDEX {name} ON {stage} ({members}){where}{options}{space}"
    include = f" INCLUDE ({', '.join(quote(c) for c in index.included)})" if index.included else ""
    unique = "UNIQUE " if index.unique else ""
    return f"CREATE {unique}{kind} INDEX {name} ON {stage} ({keys}){include}{where}{options}{space}"


def _compression_options(index: IndexDef) -> list[str]:
    """``DATA_COMPRESSION`` options matching the target's, per partition when they differ
    (SWITCH needs the same compression on both sides)."""
    default = "COLUMNSTORE" if index.type_code in (CLUSTERED_COLUMNSTORE, NONCLUSTERED_COLUMNSTORE) else "NONE"
    by_setting: dict[str, list[int]] = {}
    for number, setting in index.compression:
        by_setting.setdefault(setting, []).append(number)
    if set(by_setting) <= {default}:
        return []
    if len(by_setting) == 1:
        return [f"DATA_COMPRESSION = {next(iter(by_setting))}"]
    return [f"DATA_COMPRESSION = {setting} ON PARTITIONS ({', '.join(map(str, numbers))})"
            for setting, numbers in by_setting.items() if setting != default]


def _with(options: list[str]) -> str:
    return f" WITH ({', '.join(options)})" if options else ""


def _foreign_key_sql(sql: Dialect, fk: ForeignKeyDef, stage: str, suffix: Callable[[str], str]) -> str:
    return (f"ALTER TABLE {stage} WITH CHECK ADD CONSTRAINT {suffix(fk.name)} "
            f"FOREIGN KEY ({', '.join(sql.quote(c) for c in fk.columns)}) REFERENCES {sql.qualified(fk.parent)} "
            f"({', '.join(sql.quote(c) for c in fk.parent_columns)}) "
            f"ON DELETE {fk.on_delete.replace('_', ' ')} ON UPDATE {fk.on_update.replace('_', ' ')}")
