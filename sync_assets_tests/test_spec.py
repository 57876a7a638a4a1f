"""Configuration loading: valid shapes resolve as documented, and every bad input gets a clear
error naming the file, the stream (or connection) and the key. No database is touched."""

from __future__ import annotations

import pytest

from sync_assets.config.loader import load_project
from sync_assets.config.names import TableName
from sync_assets.errors import ConfigError

PG = {"kind": "postgres", "options": {"database": "test"}}
DUCK = {"kind": "duckdb", "options": {"path": "w.duckdb"}}


def config(streams: dict, **extra) -> dict:
    return {"connections": {"pg": PG, "duck": DUCK}, "source": "pg", "target": "duck", "streams": streams, **extra}


def test_sling_shaped_config_resolves_defaults_and_templates(write_project, tmp_path):
    project = write_project(config(
        {"public.orders": {"mode": "incremental", "primary_key": "id", "update_key": "updated_at",
                           "lookback": "2 hours"},
         'sales."Order Lines"': None},
        defaults={"object": "raw_{stream_schema}.{stream_table}", "group": "sales"},
    ))
    orders, lines = project.tables
    assert orders.target_table == TableName("raw_public", "orders")
    assert orders.asset_key == ("raw_public", "orders") and orders.group == "sales"
    assert orders.lookback.total_seconds() == 7200
    assert lines.source_table == TableName("sales", "Order Lines")
    assert lines.asset_key == ("raw_sales", "Order_Lines") and lines.mode == "full_refresh"
    assert project.connections["duck"].options["path"] == str(tmp_path / "w.duckdb")


def test_secrets_come_from_the_environment(write_project, monkeypatch):
    monkeypatch.setenv("SYNC_PG_PASSWORD", "s3cret")
    pg = {"kind": "postgres", "options": {"database": "test", "password": {"env": "SYNC_PG_PASSWORD"},
                                          "host": "${SYNC_PG_HOST:-db.internal}"}}
    project = write_project({**config({"a.b": None}), "connections": {"pg": pg, "duck": DUCK}})
    assert project.connections["pg"].options["host"] == "db.internal"
    # a secret stays a reference until a connector opens the connection (a run, not the definitions)
    assert project.connections["pg"].options["password"] == "${SYNC_PG_PASSWORD}"
    from sync_assets.connectors import connector_for

    assert connector_for("pg", project.connections["pg"]).opts.password == "s3cret"
    monkeypatch.delenv("SYNC_PG_PASSWORD")
    with pytest.raises(ConfigError, match="connection 'pg': key 'password' needs environment variable SYNC_PG_PASS"):
        connector_for("pg", project.connections["pg"])


@pytest.mark.parametrize("bad, message", [
    ({"streams": {"a.b": {"mode": "full_refresh", "primary_kye": "id"}}},
     r"sync.yaml: stream 'a.b' key 'primary_kye': unknown key"),
    ({"target": "nowhere"}, r"sync.yaml: key 'target': unknown connection 'nowhere'"),
    ({"streams": {"a.b": {"mode": "incremental"}}}, r"stream 'a.b': key 'update_key': mode 'incremental' needs"),
    ({"streams": {"a.b": {"mode": "sideways"}}}, r"stream 'a.b' key 'mode': Input should be"),
    ({"streams": {"a.b": {"mode": "date_partitioned"}}}, r"stream 'a.b': key 'partition'"),
    ({"streams": {"a.b": {"mode": "incremental", "update_key": "ts", "lookback": "3 fortnights"}}},
     r"stream 'a.b' key 'lookback'"),
    ({"streams": {"a.b": {"mode": "incremental", "update_key": "ts", "lookback": "1 day"}}},
     r"stream 'a.b': key 'lookback' re-reads rows, so it needs a primary_key"),
    ({"streams": {"a.b": {"object": "{nope}.x"}}}, r"stream 'a.b': key 'object' uses unknown placeholder"),
    ({"streams": {"a.b": {"columns": ["x"], "primary_key": "id"}}}, r"key 'columns' must include key column 'id'"),
    ({"connections": {"pg": {**PG, "options": {"database": "x", "password": "plain"}}, "duck": DUCK}},
     r"connection 'pg': key 'password' is a secret and must come from the environment"),
    ({"connections": {"pg": {**PG, "options": {"database": "x", "user": {"env": "SYNC_UNSET_VAR_X"}}},
                      "duck": DUCK}},
     r"connection 'pg': key 'user' needs environment variable SYNC_UNSET_VAR_X"),
    ({"connections": {"pg": {**PG, "options": {"database": "x", "hots": "y"}}, "duck": DUCK}},
     r"connection 'pg': key 'options.hots': unknown key"),
    ({"connections": {"pg": PG, "duck": {**DUCK, "role": "source"}}},
     r"key 'target': connection 'duck' is a source-only connection and is never written"),
    ({"connections": {"pg": PG, "duck": {**DUCK, "protected": True}}},
     r"key 'target': connection 'duck' is marked protected"),
])
def test_bad_config_is_named_precisely(write_project, bad, message):
    with pytest.raises(ConfigError, match=message):
        write_project({**config({"a.b": None}), **bad})


def test_duplicate_asset_keys_are_refused(write_project):
    with pytest.raises(ConfigError, match=r"asset key x/t is already used"):
        write_project(config({"a.t": {"object": "x.t"}, "b.t": {"object": "x.t"}}))


def test_empty_config_dir_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no \\*.yaml configuration files"):
        load_project(tmp_path)


def test_quoted_names_keep_dots_and_quotes():
    assert TableName.parse('"my.schema"."Odd ""Name"""') == TableName("my.schema", 'Odd "Name"')


def test_wildcard_streams_expand_against_the_discovered_catalog(write_project):
    project = write_project(config(
        {"SALES.*": {"exclude_tables": ["tmp_*"], "mode": "full_refresh"}, "SALES.orders": {"object": "x.o"}},
        catalog={"pg": {"SALES": ["customers", "tmp_load", "Order Lines"]}},
    ))
    names = sorted(t.name for t in project.tables)
    assert names == ['"SALES"."Order Lines"', '"SALES"."customers"', "SALES.orders"]
    assert project.table('"SALES"."Order Lines"').source_table == TableName("SALES", "Order Lines")


def test_wildcard_without_a_catalog_names_the_fix(write_project):
    with pytest.raises(ConfigError, match=r"stream 'SALES\.\*': wildcard 'SALES\.\*' needs the tables of schema "
                                          r"'SALES' on connection 'pg'; run `sync-assets discover`"):
        write_project(config({"SALES.*": None}))


def test_exclude_tables_only_on_wildcards(write_project):
    with pytest.raises(ConfigError, match=r"key 'exclude_tables' only applies to wildcard streams"):
        write_project(config({"a.b": {"exclude_tables": ["x"]}}))
