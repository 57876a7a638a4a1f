"""Reads that bind a watermark or a partition window stream in bounded batches, on the real PostgreSQL.

An incremental (or ``smart``) read binds a watermark, a ``date_partitioned`` read binds a window and
a background copy binds a keyset position. On PostgreSQL these reads must stream like the unfiltered
COPY does: the first batch arrives while the server is still producing the rest. The source here is
a view that stops at one row until the test releases an advisory lock, so a read that buffered its
whole result could not hand out a first batch before the release. Bound values travel as typed
literals, so they stay data: quotes, backslashes and ``%`` in values or ``where:`` are kept exact.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sync_assets.config.names import TableName
from sync_assets.connectors.requests import Filter, KeysetFilter, ReadRequest
from sync_assets.sync.engine import sync_table
from sync_assets_tests.conftest import connectors

ROWS = 200_000
GATE_ROW = 150_000
"""The view stops before this row until the gate opens; the rows before it fill several batches."""
START = datetime(2024, 1, 1, tzinfo=UTC)


def make_gated_view(pg, schema: str, name: str, rows: int, gate_row: int) -> int:
    """A view ``schema.name`` of ``rows`` events (id, updated_at, note) whose row ``gate_row`` waits
    while someone holds the returned advisory lock key exclusively."""
    lock_key = abs(hash((schema, name))) % (1 << 62)
    pg.execute(f'CREATE TABLE "{schema}"."{name}_base" (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, '
               f'note text)')
    pg.execute(f"""INSERT INTO "{schema}"."{name}_base"
                   SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second', 'event ' || i
                   FROM generate_series(1, {rows}) AS i""")
    pg.execute(f"""CREATE FUNCTION "{schema}"."{name}_gate"(id bigint) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
                   BEGIN
                     IF id = {gate_row} THEN PERFORM pg_advisory_lock_shared({lock_key});
                                             PERFORM pg_advisory_unlock_shared({lock_key}); END IF;
                     RETURN true;
                   END $$""")
    pg.execute(f'CREATE VIEW "{schema}"."{name}" AS SELECT * FROM "{schema}"."{name}_base" '
               f'WHERE "{schema}"."{name}_gate"(id)')
    return lock_key


def wait_for_backend(pg, condition: str, params: tuple = ()) -> int:
    """The pid of a backend matching ``condition`` in pg_stat_activity, once there is one."""
    for _ in range(600):
        rows = pg.execute(f"SELECT pid FROM pg_stat_activity WHERE {condition}", params).fetchall()
        if rows:
            return rows[0][0]
        time.sleep(0.05)
    raise AssertionError(f"no backend matching {condition} {params}")


@pytest.fixture
def gated(pg, schema_name):
    schema = schema_name("bounded")
    return schema, make_gated_view(pg, schema, "events", ROWS, GATE_ROW)


def _source(write_project, pg_options, schema: str):
    project = write_project({
        "connections": {"pg": {"kind": "postgres", "role": "source", "options": pg_options},
                        "copy": {"kind": "postgres", "role": "target", "options": pg_options}},
        "source": "pg", "target": "copy",
        "streams": {f"{schema}.events": {"object": f"{schema}_copy.events", "mode": "incremental",
                                         "primary_key": "id", "update_key": "updated_at"}},
    })
    source, _ = connectors(project, project.tables[0])
    return source


BOUND_READS = {
    "incremental watermark": (Filter("updated_at", ">=", START),),
    "partition window": (Filter("updated_at", ">=", START), Filter("updated_at", "<", START + timedelta(days=30))),
    "keyset page": (KeysetFilter(("updated_at", "id"), ">", (START, 0)),
                    KeysetFilter(("updated_at", "id"), "<=", (START + timedelta(days=30), 10 ** 9))),
}


@pytest.mark.parametrize("filters", BOUND_READS.values(), ids=BOUND_READS.keys())
def test_a_bound_read_hands_out_batches_while_the_server_still_produces_rows(gated, pg_conninfo, write_project,
                                                                             pg_options, filters):
    schema, lock_key = gated
    source = _source(write_project, pg_options, schema)
    table = TableName(schema, "events")
    schema_ = source.table_schema(table)
    stream = source.open_stream(ReadRequest(table=table, filters=filters), schema_)
    opened = threading.Event()
    with psycopg.connect(pg_conninfo, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
        # a safety net, not a measurement: a buffering read would otherwise wait forever
        safety = threading.Timer(60, lambda: (opened.set(), holder.execute("SELECT pg_advisory_unlock(%s)",
                                                                            (lock_key,))))
        safety.start()
        try:
            reader = stream.counted_batches()
            first = reader.read_next_batch()
            assert not opened.is_set(), "the first batch came only after the server had produced every row"
            assert 0 < first.num_rows < GATE_ROW
            # the server goes on producing rows up to the gate, in the COPY the first batch came from
            wait_for_backend(holder, "wait_event = 'advisory' AND query LIKE %s", (f"COPY (%{schema}%",))
            assert not opened.is_set()
        finally:
            safety.cancel()
            if not opened.is_set():
                holder.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
        rest = sum(batch.num_rows for batch in reader)
    assert first.num_rows + rest == ROWS


@pytest.mark.parametrize("target_kind", ["duckdb", "postgres"])
def test_bound_values_are_data_quotes_backslashes_and_percent_signs_included(pg, schema_name, write_project,
                                                                             pg_options, tmp_path, target_kind):
    """A watermark holding quote, backslash and ``%`` characters, and a ``where:`` with a ``%``,
    on both read paths (Arrow for DuckDB, the binary COPY pass-through for PostgreSQL)."""
    schema = schema_name("literal")
    pg.execute(f'CREATE TABLE "{schema}".notes (id bigint PRIMARY KEY, k text COLLATE "C" NOT NULL)')
    keys = ["a", "b'; DROP TABLE notes; --", "b\\'", "b\\\\x", "c%s", "c%%", "d"]
    pg.cursor().executemany(f'INSERT INTO "{schema}".notes VALUES (%s, %s)', list(enumerate(keys)))
    target = ({"kind": "duckdb", "role": "target", "options": {"path": str(tmp_path / "t.duckdb")}}
              if target_kind == "duckdb" else {"kind": "postgres", "role": "target", "options": pg_options})
    project = write_project({
        "connections": {"pg": {"kind": "postgres", "role": "source", "options": pg_options}, "copy": target},
        "source": "pg", "target": "copy",
        "streams": {f"{schema}.notes": {"object": f"{schema}_copy.notes", "mode": "incremental", "primary_key": "id",
                                        "update_key": "k", "where": "k NOT LIKE 'c%%' OR k = 'c%s'"}},
    })
    table = project.tables[0]
    source, target_connector = connectors(project, table)
    assert sync_table(table, source, target_connector).rows_read == 6  # full load: "c%%" left out by the where
    for key in ("b'; DROP TABLE notes; --", "b\\'", "c%s"):
        _reset_watermark(target_connector, table.target_table, key)
        result = sync_table(table, source, target_connector)
        expected = [k for k in keys if k >= key and k != "c%%"]
        assert result.rows_read == len(expected), (key, result.source_sql)
    assert pg.execute(f'SELECT count(*) FROM "{schema}".notes').fetchone()[0] == len(keys)


def _reset_watermark(target, table: TableName, key: str) -> None:
    """Leave only the target row holding ``key``: the next incremental run reads from ``key`` on."""
    with target.session() as conn:
        target.execute(conn, f"DELETE FROM {target.qualified(table)} WHERE k <> {target.placeholder(1)}", (key,))
        target.commit(conn)


def test_a_source_copy_waiting_on_the_server_lets_the_other_threads_run(pg, pg_conninfo):
    """The PostgreSQL pass-through waits for the server in ``select``: libpq's blocking read keeps
    the GIL, which froze every other thread (here: the one that would release the lock the source
    query waits for) until the server answered."""
    from sync_assets.connectors.postgres.binary_copy import copy_out_chunks

    lock_key = 424_242
    pg.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
    ticks = []

    def release_later() -> None:
        for _ in range(50):
            ticks.append(time.monotonic())
            time.sleep(0.01)
        pg.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))

    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '5s'")  # without the fix: the wait ends here, the ticks did not move
        releaser = threading.Thread(target=release_later)
        releaser.start()
        chunks = list(copy_out_chunks(conn, f"COPY (SELECT pg_advisory_lock_shared({lock_key})) TO STDOUT "
                                            "(FORMAT binary)"))
        releaser.join()
    assert len(ticks) == 50 and chunks
