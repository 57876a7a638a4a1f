"""T-SQL the SQL Server connector generates: exact text of fixed templates, and every generated
statement parsed with sqlglot's tsql dialect and checked against the schema the code believes in.

No SQL Server runs here (see docs/sqlserver.md); the live suite runs these paths for real.
Catalog answers (identity columns, declared types) come from a subclass with fixed answers, so no
database driver is involved or imitated.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from sync_assets.config.connection_options import MssqlOptions
from sync_assets.config.models import ConnectionSpec
from sync_assets.config.names import TableName
from sync_assets.connectors.mssql.connector import MssqlConnector
from sync_assets.connectors.mssql.odbc import connection_string
from sync_assets.connectors.mssql.types import MssqlColumn, PreciseDatetime, arrow_field, nstring
from sync_assets.connectors.requests import Filter, ReadRequest

ODD = TableName("sales]x", "Order Lines]")
STAGING = TableName("sales]x", "Order Lines]__sync_staging")
COLUMNS = [MssqlColumn("Id", "int", 4, 10, 0, False), MssqlColumn("Changed At", "datetime", 8, 23, 3),
           MssqlColumn("Amount", "money", 8, 19, 4), MssqlColumn("Note]", "nvarchar", 80, 0, 0),
           MssqlColumn("Version", "timestamp", 8, 0, 0), MssqlColumn("Loaded", "datetime2", 8, 27, 7)]
SCHEMA = pa.schema([arrow_field(c) for c in COLUMNS])


class FixedCatalog(MssqlConnector):
    """The connector with catalog answers given by the test instead of a server."""

    identity: frozenset[str] = frozenset()

    def identity_columns(self, table):
        return set(self.identity)

    def native_column_types(self, table):
        return {c.name: c.ddl for c in COLUMNS}


@pytest.fixture
def conn() -> FixedCatalog:
    return FixedCatalog("uat", ConnectionSpec(kind="mssql", role="target", options={
        "server": "uat", "database": "Sales", "user": "u", "password": "p"}))


def parse(sql: str) -> exp.Expression:
    tree = sqlglot.parse_one(sql, read="tsql")
    assert tree is not None
    return tree


def identifiers(tree: exp.Expression) -> set[str]:
    return {i.name for i in tree.find_all(exp.Identifier)}


def test_identifiers_are_bracket_quoted_with_closing_brackets_doubled(conn):
    assert conn.quote("Order Lines]") == "[Order Lines]]]"
    assert conn.qualified(ODD) == "[sales]]x].[Order Lines]]]"
    assert identifiers(parse(f"SELECT 1 FROM {conn.qualified(ODD)}")) >= {"sales]x", "Order Lines]"}


def test_swap_templates_exact_text(conn):
    assert conn.rename_table_sql(STAGING, "Order Lines]") == [
        "EXEC sp_rename N'[sales]]x].[Order Lines]]__sync_staging]', N'Order Lines]', N'OBJECT'"]
    assert nstring("O'Brien") == "N'O''Brien'"
    conn._declared_types[STAGING] = {"Id": "int", "Note]": "nvarchar(max)"}
    assert conn.add_primary_key_sql(STAGING, ["Id", "Note]"], "Order Lines]") == [
        "ALTER TABLE [sales]]x].[Order Lines]]__sync_staging] ALTER COLUMN [Id] int NOT NULL",
        "ALTER TABLE [sales]]x].[Order Lines]]__sync_staging] ALTER COLUMN [Note]]] nvarchar(450) NOT NULL",
        ("ALTER TABLE [sales]]x].[Order Lines]]__sync_staging] ADD CONSTRAINT [PK_Order Lines]]__sync_new] "
         "PRIMARY KEY ([Id], [Note]]])"),
    ]
    assert conn.after_swap_sql(ODD, ["Id"]) == [
        ("EXEC sp_rename N'[sales]]x].[PK_Order Lines]]__sync_new]', N'PK_Order Lines]', N'OBJECT'")]
    assert conn.create_schema_sql("sales]x") == "CREATE SCHEMA [sales]]x]"
    assert conn.drop_table_sql(STAGING) == "DROP TABLE IF EXISTS [sales]]x].[Order Lines]]__sync_staging]"


def test_identity_insert_template_exact_text(conn):
    assert conn.identity_insert_sql(ODD, True) == "SET IDENTITY_INSERT [sales]]x].[Order Lines]]] ON"
    assert conn.identity_insert_sql(ODD, False) == "SET IDENTITY_INSERT [sales]]x].[Order Lines]]] OFF"


def test_merge_matches_on_the_key_and_inserts_every_column(conn):
    columns = SCHEMA.names
    casts = {"Changed At": "datetime"}
    (merge,) = conn.merge_sql(ODD, STAGING, columns, ["Id"], casts)
    tree = parse(merge)
    assert isinstance(tree, exp.Merge)
    assert tree.this.this.name == "Order Lines]" and tree.this.args["db"].name == "sales]x"
    source = tree.args["using"].find(exp.Select)
    assert [s.alias_or_name for s in source.expressions] == columns
    assert source.find(exp.Table).name == "Order Lines]__sync_staging"
    assert "CAST(CAST([Changed At] AS datetime2(7)) AS datetime) AS [Changed At]" in merge
    on = tree.args["on"]
    assert {c.name for c in on.find_all(exp.Column)} == {"Id"}
    whens = tree.args["whens"].expressions
    update = next(w for w in whens if w.args.get("matched")).args["then"]
    assert sorted(e.this.name for e in update.expressions) == sorted(c for c in columns if c != "Id")
    insert = next(w for w in whens if not w.args.get("matched")).args["then"]
    assert [c.name for c in insert.this.expressions] == columns
    assert [c.name for c in insert.expression.expressions] == columns
    assert merge.endswith(";") and "WITH (HOLDLOCK)" in merge


def test_merge_and_insert_wrap_identity_columns_in_identity_insert(conn):
    conn.identity = {"Id"}
    statements = conn.merge_sql(ODD, STAGING, SCHEMA.names, ["Id"], {})
    assert statements[0] == "SET IDENTITY_INSERT [sales]]x].[Order Lines]]] ON"
    assert statements[-1] == "SET IDENTITY_INSERT [sales]]x].[Order Lines]]] OFF"
    batch = conn.insert_select_sql(ODD, STAGING, SCHEMA.names, {})
    on, insert_sql, off = batch.split("; ")
    assert (on, off) == (statements[0], statements[-1])  # sqlglot reads SET IDENTITY_INSERT as a bare command
    insert = parse(insert_sql)
    assert isinstance(insert, exp.Insert)
    assert [c.name for c in insert.this.expressions] == SCHEMA.names
    conn.identity = {"Other"}
    assert conn.merge_sql(ODD, STAGING, SCHEMA.names, ["Id"], {})[0].startswith("MERGE")


def test_merge_of_a_key_only_table_has_no_update_clause(conn):
    (merge,) = conn.merge_sql(ODD, STAGING, ["Id"], ["Id"], {})
    assert "WHEN MATCHED" not in merge and isinstance(parse(merge), exp.Merge)


def test_select_uses_top_and_binds_watermarks_in_the_column_type(conn):
    request = ReadRequest(table=ODD, columns=tuple(SCHEMA.names), order_by=("Id",), limit=10).with_filters(
        Filter("Changed At", ">=", datetime(2024, 3, 1, 12, 0, 0, 123456)),
        Filter("Loaded", ">", PreciseDatetime.from_parts(datetime(2024, 3, 1, 12, 0, 0, 123456), 7)),
        Filter("Version", ">", b"\x00\x00\x00\x00\x00\x00\x07\xd1"),
    )
    sql, params = conn.render_select(request, SCHEMA)
    assert sql.startswith("SELECT TOP (10) [Id], [Changed At]")
    assert ("WHERE [Changed At] >= CAST(? AS datetime) AND [Loaded] > CAST(? AS datetime2(7)) "
            "AND [Version] > CONVERT(binary(8), ?, 1) ORDER BY [Id]") in sql
    assert params == ["2024-03-01T12:00:00.123", "2024-03-01T12:00:00.1234567", "0x00000000000007D1"]
    tree = parse(sql)
    assert tree.args["limit"].expression == exp.Literal.number(10)  # TOP (10) as T-SQL parses it
    assert {c.name for c in tree.find_all(exp.Column)} >= set(SCHEMA.names)
    count_sql, _ = conn.render_select(request, SCHEMA, count_only=True)
    assert count_sql.startswith("SELECT COUNT_BIG(*) FROM (SELECT TOP (10) 1 AS one FROM [sales]]x].[Order Lines]]]")
    parse(count_sql)


def test_hard_types_are_converted_in_the_select(conn):
    odd = [MssqlColumn("At", "datetimeoffset", 10, 34, 7), MssqlColumn("T", "time", 5, 16, 7),
           MssqlColumn("G", "uniqueidentifier", 16, 0, 0), MssqlColumn("Shape", "geography", -1, 0, 0),
           MssqlColumn("Doc", "xml", -1, 0, 0), MssqlColumn("V", "sql_variant", 8016, 0, 0)]
    schema = pa.schema([arrow_field(c) for c in odd])
    sql, _ = conn.render_select(ReadRequest(table=ODD), schema)
    assert sql == (
        "SELECT CAST(SWITCHOFFSET([At], '+00:00') AS datetime2(7)) AS [At], "
        "DATEDIFF_BIG(NANOSECOND, CAST('00:00:00' AS time(7)), [T]) AS [T], "
        "CONVERT(binary(16), REPLACE(CONVERT(char(36), [G]), '-', ''), 2) AS [G], "
        "CAST([Shape] AS varbinary(max)) AS [Shape], CONVERT(nvarchar(max), [Doc]) AS [Doc], "
        "CONVERT(nvarchar(max), [V]) AS [V] FROM [sales]]x].[Order Lines]]]"
    )
    assert [s.alias_or_name for s in parse(sql).expressions] == schema.names


def test_every_write_statement_parses_and_names_known_columns(conn):
    staging_types = [conn.load_type(f) for f in SCHEMA]
    create = conn.create_table_sql(STAGING, SCHEMA, staging_types)
    tree = parse(create)
    assert [c.name for c in tree.find_all(exp.ColumnDef)] == SCHEMA.names
    assert staging_types == ["int", "varchar(40)", "money", "nvarchar(40)", "binary(8)", "varchar(40)"]
    casts = {"Changed At": "datetime", "Loaded": "datetime2(7)"}
    insert = parse(conn.insert_select_sql(ODD, STAGING, SCHEMA.names, casts))
    assert [c.name for c in insert.this.expressions] == SCHEMA.names
    delete = parse(
        f"DELETE FROM {conn.qualified(ODD)} "
        f"WHERE [Changed At] >= {conn.typed_placeholder(1, SCHEMA.field('Changed At'))}"
    )
    assert delete.find(exp.Cast).to.sql("tsql").upper() == "DATETIME"
    dupes = (
        f"SELECT [Id], COUNT(*) FROM {conn.qualified(STAGING)} GROUP BY [Id] HAVING COUNT(*) > 1{conn.limit_clause(5)}"
    )
    assert parse(dupes).args["limit"] is not None or parse(dupes).args.get("offset") is not None


def test_partition_window_bounds_bind_as_iso_text(conn):
    assert conn.bind_value(datetime(2024, 3, 1)) == "2024-03-01T00:00:00"
    assert conn.bind_value(date(2024, 3, 1)) == "2024-03-01"
    assert conn.bind_value(True) == "1"


def test_connection_string_choices():
    opts = MssqlOptions(server="prod;x", port=14330, database="Sales", user="reader", password="p}w;d",
                        trust_server_certificate=True)
    text = connection_string(opts, "ODBC Driver 18 for SQL Server", read_only=True)
    assert text == ("Driver=ODBC Driver 18 for SQL Server;Server={tcp:prod;x,14330};Encrypt=yes;"
                    "TrustServerCertificate=yes;ApplicationIntent=ReadOnly;Database=Sales;APP=sync_assets;"
                    "UID=reader;PWD={p}}w;d}")
    windows = MssqlOptions(server="prod", database="Sales", auth="windows")
    assert "Trusted_Connection=yes" in connection_string(windows, "ODBC Driver 18 for SQL Server", False)
    assert "ApplicationIntent" not in connection_string(windows, "ODBC Driver 18 for SQL Server", False)
    tds = connection_string(opts, "FreeTDS", read_only=True)
    assert "Port=14330" in tds and "TDS_Version=7.4" in tds and "Encryption=require" in tds
    with pytest.raises(ValueError, match="needs user and password"):
        MssqlOptions(server="prod", database="Sales")


def test_source_role_reads_with_readonly_intent():
    source = MssqlConnector("prod", ConnectionSpec(kind="mssql", role="source", options={
        "server": "prod", "database": "Sales", "user": "u", "password": "p", "driver": "FreeTDS"}))
    target = MssqlConnector("uat", ConnectionSpec(kind="mssql", role="target", options={
        "server": "uat", "database": "Sales", "user": "u", "password": "p", "driver": "ODBC Driver 18 for SQL Server"}))
    assert source.read_only and not target.read_only
    assert "ApplicationIntent" not in target.connection_string()


def test_example_configs_load(monkeypatch):
    from pathlib import Path

    from sync_assets.config.loader import load_files

    for variable in ("ERP01_SALES_PASSWORD", "WAREHOUSE_PASSWORD", "TARGET_DB_PASSWORD"):
        monkeypatch.setenv(variable, "x")
    examples = Path(__file__).parents[1] / "config" / "examples"
    project = load_files([examples / "mssql_to_postgres.yaml", examples / "prod_to_uat_mssql.yaml"], examples)
    by_name = {t.name: t for t in project.tables}
    assert str(by_name["dbo.Orders"].target_table) in ("erp01_sales.Orders", "dbo.Orders")
    assert by_name["dbo.DailyReports"].lookback.days == 7
    assert project.connections["prod"].options["auth"] == "windows" and not project.connections["prod"].writable


@pytest.mark.parametrize("name", ["_COLUMNS_SQL", "_DESCRIBE_SQL", "_TABLES_SQL", "_PRIMARY_KEY_SQL",
                                  "_FOREIGN_KEYS_SQL", "_IDENTITY_SQL", "_DATABASES_SQL", "_SCHEMAS_SQL"])
def test_catalog_queries_parse_and_use_catalog_views_not_count(name):
    """Only catalog views are read, so a COUNT can only count catalog rows (objects of a schema),
    never the rows of a table; COUNT(*) is refused outright."""
    from sync_assets.connectors.mssql import connector as mssql

    sql = getattr(mssql, name)
    tree = parse(sql)
    tables = {f"{t.db}.{t.name}" if t.db else t.name for t in tree.find_all(exp.Table)}
    assert tables and all(t.startswith("sys.") or t == "dm_exec_describe_first_result_set" for t in tables)
    assert not any(isinstance(count.this, exp.Star) for count in tree.find_all(exp.Count))
    assert sql.count("?") == {"_DESCRIBE_SQL": 1, "_COLUMNS_SQL": 1, "_PRIMARY_KEY_SQL": 1, "_IDENTITY_SQL": 1}.get(
        name, 0
    )


def test_table_listing_takes_counts_and_sizes_from_partitions():
    from sync_assets.connectors.mssql import connector as mssql

    assert "sys.partitions" in mssql._TABLES_SQL and "sys.allocation_units" in mssql._TABLES_SQL


def test_database_listing_keeps_online_databases_the_login_can_open():
    from sync_assets.connectors.mssql import connector as mssql

    where = parse(mssql._DATABASES_SQL).find(exp.Where).sql(dialect="tsql")
    assert "HAS_DBACCESS(name) = 1" in where and "state = 0" in where


def test_schema_listing_counts_tables_and_views_and_leaves_out_built_in_schemas():
    from sync_assets.connectors.mssql import connector as mssql

    tree = parse(mssql._SCHEMAS_SQL)
    join = tree.find(exp.Join)
    assert join.side == "LEFT" and join.this.name == "objects"
    assert "o.type IN ('U', 'V')" in join.sql(dialect="tsql")
    assert [c.sql(dialect="tsql") for c in tree.find_all(exp.Count)] == ["COUNT(o.object_id)"]
    where = tree.find(exp.Where)
    built_in = where.find(exp.In)
    assert isinstance(built_in.parent, exp.Not) and built_in.this.sql() == "s.name"
    assert {value.name for value in built_in.expressions} == {"sys", "INFORMATION_SCHEMA", "guest"}
    fixed_roles = where.find(exp.Exists)
    assert isinstance(fixed_roles.parent, exp.Not)
    assert fixed_roles.find(exp.Table).name == "database_principals" and "is_fixed_role = 1" in fixed_roles.sql()


def test_new_column_uses_t_sql_add_without_column_keyword(conn):
    sql = conn.add_column_sql(ODD, "Extra]Col", "datetime2(7)")
    assert sql == "ALTER TABLE [sales]]x].[Order Lines]]] ADD [Extra]]Col] datetime2(7)"
    assert isinstance(sqlglot.parse_one(sql, read="tsql"), exp.Alter)


def test_keyset_page_end_and_chunk_read_use_seekable_t_sql(conn):
    from sync_assets.connectors.requests import KeysetFilter

    keys = ("Changed At", "Id", "Note]")
    cursor = (datetime(2024, 3, 1, 12, 0, 0, 123000), 7, "b")
    page_end = ReadRequest(table=ODD, columns=keys, filters=(KeysetFilter(keys, ">", cursor),), order_by=keys,
                           offset=9_999, limit=1)
    schema = pa.schema([SCHEMA.field(k) for k in keys])
    sql, params = conn.render_select(page_end, schema)
    assert sql == (
        "SELECT [Changed At], [Id], [Note]]] FROM [sales]]x].[Order Lines]]] WHERE [Changed At] >= CAST(? AS datetime) "
        "AND ([Changed At] > CAST(? AS datetime) OR ([Changed At] = CAST(? AS datetime) AND ([Id] > CAST(? AS int) "
        "OR ([Id] = CAST(? AS int) AND [Note]]] > CAST(? AS nvarchar(40)))))) "
        "ORDER BY [Changed At], [Id], [Note]]] OFFSET 9999 ROWS FETCH NEXT 1 ROWS ONLY")
    assert params == ["2024-03-01T12:00:00.123"] * 3 + ["7", "7", "b"]  # in placeholder order
    tree = parse(sql)
    assert tree.args.get("offset") is not None and {c.name for c in tree.find_all(exp.Column)} == set(keys)
    chunk = ReadRequest(table=ODD, columns=keys).with_filters(KeysetFilter(keys, ">", cursor),
                                                              KeysetFilter(keys, "<=", cursor))
    chunk_sql, chunk_params = conn.render_select(chunk, schema)
    assert "ORDER BY" not in chunk_sql and len(chunk_params) == chunk_sql.count("?") == 12
    assert "[Changed At] <= CAST(? AS datetime) AND ([Changed At] < CAST(? AS datetime) OR" in chunk_sql
    assert chunk_sql.endswith("[Note]]] <= CAST(? AS nvarchar(40))))))")
    parse(chunk_sql)


def test_writer_lock_template_takes_an_exclusive_session_applock_without_waiting_server_side():
    from sync_assets.connectors.mssql.connector import GET_WRITER_LOCK

    assert GET_WRITER_LOCK == (
        "SET NOCOUNT ON; DECLARE @granted int; EXEC @granted = sp_getapplock @Resource = ?, "
        "@LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; SELECT @granted")
    statements = sqlglot.parse(GET_WRITER_LOCK, read="tsql")
    assert [type(s) for s in statements][-1] is exp.Select and len(statements) == 4


def test_leftover_staging_lookup_parses_and_uses_left_on_the_table_name(conn):
    from sync_assets.connectors.locking import staging_prefix

    prefix = staging_prefix(ODD.name, conn.max_identifier_bytes)
    sql = (f"SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
           f"AND (LEFT(table_name, {len(prefix)}) = ? OR table_name = ?)")
    seen: list[tuple] = []
    conn.fetch_on = lambda _conn, text, params=(): seen.append((text, params)) or [
        (prefix + "0badcafe",), (prefix + "0badcafe_typed",), (ODD.name + "__sync_staging",), (prefix + "mine",)]
    assert conn.leftover_staging(None, ODD) == [
        TableName(ODD.schema, n) for n in (prefix + "0badcafe", prefix + "0badcafe_typed", ODD.name + "__sync_staging")
    ]
    assert seen == [(sql, ("sales]x", prefix, "Order Lines]__sync_staging"))]
    assert isinstance(sqlglot.parse_one(sql, read="tsql"), exp.Select)


def test_merge_counts_its_inserts_and_updates_in_the_same_batch(conn):
    from sync_assets.connectors.mssql.connector import merge_counting_batch

    conn.identity = {"Id"}
    batch = merge_counting_batch(conn.merge_sql(ODD, STAGING, SCHEMA.names, ["Id"], {}))
    assert batch.startswith("SET NOCOUNT ON; DECLARE @applied TABLE (action nvarchar(10)); "
                            "SET IDENTITY_INSERT [sales]]x].[Order Lines]]] ON; MERGE INTO ")
    assert batch.endswith(" OUTPUT $action INTO @applied; SET IDENTITY_INSERT [sales]]x].[Order Lines]]] OFF; "
                          "SELECT COUNT(CASE WHEN action = 'INSERT' THEN 1 END), COUNT(CASE WHEN action = 'UPDATE' "
                          "THEN 1 END) FROM @applied")
    merge = next(part for part in batch.split("; ") if part.startswith("MERGE"))
    tree = parse(merge)
    assert isinstance(tree, exp.Merge) and "OUTPUT $action INTO @applied" in tree.sql(dialect="tsql")
    count = parse(batch.split("; ")[-1])
    assert isinstance(count, exp.Select) and count.find(exp.Table).sql(dialect="tsql") == "@applied"


@pytest.mark.parametrize("detect", ["hard", "soft"])
def test_delete_detection_statements_are_tsql(conn, monkeypatch, detect):
    """The delete/mark statements and the run counter, as the write path sends them to SQL Server."""
    from sync_assets.connectors import deletes
    from sync_assets.connectors.interface import DeletePlan, WriteResult

    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(conn, "execute", lambda _c, sql, params=(): sent.append((sql, tuple(params))) or 1)
    monkeypatch.setattr(conn, "fetch_on", lambda _c, sql, params=(): sent.append((sql, tuple(params))) or [(4,)])
    keys = TableName(ODD.schema, "Order Lines]__sync_staging_keys")
    result = WriteResult(rows_written=0)
    deletes.apply(conn, None, ODD, DeletePlan(detect, True), keys, ("Id",), SCHEMA, result)
    trees = [parse(sql) for sql, _ in sent]
    assert result.deletes_checked
    if detect == "hard":
        assert isinstance(trees[0], exp.Delete) and trees[0].find(exp.Exists) is not None
    else:
        added, mark, restore = trees[:3]
        assert isinstance(added, exp.Alter) and "_sync_deleted_at" in identifiers(added)
        assert "DATETIMEOFFSET" in added.sql("tsql").upper()
        assert isinstance(mark, exp.Update) and "SYSDATETIMEOFFSET" in mark.sql("tsql").upper()
        assert isinstance(restore, exp.Update) and restore.find(exp.Null) is not None
    counter = [(tree, params) for tree, (_, params) in zip(trees, sent, strict=True)
               if "_sync_delete_runs" in identifiers(tree)]
    assert [type(tree) for tree, _ in counter] == [exp.Select, exp.Delete, exp.Insert]
    assert counter[-1][1] == ("Order Lines]", 0)  # a check resets the count


def test_hash_delta_statements_are_tsql(conn):
    """The source's row hashes (HASHBYTES over the canonical text), the changed keys, and the
    delete, update (UPDATE ... FROM ... JOIN) and insert of a hash-delta apply, in T-SQL."""
    from sync_assets.config.names import TableName
    from sync_assets.connectors import hash_delta

    hashes = TableName(STAGING.schema, STAGING.name + "_h")
    source_hashes = parse(hash_delta.hashes_sql(conn, conn.qualified(ODD), " WHERE [Id] > 0", ("Id",),
                                                [(f.name, f.type) for f in SCHEMA]))
    assert isinstance(source_hashes, exp.Select) and "HASHBYTES" in source_hashes.sql("tsql").upper()
    for count in (True, False):
        assert isinstance(parse(hash_delta.changed_keys_sql(conn, ODD, hashes, ("Id",), count)), exp.Select)
    casts = {"Changed At": "DATETIME"}
    delete, update, insert = (parse(sql) for sql in hash_delta.statements(
        conn, ODD, STAGING, hashes, SCHEMA.names, ("Id",), casts))
    assert isinstance(delete, exp.Delete) and delete.find(exp.Exists) is not None
    assert isinstance(update, exp.Update) and update.find(exp.Join) is not None
    assert "_sync_row_hash" in identifiers(update)
    assert isinstance(insert, exp.Insert) and [c.name for c in insert.this.expressions] == [
        *SCHEMA.names, "_sync_row_hash"]
    create = [parse(sql) for sql in hash_delta.create_sql(
        conn, ODD, SCHEMA.names, ("Id",), {c.name: c.ddl for c in COLUMNS})]
    assert isinstance(create[0], exp.Create) and "_sync_row_hash" in identifiers(create[0])


def test_dead_letter_statements_are_tsql(conn, monkeypatch):
    """The dead-letter table, the supersession of re-read keys and the insert of a run's dead
    letters, as the write path sends them to SQL Server."""
    from sync_assets.connectors import dead_letters
    from sync_assets.connectors.interface import WriteOp, WriteResult

    (create,) = dead_letters.prepare_sql(_no_table(conn, monkeypatch), ODD)
    assert isinstance(parse(create), exp.Create) and "NVARCHAR(MAX)" in create.upper()
    sent: list[str] = []
    monkeypatch.setattr(conn, "execute", lambda _c, sql, params=(): sent.append(sql) or 1)
    monkeypatch.setattr(conn, "fetch_on", lambda _c, sql, params=(): sent.append(sql) or [("[7]",), ("[8]",)])
    quarantine = dead_letters.Quarantine(WriteOp("merge", ODD, ("Id",), on_bad_rows="quarantine", run_id="r"))
    quarantine.keep([{"Id": 7, "Note]": "x" * 90}], "Note]", "too long")
    quarantine.staging = TableName(ODD.schema, "Order Lines]__sync_staging_dl")
    quarantine.apply(conn, None, STAGING, SCHEMA, WriteResult(rows_written=0))
    trees = [parse(sql) for sql in sent]
    kinds = [type(tree) for tree in trees]
    assert kinds[0] is exp.Select and exp.Delete in kinds and kinds[-1] is exp.Insert
    staged_keys = next(tree for tree in trees[1:] if isinstance(tree, exp.Select))
    assert staged_keys.find(exp.In) is not None  # the staged keys among the outstanding ones: [Id] IN (...)


def _no_table(conn, monkeypatch):
    monkeypatch.setattr(conn, "table_schema", lambda table: None)
    return conn


def test_orphan_and_unique_statements_are_tsql(conn, monkeypatch):
    """The orphan scan (``NOT EXISTS`` in the parent's target), its delete, the ``unique`` rule's
    scan and the dead-letter columns added to an older table, as SQL Server receives them."""
    from sync_assets.config.project import ParentKey
    from sync_assets.connectors import dead_letters, orphans
    from sync_assets.connectors.interface import WriteOp

    parent = TableName("dbo", "Customers")
    monkeypatch.setattr(conn, "table_schema", lambda table: SCHEMA if table == parent else
                        pa.schema([f for f in dead_letters.DEAD_LETTER_SCHEMA if f.name not in ("status", "attempts")]))
    added = dead_letters.prepare_sql(conn, ODD)
    assert [type(parse(sql)) for sql in added] == [exp.Alter, exp.Alter]
    condition = orphans.orphan_condition(conn, STAGING, "Id", parent, "Id")
    sent: list[str] = []
    monkeypatch.setattr(conn, "execute", lambda _c, sql, params=(): sent.append(sql) or 1)
    monkeypatch.setattr(conn, "fetch_on", lambda _c, sql, params=(): sent.append(sql) or [(7,) * len(SCHEMA)])
    op = WriteOp("merge", ODD, ("Id",), parent_keys=(ParentKey("Id", "customers", "Id", parent),),
                 orphans="quarantine", run_id="r", unique_columns=("Note]",))
    moved = orphans.screen(conn, None, op, STAGING, SCHEMA.names, dead_letters.Quarantine(op), {})
    assert moved == 1 and condition in sent[0]
    scan, delete = (parse(sql) for sql in sent)
    assert isinstance(scan, exp.Select) and scan.find(exp.Exists) is not None and isinstance(delete, exp.Delete)
    sent.clear()
    conn._check_unique_values(None, dataclasses.replace(op, unique_columns=()), STAGING)
    assert not sent
    monkeypatch.setattr(conn, "fetch_on", lambda _c, sql, params=(): sent.append(sql) or [])
    conn._check_unique_values(None, op, STAGING)
    assert isinstance(parse(sent[0]), exp.Select) and parse(sent[0]).find(exp.Having) is not None
