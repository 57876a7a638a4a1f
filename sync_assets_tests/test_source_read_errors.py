"""A source query that fails on the real PostgreSQL reports the server's error once, naming the stream.

A division by zero in a custom ``sql:`` fails either before the first row (COPY cannot start) or in
the middle of the stream. Either way the run raises one error that names the stream and carries the
server's message; the ADBC handles (statement, connection, database) are closed in order, so no
``Cannot close AdbcDatabase with open AdbcConnection`` follows it, in the chain or at garbage collection.
"""

from __future__ import annotations

import gc
import sys

import pytest

from sync_assets.errors import SyncAssetsError
from sync_assets.sync.engine import sync_table
from sync_assets_tests.conftest import connectors

FAILING_QUERIES = {
    "before the first row": "SELECT 1 / 0 AS x",
    "mid-stream": "SELECT i, 1 / (i - 150000) AS x FROM generate_series(1, 200000) AS i",
}


def _chain(error: BaseException) -> list[BaseException]:
    links, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        links.append(error)
        error = error.__cause__ or error.__context__
    return links


@pytest.mark.parametrize("sql", FAILING_QUERIES.values(), ids=FAILING_QUERIES.keys())
@pytest.mark.parametrize("target_kind", ["duckdb", "postgres"])
def test_a_failing_source_query_reports_the_server_error_once_naming_the_stream(
        write_project, pg_options, pg, schema_name, tmp_path, monkeypatch, sql, target_kind):
    schema = schema_name("readerr")
    target = ({"kind": "duckdb", "role": "target", "options": {"path": str(tmp_path / "t.duckdb")}}
              if target_kind == "duckdb" else {"kind": "postgres", "role": "target", "options": pg_options})
    project = write_project({
        "connections": {"pg": {"kind": "postgres", "role": "source", "options": pg_options}, "copy": target},
        "source": "pg", "target": "copy",
        "streams": {"ratios": {"sql": sql, "object": f"{schema}_copy.ratios", "mode": "full_refresh"}},
    })
    table = project.tables[0]
    source, target_connector = connectors(project, table)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(SyncAssetsError) as raised:
        sync_table(table, source, target_connector)
    gc.collect()
    message = str(raised.value)
    assert "stream 'ratios'" in message and "division by zero" in message
    assert len(message.splitlines()) == 1
    assert not [e for e in _chain(raised.value) if isinstance(e, RuntimeError)]
    assert not [u for u in unraisable if "Cannot close" in str(u.exc_value)], [str(u.exc_value) for u in unraisable]
