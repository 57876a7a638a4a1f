"""The mode contract against a real SQL Server: full_refresh (rename, and switch into a partitioned
target), incremental (identity, datetime2 with look-back, rowversion), smart and date_partitioned,
SQL Server to SQL Server; keyset chunks; and the catalog's databases and schemas.

Skipped unless ``MSSQL_TEST_DSN`` is set; CI does not run it (no SQL Server exists on the CI
machines). ``MSSQL_TEST_DSN`` holds connection options as ``key=value`` pairs separated by ``;``:

    MSSQL_TEST_DSN='server=localhost;port=1433;database=sync_test;user=sa;password=...;encrypt=no'
    pytest -m mssql_live sync_assets_tests/test_mssql_live.py

Each test works in its own uniquely named schemas and drops them afterwards.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime

import pytest

from sync_assets.connectors import connector_for
from sync_assets.sync.engine import sync_table
from sync_assets.sync.planning import RunOptions
from sync_assets.sync.policies import sync_with_policies

pytestmark = [
    pytest.mark.mssql_live,
    pytest.mark.skipif(
        not os.environ.get("MSSQL_TEST_DSN"),
        reason="needs a real SQL Server: set MSSQL_TEST_DSN (see docs/sqlserver.md); CI does not run it",
    ),
]


def _options() -> dict:
    pairs = [p.split("=", 1) for p in os.environ["MSSQL_TEST_DSN"].split(";") if p.strip()]
    options = {k.strip(): v for k, v in pairs}
    os.environ["SYNC_ASSETS_MSSQL_LIVE_PASSWORD"] = options.pop("password", "")
    options["password"] = {"env": "SYNC_ASSETS_MSSQL_LIVE_PASSWORD"}
    if "port" in options:
        options["port"] = int(options["port"])
    return options


@pytest.fixture
def live(write_project):
    suffix = uuid.uuid4().hex[:8]
    src, dst = f"live_src_{suffix}", f"live_dst_{suffix}"
    options = _options()

    def project(streams: dict):
        return write_project({
            "connections": {"prod": {"kind": "mssql", "role": "source", "options": options},
                            "uat": {"kind": "mssql", "role": "target", "options": options}},
            "source": "prod", "target": "uat",
            "defaults": {"object": dst + ".{stream_table}"},
            "streams": {f"{src}.{name}": opts for name, opts in streams.items()},
        })

    setup = project({})
    admin = connector_for("uat", setup.connections["uat"])
    with admin.session() as conn:
        for schema in (src, dst):
            admin.execute(conn, f"CREATE SCHEMA {admin.quote(schema)}")
        admin.execute(conn, f"""CREATE TABLE {admin.quote(src)}.[Order Lines]] x] (
            [Id] int IDENTITY(1,1) PRIMARY KEY, [Changed] datetime2(7) NOT NULL, [Legacy] datetime NULL,
            [Amount] money NULL, [Guid] uniqueidentifier NULL, [At] datetimeoffset(7) NULL, [T] time(7) NULL,
            [Note] nvarchar(max) NULL, [Doc] xml NULL, [Rv] rowversion)""")
        admin.execute(conn, f"""INSERT INTO {admin.quote(src)}.[Order Lines]] x]
            ([Changed], [Legacy], [Amount], [Guid], [At], [T], [Note], [Doc])
            SELECT DATEADD(DAY, n, CAST('2024-01-01T00:00:00.1234567' AS datetime2(7))),
                   DATEADD(DAY, n, CAST('2024-01-01T00:00:00.997' AS datetime)), n * 1.2345, NEWID(),
                   CAST('2024-01-01T10:00:00.1234567+02:00' AS datetimeoffset(7)), CAST('01:02:03.1234567' AS time(7)),
                   REPLICATE(N'ü', n), N'<a n="' + CAST(n AS nvarchar(10)) + N'"/>'
            FROM (SELECT TOP (100) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS n FROM sys.all_objects) AS g""")
        admin.commit(conn)
    yield project, admin, src, dst
    with admin.session() as conn:
        for schema in (dst, src):
            for (name,) in admin.fetch_on(
                conn, "SELECT name FROM sys.tables WHERE schema_id = SCHEMA_ID(?)", (schema,)
            ):
                admin.execute(conn, f"DROP TABLE {admin.quote(schema)}.{admin.quote(name)}")
            admin.execute(conn, f"DROP SCHEMA {admin.quote(schema)}")
        admin.commit(conn)


def _run(project, options: RunOptions | None = None):
    table = project.tables[0]
    source = connector_for(table.source, project.connections[table.source])
    target = connector_for(table.target, project.connections[table.target])
    return sync_table(table, source, target, options or RunOptions()), source, target


def _compare(
    admin,
    src,
    dst,
    columns="[Id], [Changed], [Legacy], [Amount], [Guid], [At], [T], [Note], CONVERT(nvarchar(max), [Doc]), [Rv]",
):
    return admin.scalar(
        f"SELECT COUNT(*) FROM ((SELECT {columns} FROM {admin.quote(src)}.[Order Lines]] x] EXCEPT "
        f"SELECT {columns} FROM {admin.quote(dst)}.[Order Lines]] x]) UNION ALL "
        f"(SELECT {columns} FROM {admin.quote(dst)}.[Order Lines]] x] EXCEPT "
        f"SELECT {columns} FROM {admin.quote(src)}.[Order Lines]] x])) AS d")


def test_discovery_lists_databases_and_schemas_from_the_catalog(live):
    _, admin, src, dst = live
    assert admin.database_name.lower() == admin.opts.database.lower() and admin.database_name in admin.list_databases()
    schemas = {info.name: info.table_count for info in admin.list_schemas()}
    assert schemas[src] == 1 and schemas[dst] == 0 and "dbo" in schemas
    assert not {"sys", "INFORMATION_SCHEMA", "guest", "db_owner", "db_datareader"} & set(schemas)
    assert schemas[src] == len(admin.list_tables(src))


def test_full_refresh_copies_every_type_exactly(live):
    project, admin, src, dst = live
    result, _, target = _run(project({"Order Lines] x": {"mode": "full_refresh", "primary_key": "Id"}}))
    assert result.rows_written == 100
    assert _compare(admin, src, dst) == 0
    native = target.native_column_types(project.tables[0].target_table)
    assert native["Changed"] == "datetime2(7)" and native["Legacy"] == "datetime" and native["Rv"] == "binary(8)"
    again, _, _ = _run(project({"Order Lines] x": {"mode": "full_refresh", "primary_key": "Id"}}))
    assert again.target_rows == 100 and target.primary_key(project.tables[0].target_table) == ("Id",)


@pytest.mark.parametrize("update_key", ["Id", "Changed", "Legacy", "Rv"])
def test_incremental_reads_only_new_rows_and_merges(live, update_key):
    project, admin, src, dst = live
    spec = {"Order Lines] x": {"mode": "incremental", "primary_key": "Id", "update_key": update_key}}
    _run(project(spec))
    with admin.session() as conn:
        admin.execute(
            conn,
            f"UPDATE {admin.quote(src)}.[Order Lines]] x] SET [Note] = N'changed', "
            f"[Changed] = DATEADD(YEAR, 1, [Changed]), [Legacy] = DATEADD(YEAR, 1, [Legacy]) WHERE [Id] = 100",
        )
        admin.execute(conn, f"INSERT INTO {admin.quote(src)}.[Order Lines]] x] ([Changed], [Legacy]) "
                            f"VALUES (SYSDATETIME(), GETDATE())")
        admin.commit(conn)
    result, _, _ = _run(project(spec))
    assert result.rows_read <= 3
    assert _compare(admin, src, dst) == 0


def test_incremental_datetime2_lookback_keeps_100ns(live):
    project, admin, src, dst = live
    spec = {
        "Order Lines] x": {"mode": "incremental", "primary_key": "Id", "update_key": "Changed", "lookback": "2 days"}
    }
    _run(project(spec))
    result, _, _ = _run(project(spec))
    assert result.plan.watermark_before.isoformat().endswith(".1234567")
    assert result.rows_read == 3 and _compare(admin, src, dst) == 0


def test_smart_loads_full_then_incremental(live):
    project, admin, src, dst = live
    spec = {"Order Lines] x": {"mode": "smart", "primary_key": "Id", "update_key": "Id"}}
    first, _, _ = _run(project(spec))
    second, _, _ = _run(project(spec))
    assert first.plan.strategy == "full_refresh" and second.plan.strategy == "incremental"
    assert second.rows_read == 1 and _compare(admin, src, dst) == 0


def test_date_partition_overwrites_exactly_its_window(live):
    project, *_ = live
    spec = {"Order Lines] x": {"mode": "date_partitioned", "primary_key": "Id",
                               "partition": {"column": "Changed", "granularity": "monthly", "start": "2024-01-01"}}}
    window = (datetime(2024, 2, 1), datetime(2024, 3, 1))
    result, _, _ = _run(project(spec), options=RunOptions(partition_window=window))
    assert result.rows_written == 29
    again, _, _ = _run(project(spec), options=RunOptions(partition_window=window))
    assert again.rows_deleted == 29 and again.target_rows == 29


def test_full_refresh_of_a_partitioned_target_switches_and_keeps_its_structure(live):
    """load_method auto on a partitioned target: staging + partition switch, indexes, partition
    scheme, compression and constraints of the UAT table survive the refresh."""
    project, admin, src, dst = live
    spec = {"Order Lines] x": {"mode": "full_refresh", "primary_key": "Id"}}
    _run(project(spec))  # creates the target (rename path)
    suffix = src.rsplit("_", 1)[1]
    function, scheme = f"pf_live_{suffix}", f"ps_live_{suffix}"
    target = f"{admin.quote(dst)}.[Order Lines]] x]"
    with admin.session() as conn:
        for sql in (f"CREATE PARTITION FUNCTION [{function}] (int) AS RANGE RIGHT FOR VALUES (34, 67)",
                    f"CREATE PARTITION SCHEME [{scheme}] AS PARTITION [{function}] ALL TO ([PRIMARY])"):
            admin.execute(conn, sql)
        admin.commit(conn)
    try:
        with admin.session() as conn:
            (pk,) = admin.fetch_on(conn, "SELECT name FROM sys.key_constraints WHERE parent_object_id = OBJECT_ID(?)",
                                   (target,))[0]
            for sql in (f"ALTER TABLE {target} DROP CONSTRAINT {admin.quote(pk)}",
                        f"ALTER TABLE {target} ADD CONSTRAINT [PK_live_{suffix}] PRIMARY KEY CLUSTERED ([Id]) "
                        f"WITH (DATA_COMPRESSION = PAGE) ON [{scheme}]([Id])",
                        f"CREATE NONCLUSTERED INDEX [IX_Changed] ON {target} ([Changed] DESC) INCLUDE ([Amount]) "
                        f"ON [{scheme}]([Id])",
                        f"ALTER TABLE {target} ADD CONSTRAINT [CK_live_{suffix}] CHECK ([Amount] >= 0)"):
                admin.execute(conn, sql)
            admin.execute(conn, f"UPDATE {admin.quote(src)}.[Order Lines]] x] SET [Note] = N'after' WHERE [Id] = 50")
            admin.commit(conn)
        result, _, _ = _run(project(spec))
        assert result.rows_written == 100 and _compare(admin, src, dst) == 0
        structure = admin.fetch(
            "SELECT i.name, COUNT(*), MAX(p.data_compression_desc) FROM sys.indexes AS i JOIN sys.partitions AS p "
            "ON p.object_id = i.object_id AND p.index_id = i.index_id WHERE i.object_id = OBJECT_ID(?) "
            "GROUP BY i.name ORDER BY i.name", (target,))
        assert structure == [("IX_Changed", 3, "NONE"), (f"PK_live_{suffix}", 3, "PAGE")]
        assert admin.scalar("SELECT COUNT(*) FROM sys.check_constraints WHERE parent_object_id = OBJECT_ID(?)",
                            (target,)) == 1
        assert admin.scalar("SELECT COUNT(*) FROM sys.tables WHERE name LIKE '%__sync_switch'") == 0
    finally:
        with admin.session() as conn:
            admin.execute(conn, f"DROP TABLE IF EXISTS {target}")
            admin.execute(conn, f"DROP PARTITION SCHEME [{scheme}]")
            admin.execute(conn, f"DROP PARTITION FUNCTION [{function}]")
            admin.commit(conn)


def test_chunked_copy_pages_by_keyset_with_the_key_as_tiebreak(live):
    """chunk rows: OFFSET ... FETCH finds each page's end, datetime2(7) boundaries are rounded
    outwards, and the copy ends with every row exactly once."""
    project, admin, src, dst = live
    with admin.session() as conn:  # many rows share one update-key value
        admin.execute(conn, f"UPDATE {admin.quote(src)}.[Order Lines]] x] SET [Changed] = DATEADD(DAY, [Id] / 10, "
                            "CAST('2024-01-01T00:00:00.1234567' AS datetime2(7)))")
        admin.commit(conn)
    spec = {
        "Order Lines] x": {"mode": "incremental", "primary_key": "Id", "update_key": "Changed", "chunk": {"rows": 30}}
    }
    configured = project(spec)
    table = configured.tables[0]
    source = connector_for(table.source, configured.connections[table.source])
    target = connector_for(table.target, configured.connections[table.target])
    counts = [sync_with_policies(table, source, target).result.target_rows for _ in range(4)]
    assert counts[:3] == [30, 60, 90] and counts[3] == 100
    assert _compare(admin, src, dst) == 0
