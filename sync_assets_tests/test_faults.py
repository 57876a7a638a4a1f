"""Fault injection: a load that dies halfway leaves the target exactly as it was.

The source stream is wrapped so it raises after some batches (or COPY chunks, on the
PostgreSQL pass-through path) have already been written to staging. The target's rows and its
watermark must be unchanged, no staging table may be left behind, and the next run must
complete with no duplicates and no gaps.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pyarrow as pa
import pytest

from sync_assets.connectors.requests import SourceStream
from sync_assets.errors import SourceReadError
from sync_assets.sync.engine import sync_table
from sync_assets_tests.conftest import connectors
from sync_assets_tests.engines import BASE_TIME, TABLE, make_row
from sync_assets_tests.test_modes import pair  # noqa: F401  (fixture)


class InjectedFault(RuntimeError):
    pass


def _failing(iterable, after: int):
    """Yield ``after`` items (or all, if fewer), then fail as a dropped connection would."""
    for count, item in enumerate(iterable, start=1):
        yield item
        if count >= after:
            break
    raise InjectedFault("connection lost mid-load (injected)")


class FailingSource:
    """A real source connector whose streams die after a few batches."""

    def __init__(self, inner, after: int = 2):
        self._inner, self._after = inner, after

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def open_stream(self, request, schema) -> SourceStream:
        real = self._inner.open_stream(request, schema)

        def open_batches():
            reader = real.open_batches()
            return pa.RecordBatchReader.from_batches(reader.schema, _failing(reader, self._after))

        open_native = (lambda: _failing(real.open_native(), self._after)) if real.open_native else None
        return SourceStream(schema=real.schema, open_batches=open_batches, native_format=real.native_format,
                            open_native=open_native)


@pytest.mark.parametrize("mode", ["incremental", "full_refresh"])
def test_failure_mid_load_leaves_target_and_watermark_unchanged(pair, write_project, mode):  # noqa: F811
    source, target = pair
    source.create_test_table([make_row(i) for i in range(1, 1001)])
    project = write_project({
        "connections": {"src": source.connection_spec("source"), "tgt": target.connection_spec("target")},
        "source": "src", "target": "tgt",
        "defaults": {"object": f'"{target.schema}"."{{stream_table}}"'},
        "streams": {f'"{source.schema}"."{TABLE}"': {"mode": mode, "primary_key": "Id", "update_key": "updatedAt",
                                                     "batch_size": 100}},
    })
    table = project.tables[0]
    real_source, real_target = connectors(project, table)
    sync_table(table, real_source, real_target)
    before_rows = target.rows()
    before_watermark = real_target.max_value(table.target_table, "updatedAt")

    later = BASE_TIME + timedelta(days=2)
    source.execute(f'UPDATE {source.qualified()} SET "Name" = %s, "updatedAt" = %s WHERE MOD("Id", 20) = 0',
                   ["changed", later])
    source.insert([make_row(i, updated=later) for i in range(1001, 1201)])

    with pytest.raises(Exception, match="connection lost mid-load"):  # drivers may wrap it
        sync_table(table, FailingSource(real_source), real_target)
    assert target.rows() == before_rows
    assert real_target.max_value(table.target_table, "updatedAt") == before_watermark
    assert target.staging_tables() == []

    result = sync_table(table, real_source, real_target)
    assert target.rows() == source.rows()
    ids = [row[0] for row in target.rows()]
    assert len(ids) == len(set(ids)) == 1200
    assert result.watermark_after > before_watermark


def test_long_loads_report_progress(caplog):
    from sync_assets.connectors.requests import Progress

    progress = Progress("rows", every_s=0)
    with caplog.at_level("INFO", logger="sync_assets"):
        progress.advance(1_500)
        progress.advance(500)
    assert "2,000 rows so far" in caplog.text


def test_source_server_error_mid_copy_leaves_postgres_target_unchanged(pg, schema_name, write_project, pg_conninfo):
    """A real server-side failure half-way through the PostgreSQL-to-PostgreSQL COPY pass-through
    (several ~1 MB chunks already sent to staging) fails the run with the server's own message;
    the target and the next run are unaffected."""
    src, tgt = schema_name("src"), schema_name("tgt")
    pg.execute(f"""
        CREATE TABLE "{src}".events AS SELECT g AS id, repeat('x', 100) AS payload FROM generate_series(1, 60000) g;
        CREATE TABLE "{src}".corrupt (id int);
        CREATE FUNCTION "{src}".checked(id int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN IF EXISTS (SELECT FROM "{src}".corrupt c WHERE c.id = checked.id) THEN
            RAISE EXCEPTION 'row % is corrupt', id; END IF; RETURN id; END $$;
        CREATE VIEW "{src}".checked_events AS SELECT "{src}".checked(id) AS id, payload FROM "{src}".events;
    """)
    params = psycopg.conninfo.conninfo_to_dict(pg_conninfo)
    connection = {"kind": "postgres", "options": {"host": params["host"], "port": int(params.get("port", 5432)),
                                                  "database": params["dbname"], "user": params.get("user", "postgres")}}
    project = write_project({
        "connections": {"pg": connection}, "source": "pg", "target": "pg",
        "defaults": {"object": f"{tgt}.{{stream_table}}", "mode": "full_refresh"},
        "streams": {f"{src}.checked_events": {}},
    })
    table = project.tables[0]
    source, target = connectors(project, table)
    assert sync_table(table, source, target).native_path
    before = pg.execute(f"SELECT count(*), sum(id) FROM {tgt}.checked_events").fetchone()

    pg.execute(f'UPDATE "{src}".events SET payload = \'changed\'')
    pg.execute(f'INSERT INTO "{src}".corrupt VALUES (50000)')
    with pytest.raises(SourceReadError, match=f"stream '{src}.checked_events' failed: row 50000 is corrupt") as raised:
        sync_table(table, source, target)
    assert isinstance(raised.value.__cause__, psycopg.Error)
    pg.execute(f'DELETE FROM "{src}".corrupt')
    assert pg.execute(f"SELECT count(*), sum(id) FROM {tgt}.checked_events").fetchone() == before
    assert pg.execute(f"SELECT count(*) FROM {tgt}.checked_events WHERE payload = 'changed'").fetchone()[0] == 0
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s AND starts_with(tablename, %s)",
                      (tgt, "checked_events__sync_staging")).fetchone()[0] == 0

    sync_table(table, source, target)
    assert pg.execute(f"SELECT count(*) FROM {tgt}.checked_events WHERE payload = 'changed'").fetchone()[0] == 60000
