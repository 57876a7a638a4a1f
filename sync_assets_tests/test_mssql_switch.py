"""SQL Server staging + partition switch: the target's structure read from catalog rows, the
switch-ready stage scripted from it, the refusals, and the wiring into the shared write path.

No SQL Server runs here (docs/sqlserver.md). Catalog rows are written as pyodbc returns them
from the queries in ``mssql_switch``; statements sqlglot parses are checked structurally, the
rest (SWITCH, index options, ``WITH (TABLOCK)``, DBCC) by exact text. The live suite runs a
switch load on a real partitioned table.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from sync_assets.config.models import ConnectionSpec
from sync_assets.config.names import TableName
from sync_assets.connectors.interface import WriteOp
from sync_assets.connectors.mssql import switch
from sync_assets.connectors.mssql.connector import MssqlConnector
from sync_assets.errors import ConfigError, SchemaMismatchError

TARGET = TableName("sales", "Order Lines]")
STAGING = TableName("sales", "Order Lines]__sync_staging")

COLUMN_ROWS = [
    # name, type, max_length, precision, scale, nullable, collation, identity, rowguid, computed, sparse,
    # filestream, xml_collection_id
    ("LineId", "bigint", 8, 19, 0, False, None, True, False, False, False, False, 0),
    ("OrderDate", "date", 3, 10, 0, False, None, False, False, False, False, False, 0),
    ("Sku", "nvarchar", 80, 0, 0, True, "Latin1_General_CI_AS", False, False, False, False, False, 0),
    ("Amount", "decimal", 9, 12, 2, True, None, False, False, False, False, False, 0),
    ("Note", "nvarchar", -1, 0, 0, True, "Latin1_General_CI_AS", False, False, False, False, False, 0),
    ("CustomerId", "int", 4, 10, 0, True, None, False, False, False, False, False, 0),
]
INDEX_ROWS = [
    # index_id, name, type, unique, pk, unique constraint, filter, disabled, space, space type, partition column,
    # LOB filegroup
    (1, "PK_Order Lines]", 1, True, True, False, None, False, "psOrderDate", "PS", "OrderDate", "LOBS"),
    (2, "IX_Sku", 2, False, False, False, "([Sku] IS NOT NULL)", False, "psOrderDate", "PS", "OrderDate", "LOBS"),
    (3, "UQ_Sku_Date", 2, True, False, True, None, False, "psOrderDate", "PS", "OrderDate", "LOBS"),
]
INDEX_COLUMN_ROWS = [
    # index_id, column, key_ordinal, descending, included
    (1, "OrderDate", 1, False, False), (1, "LineId", 2, False, False),
    (2, "OrderDate", 0, False, False),  # the partitioning column an aligned index carries implicitly
    (2, "Sku", 1, False, False), (2, "Amount", 2, True, False), (2, "Note", 0, False, True),
    (3, "Sku", 1, False, False), (3, "OrderDate", 2, False, False),
]
PARTITION_ROWS = [
    (1, 1, "NONE"), (1, 2, "PAGE"), (1, 3, "PAGE"),
    (2, 1, "ROW"), (2, 2, "ROW"), (2, 3, "ROW"),
    (3, 1, "NONE"), (3, 2, "NONE"), (3, 3, "NONE"),
]
CHECK_ROWS = [("CK_Amount", "([Amount]>=(0))")]
FOREIGN_KEY_ROWS = [("FK_Customer", "CustomerId", "sales", "Customers", "Id", "NO_ACTION", "SET_NULL")]
NAMES = [row[0] for row in COLUMN_ROWS]


def layout(**overrides) -> switch.TableLayout:
    rows = dict(columns=COLUMN_ROWS, indexes=INDEX_ROWS, index_columns=INDEX_COLUMN_ROWS, partitions=PARTITION_ROWS,
                checks=CHECK_ROWS, foreign_keys=FOREIGN_KEY_ROWS, referenced_by=[])
    rows.update(overrides)
    return switch.layout_from_catalog(**rows)


@pytest.fixture
def conn() -> MssqlConnector:
    return MssqlConnector("uat", ConnectionSpec(kind="mssql", role="target", options={
        "server": "uat", "database": "Sales", "user": "u", "password": "p"}))


def test_layout_reads_space_partitions_keys_includes_and_compression():
    table = layout()
    assert table.space == switch.DataSpace("psOrderDate", "PS", "OrderDate") and table.space.partitioned
    assert table.partition_count == 3 and table.lob_filegroup == "LOBS" and table.heap.index_id == 1
    by_name = {i.name: i for i in table.indexes}
    assert by_name["IX_Sku"].keys == (("Sku", False), ("Amount", True))
    assert by_name["IX_Sku"].included == ("Note",)
    assert by_name["PK_Order Lines]"].compression == ((1, "NONE"), (2, "PAGE"), (3, "PAGE"))
    assert table.foreign_keys == (switch.ForeignKeyDef("FK_Customer", ("CustomerId",), TableName("sales", "Customers"),
                                                       ("Id",), "NO_ACTION", "SET_NULL"),)
    assert [c.column.ddl for c in table.columns] == ["bigint", "date", "nvarchar(40)", "decimal(12,2)",
                                                     "nvarchar(max)", "int"]


def test_switch_replace_script_exact_text(conn):
    names = ["LineId", "OrderDate", "Sku", "Amount", "Note", "CustomerId"]
    statements = switch.switch_replace_sql(conn, layout(), TARGET, STAGING, names, {"OrderDate": "date"})
    stage = "[sales].[Order Lines]]__sync_switch]"
    assert statements == [
        f"CREATE TABLE {stage} ([LineId] bigint NOT NULL, [OrderDate] date NOT NULL, "
        "[Sku] nvarchar(40) COLLATE Latin1_General_CI_AS NULL, [Amount] decimal(12,2) NULL, "
        "[Note] nvarchar(max) COLLATE Latin1_General_CI_AS NULL, [CustomerId] int NULL) "
        "ON [psOrderDate]([OrderDate]) TEXTIMAGE_ON [LOBS]",
        f"INSERT INTO {stage} WITH (TABLOCK) ([LineId], [OrderDate], [Sku], [Amount], [Note], [CustomerId]) "
        f"SELECT [LineId], {conn.cast_expression('OrderDate', 'date')}, [Sku], [Amount], [Note], "
        "[CustomerId] FROM [sales].[Order Lines]]__sync_staging]",
        f"ALTER TABLE {stage} ADD CONSTRAINT [PK_Order Lines]]__sync_switch] PRIMARY KEY CLUSTERED "
        "([OrderDate] ASC, [LineId] ASC) WITH (DATA_COMPRESSION = PAGE ON PARTITIONS (2, 3)) "
        "ON [psOrderDate]([OrderDate])",
        f"CREATE NONCLUSTERED INDEX [IX_Sku] ON {stage} ([Sku] ASC, [Amount] DESC) INCLUDE ([Note]) "
        "WHERE ([Sku] IS NOT NULL) WITH (DATA_COMPRESSION = ROW) ON [psOrderDate]([OrderDate])",
        f"ALTER TABLE {stage} ADD CONSTRAINT [UQ_Sku_Date__sync_switch] UNIQUE NONCLUSTERED "
        "([Sku] ASC, [OrderDate] ASC) ON [psOrderDate]([OrderDate])",
        f"ALTER TABLE {stage} WITH CHECK ADD CONSTRAINT [CK_Amount__sync_switch] CHECK ([Amount]>=(0))",
        f"ALTER TABLE {stage} WITH CHECK ADD CONSTRAINT [FK_Customer__sync_switch] FOREIGN KEY ([CustomerId]) "
        "REFERENCES [sales].[Customers] ([Id]) ON DELETE NO ACTION ON UPDATE SET NULL",
        "TRUNCATE TABLE [sales].[Order Lines]]]",
        f"ALTER TABLE {stage} SWITCH PARTITION 1 TO [sales].[Order Lines]]] PARTITION 1",
        f"ALTER TABLE {stage} SWITCH PARTITION 2 TO [sales].[Order Lines]]] PARTITION 2",
        f"ALTER TABLE {stage} SWITCH PARTITION 3 TO [sales].[Order Lines]]] PARTITION 3",
        f"DROP TABLE {stage}",
        "DBCC CHECKIDENT (N'[sales].[Order Lines]]]', RESEED)",
    ]


def test_statements_sqlglot_parses_match_the_target_structure(conn):
    names = [row[0] for row in COLUMN_ROWS]
    statements = switch.switch_replace_sql(conn, layout(), TARGET, STAGING, names, {})
    create_sql, textimage = statements[0].split(" TEXTIMAGE_ON ")  # sqlglot has no TEXTIMAGE_ON
    assert textimage == "[LOBS]"
    create = sqlglot.parse_one(create_sql, read="tsql")
    assert isinstance(create, exp.Create)
    assert [c.name for c in create.find_all(exp.ColumnDef)] == names  # same columns, same order
    assert create.this.this.name == "Order Lines]__sync_switch"
    check, foreign_key = (sqlglot.parse_one(s, read="tsql") for s in statements[5:7])
    assert isinstance(check, exp.Alter) and {c.name for c in check.find_all(exp.Column)} == {"Amount"}
    assert isinstance(foreign_key, exp.Alter)
    assert {t.name for t in foreign_key.find_all(exp.Table)} >= {"Customers"}
    truncate = sqlglot.parse_one(statements[7], read="tsql")
    assert isinstance(truncate, exp.TruncateTable) and truncate.find(exp.Table).name == "Order Lines]"
    assert isinstance(sqlglot.parse_one(statements[-2], read="tsql"), exp.Drop)


def test_catalog_queries_parse_as_tsql_and_read_catalog_views():
    for sql in switch.CATALOG_QUERIES:
        tree = sqlglot.parse_one(sql, read="tsql")
        tables = {f"{t.db}.{t.name}" for t in tree.find_all(exp.Table)}
        assert tables and all(t.startswith("sys.") for t in tables), tables
        assert sql.count("?") == 1


def test_non_partitioned_heap_switches_the_whole_table_with_its_compression(conn):
    heap_rows = [(0, None, 0, False, False, False, None, False, "PRIMARY", "FG", None, None)]
    table = layout(indexes=heap_rows, index_columns=[], partitions=[(0, 1, "PAGE")], checks=[], foreign_keys=[],
                   columns=[r[:7] + (False,) + r[8:] for r in COLUMN_ROWS[:4]])
    statements = switch.switch_replace_sql(conn, table, TARGET, STAGING, ["LineId", "OrderDate", "Sku", "Amount"], {})
    assert statements[0].endswith("ON [PRIMARY] WITH (DATA_COMPRESSION = PAGE)")
    assert statements[2:] == [
        "TRUNCATE TABLE [sales].[Order Lines]]]",
        "ALTER TABLE [sales].[Order Lines]]__sync_switch] SWITCH TO [sales].[Order Lines]]]",
        "DROP TABLE [sales].[Order Lines]]__sync_switch]",
    ]


def test_columnstore_indexes_are_reproduced(conn):
    indexes = [(1, "CCI", 5, False, False, False, None, False, "PRIMARY", "FG", None, None),
               (2, "NCCI", 6, False, False, False, None, False, "PRIMARY", "FG", None, None)]
    table = layout(indexes=indexes, index_columns=[(2, "Sku", 0, False, True), (2, "Amount", 0, False, True)],
                   partitions=[(1, 1, "COLUMNSTORE_ARCHIVE"), (2, 1, "COLUMNSTORE")], checks=[], foreign_keys=[])
    statements = switch.switch_replace_sql(conn, table, TARGET, STAGING, [r[0] for r in COLUMN_ROWS], {})
    stage = "[sales].[Order Lines]]__sync_switch]"
    assert f"CREATE CLUSTERED COLUMNSTORE INDEX [CCI] ON {stage} WITH (DATA_COMPRESSION = COLUMNSTORE_ARCHIVE) " \
           "ON [PRIMARY]" in statements
    assert f"CREATE NONCLUSTERED COLUMNSTORE INDEX [NCCI] ON {stage} ([Sku], [Amount]) ON [PRIMARY]" in statements


@pytest.mark.parametrize("overrides, names, message", [
    (dict(referenced_by=[("FK_Child_Order", "sales", "Child")]), None,
     r"foreign keys reference it: FK_Child_Order \(sales.Child\)"),
    (dict(columns=COLUMN_ROWS[:5] + [("Total", "int", 4, 10, 0, True, None, False, False, True, False, False, 0)]),
     None, r"column 'Total' is a computed column"),
    (dict(indexes=INDEX_ROWS + [(4, "SIX_Shape", 4, False, False, False, None, False, "PRIMARY", "FG", None, None)]),
     None, r"index 'SIX_Shape' is a spatial index"),
    (dict(indexes=INDEX_ROWS[:1] + [INDEX_ROWS[1][:7] + (True,) + INDEX_ROWS[1][8:]]), None,
     r"index 'IX_Sku' is disabled"),
    ({}, ["LineId", "OrderDate", "Extra"], r"source column\(s\) 'Extra' are not in the target"),
    ({}, ["LineId", "Sku"], r"target column\(s\) 'OrderDate' are NOT NULL but the source does not provide them"),
])
def test_what_cannot_be_switched_is_refused_naming_table_and_object(conn, overrides, names, message):
    with pytest.raises(SchemaMismatchError, match=r"table sales\.Order Lines\]: .*" + message):
        switch.check_switchable(layout(**overrides), TARGET, names or [r[0] for r in COLUMN_ROWS])


class CatalogAnswers(MssqlConnector):
    """The connector with the catalog queries answered by the test (no server, no driver)."""

    answers: dict[str, list[tuple]] = {}

    def fetch_on(self, conn, sql, params=()):
        return self.answers[sql]


def test_write_path_asks_the_catalog_when_auto_and_builds_the_switch_script():
    uat = CatalogAnswers("uat", ConnectionSpec(kind="mssql", role="target", options={
        "server": "uat", "database": "Sales", "user": "u", "password": "p"}))
    answers = dict(zip(switch.CATALOG_QUERIES, [COLUMN_ROWS, INDEX_ROWS, INDEX_COLUMN_ROWS, PARTITION_ROWS,
                                                CHECK_ROWS, FOREIGN_KEY_ROWS, [], [("PS",)]], strict=True))
    uat.answers = answers
    assert uat.structure_keeping_replace(None, WriteOp("replace", TARGET, load_method="auto"), NAMES) is not None
    assert uat.structure_keeping_replace(None, WriteOp("replace", TARGET, load_method="switch"), NAMES) is not None
    assert uat.structure_keeping_replace(None, WriteOp("replace", TARGET, load_method="rename"), NAMES) is None
    uat.answers = {**answers, switch.CATALOG_QUERIES[-1]: [("FG",)]}
    assert uat.structure_keeping_replace(None, WriteOp("replace", TARGET, load_method="auto"), NAMES) is None
    keeper = uat.structure_keeping_replace(None, WriteOp("replace", TARGET, load_method="switch"), NAMES)
    schema = pa.schema([pa.field(r[0], pa.int64()) for r in COLUMN_ROWS])
    statements = keeper(STAGING, schema, {})
    assert statements[0].startswith("CREATE TABLE [sales].[Order Lines]]__sync_switch]")
    assert "TRUNCATE TABLE [sales].[Order Lines]]]" in statements
    uat.answers = {**answers, switch.CATALOG_QUERIES[6]: [("FK_Child_Order", "sales", "Child")]}
    with pytest.raises(SchemaMismatchError, match="foreign keys reference it"):  # refused before any row loads
        uat.structure_keeping_replace(None, WriteOp("replace", TARGET, load_method="switch"), NAMES)


def test_other_engines_refuse_a_switch_write_naming_the_table(tmp_path):
    from sync_assets.connectors.duckdb import DuckDBConnector

    warehouse = DuckDBConnector("wh", ConnectionSpec(kind="duckdb", options={"path": str(tmp_path / "wh.duckdb")}))
    assert warehouse.structure_keeping_replace(None, WriteOp("replace", TARGET), NAMES) is None
    with pytest.raises(ConfigError, match=r"table sales\.Order Lines\]: load_method 'switch' needs a SQL Server"):
        warehouse.structure_keeping_replace(None, WriteOp("replace", TARGET, load_method="switch"), NAMES)


def test_switch_is_refused_at_load_time_for_a_target_that_is_not_sql_server(tmp_path):
    from sync_assets.config.loader import load_project

    (tmp_path / "sync.yaml").write_text(
        "connections:\n  src: {kind: duckdb, options: {path: src.duckdb}}\n"
        "  wh: {kind: duckdb, options: {path: wh.duckdb}}\n"
        "source: src\ntarget: wh\nstreams:\n  main.orders:\n    load_method: switch\n")
    with pytest.raises(ConfigError, match=r"sync.yaml: stream 'main.orders': key 'load_method': 'switch' .* duckdb"):
        load_project(tmp_path)
