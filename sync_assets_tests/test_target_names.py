"""Target table names come out exactly as the source names them: an ``object`` template's
placeholders substitute names, they never re-split or unquote them.

A source table named ``Odd.Name`` must land as one table ``Odd.Name`` (not as table ``Name`` in a
schema ``<schema>.Odd``), ``q"uote`` as ``q"uote`` (not ``quote``), and ``My Mixed Table`` with its
case and spaces, on a real PostgreSQL and DuckDB, with the default template and with a custom one.
"""

from __future__ import annotations

import duckdb
import pytest

from sync_assets.config.names import TableName
from sync_assets.errors import ConfigError
from sync_assets.sync.engine import sync_table
from sync_assets_tests.conftest import connectors

AWKWARD = ["Odd.Name", 'q"uote', "My Mixed Table"]


def _stream(schema: str, table: str) -> str:
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'


@pytest.mark.parametrize(
    "template, values, expected",
    [
        (
            "{stream_schema}.{stream_table}",
            {"stream_schema": "s", "stream_table": "Odd.Name"},
            TableName("s", "Odd.Name"),
        ),
        ("{stream_schema}.{stream_table}", {"stream_schema": "s", "stream_table": 'q"uote'}, TableName("s", 'q"uote')),
        ('"{stream_schema}"."{stream_table}"', {"stream_schema": "a.b", "stream_table": "T"}, TableName("a.b", "T")),
        (
            "{stream_schema}_copy.pre_{stream_table}",
            {"stream_schema": "s", "stream_table": "x.y"},
            TableName("s_copy", "pre_x.y"),
        ),
        ("raw.{stream_table}", {"stream_table": " padded "}, TableName("raw", " padded ")),
        ('"raw.crm".{stream_table}', {"stream_table": "t"}, TableName("raw.crm", "t")),
        ("{stream_table}", {"stream_table": "a.b"}, TableName(None, "a.b")),
    ],
)
def test_placeholders_substitute_names_without_re_splitting(template, values, expected):
    assert TableName.from_template(template, values) == expected


def test_malformed_template_is_a_config_error(write_project, pg_options):
    with pytest.raises(ConfigError, match=r"stream 's.t': key 'object' is not a valid template"):
        write_project({
            "connections": {"src": {"kind": "postgres", "role": "source", "options": pg_options},
                            "tgt": {"kind": "postgres", "options": pg_options}},
            "source": "src", "target": "tgt", "streams": {"s.t": {"object": "raw.{stream_table"}},
        })


def _targets(kind: str, schema: str, tmp_path, pg_options) -> tuple[dict, callable]:
    """The target connection spec and a function listing (schema, table) -> rows of every table
    it holds (on PostgreSQL: in the schemas derived from the source's, ``<schema>_...``)."""
    if kind == "postgres":
        def tables(pg) -> dict:
            names = pg.execute("SELECT table_schema, table_name FROM information_schema.tables "
                               "WHERE starts_with(table_schema, %s) AND table_name <> '_sync_row_counts'",
                               (schema + "_",)).fetchall()
            return {(s, t): sorted(pg.execute(f"SELECT id, v FROM {_stream(s, t)}").fetchall()) for s, t in names}
        return {"kind": "postgres", "options": pg_options}, tables

    path = tmp_path / "tgt.duckdb"

    def duck_tables(pg) -> dict:
        with duckdb.connect(str(path)) as conn:
            names = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                 "WHERE table_name <> '_sync_row_counts'").fetchall()
            return {(s, t): sorted(conn.execute(f"SELECT id, v FROM {_stream(s, t)}").fetchall()) for s, t in names}
    return {"kind": "duckdb", "options": {"path": str(path)}}, duck_tables


TEMPLATES = {
    "default": (None, lambda schema, table: (schema, table)),
    "prefixed": ("{stream_schema}_copy.pre_{stream_table}", lambda schema, table: (f"{schema}_copy", f"pre_{table}")),
    "quoted": ('"{stream_schema}_copy"."{stream_table}"', lambda schema, table: (f"{schema}_copy", table)),
}


@pytest.mark.parametrize("target_kind, template_name", [
    ("duckdb", "default"), ("duckdb", "prefixed"), ("duckdb", "quoted"),
    ("postgres", "prefixed"), ("postgres", "quoted"),  # the default would name the source table itself
])
def test_awkward_source_names_land_exactly(pg, schema_name, pg_options, write_project, tmp_path,
                                           target_kind, template_name):
    template, target_of = TEMPLATES[template_name]
    schema = schema_name("names")
    for i, table in enumerate(AWKWARD):
        pg.execute(f"CREATE TABLE {_stream(schema, table)} (id integer PRIMARY KEY, v text)")
        pg.execute(f"INSERT INTO {_stream(schema, table)} VALUES (%s, %s)", (i, table))
    target_spec, tables = _targets(target_kind, schema, tmp_path, pg_options)
    defaults = {"mode": "full_refresh", "primary_key": "id"} | ({"object": template} if template else {})
    project = write_project({
        "connections": {"src": {"kind": "postgres", "role": "source", "options": pg_options}, "tgt": target_spec},
        "source": "src", "target": "tgt", "defaults": defaults,
        "streams": {_stream(schema, table): {} for table in AWKWARD},
    })
    assert [t.target_table for t in project.tables] == [TableName(*target_of(schema, t)) for t in AWKWARD]
    for table in project.tables:
        sync_table(table, *connectors(project, table))
    assert tables(pg) == {target_of(schema, table): [(i, table)] for i, table in enumerate(AWKWARD)}


def test_wildcard_streams_keep_quotes_in_names(pg, schema_name, pg_options, write_project, tmp_path):
    """A wildcard expands into stream names that parse back to the catalog's exact table names."""
    schema = schema_name("wild")
    for i, table in enumerate(AWKWARD):
        pg.execute(f"CREATE TABLE {_stream(schema, table)} (id integer PRIMARY KEY, v text)")
        pg.execute(f"INSERT INTO {_stream(schema, table)} VALUES (%s, %s)", (i, table))
    target_spec, tables = _targets("duckdb", schema, tmp_path, pg_options)
    project = write_project({
        "connections": {"src": {"kind": "postgres", "role": "source", "options": pg_options}, "tgt": target_spec},
        "catalog": {"src": {schema: AWKWARD}},
        "source": "src", "target": "tgt", "defaults": {"mode": "full_refresh", "primary_key": "id"},
        "streams": {f"{schema}.*": {}},
    })
    assert [t.source_table for t in project.tables] == [TableName(schema, t) for t in AWKWARD]
    for table in project.tables:
        sync_table(table, *connectors(project, table))
    assert tables(pg) == {(schema, table): [(i, table)] for i, table in enumerate(AWKWARD)}
