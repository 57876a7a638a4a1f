"""Source SQL from the configuration (``sql:`` and ``where:``), checked before a database sees it.

A source is never written. The real guarantee is in the database (each connector opens its
source-side sessions read-only: see the connectors and docs/sqlserver.md, docs/snowflake.md);
this module is the early, clear refusal at config load. Each text is parsed with sqlglot in the
source's dialect:

- ``sql:`` must be exactly one query (``SELECT``, or a ``UNION``/``INTERSECT``/``EXCEPT`` of
  them), with no statement nested in it (PostgreSQL's ``WITH x AS (DELETE ... RETURNING ...)``),
  no ``SELECT ... INTO`` (creates a table), no ``FOR UPDATE`` (locks source rows);
- ``where:`` must be exactly one expression (no alias, no query of its own), and stay exactly
  that expression once placed in ``WHERE (...)``;
- neither may call a function known to have side effects (``pg_terminate_backend``,
  ``dblink_exec``, ``set_config``, ``nextval``, T-SQL ``OPENQUERY``, ...).

A query sqlglot cannot parse is refused too: put it in a view in the source database and sync
the view as a table. At run time, ``planning`` turns the source's refusal of a query or condition
that parsed (an unknown column, a type error) into one line naming the file and stream.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from sync_assets.errors import ConfigError

DIALECTS = {"postgres": "postgres", "duckdb": "duckdb", "mssql": "tsql", "snowflake": "snowflake"}
"""Connection kind -> sqlglot dialect."""

_TOKEN = re.compile(r"<Token token_type: [^>]*?, text: (.*?), line: .*?>")
"""sqlglot's token repr in parse errors; the message shows the token's text."""

_QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except)

_WRITING_NODES = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable,
    exp.Copy, exp.Into, exp.Lock, exp.Command, exp.Set, exp.Commit, exp.Rollback, exp.Transaction,
    exp.Use, exp.Grant, exp.Revoke, exp.Pragma, exp.Attach, exp.Detach, exp.Install, exp.LoadData,
    exp.Analyze, exp.Comment, exp.Kill, exp.Refresh, exp.Cache, exp.Uncache, exp.Export, exp.Put,
    exp.NextValueFor,
)
"""Statements (and clauses) that write, lock, change the session or call out: refused anywhere."""

_SIDE_EFFECT_FUNCTIONS = {
    "postgres": {
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_promote",
        "pg_switch_wal", "pg_create_restore_point", "pg_create_physical_replication_slot",
        "pg_create_logical_replication_slot", "pg_drop_replication_slot", "pg_copy_physical_replication_slot",
        "pg_copy_logical_replication_slot", "pg_logical_emit_message", "pg_notify", "pg_import_system_collations",
        "lo_import", "lo_export", "lo_unlink", "lo_create", "lo_creat", "lo_from_bytea", "lo_put", "lo_truncate",
        "lowrite", "set_config", "nextval", "setval", "query_to_xml", "query_to_xmlschema",
        "query_to_xml_and_xmlschema", "cursor_to_xml", "pg_stat_statements_reset",
    },
    "duckdb": {"nextval", "setval", "query", "query_table"},
    "tsql": {"openquery", "openrowset", "opendatasource"},
    "snowflake": {"system$cancel_query", "system$cancel_all_queries", "system$abort_session",
                  "system$abort_transaction", "system$set_return_value"},
}
"""Functions that write, signal other sessions or run SQL text of their own, per dialect."""

_SIDE_EFFECT_PREFIXES = {
    "postgres": ("dblink", "pg_advisory", "pg_try_advisory", "pg_stat_reset", "pg_replication_origin_",
                 "pg_file_", "pg_log_backend"),
    "duckdb": (),
    "tsql": ("xp_", "sp_"),
    "snowflake": ("system$cancel", "system$abort"),
}


def check_stream_sql(where: str, kind: str, sql: str | None, condition: str | None) -> tuple[str | None, str | None]:
    """Check a stream's ``sql`` and ``where`` for a source of connection kind ``kind``; returns
    them with trailing semicolons and blanks removed (they are embedded in a larger query).
    ``where`` names the file and stream in errors."""
    dialect = DIALECTS[kind]
    if sql is not None:
        sql = _strip(sql)
        check_query(sql, dialect, f"{where} key 'sql'")
    if condition is not None:
        condition = _strip(condition)
        check_condition(condition, dialect, f"{where} key 'where'")
    return sql, condition


def check_query(sql: str, dialect: str, where: str) -> None:
    """Exactly one read-only query, else a ConfigError naming ``where``."""
    statements = _parse(sql, dialect, where)
    if len(statements) != 1:
        raise ConfigError(f"{where}: {len(statements)} statements found; give exactly one SELECT "
                          "(a source is never written, and runs one query)")
    query = statements[0]
    if not isinstance(query, _QUERIES):
        raise ConfigError(f"{where}: {_describe(query)} is not a SELECT; a source runs only one SELECT "
                          "(a source is never written)")
    _refuse_side_effects(query, dialect, where)


def check_condition(condition: str, dialect: str, where: str) -> None:
    """Exactly one expression, usable as ``WHERE (condition)``, else a ConfigError naming ``where``."""
    parsed = _parse(condition, dialect, where)
    if len(parsed) != 1 or isinstance(parsed[0], (*_QUERIES, exp.Subquery, exp.Alias, *_WRITING_NODES)):
        raise ConfigError(f"{where}: {condition!r} is not a single condition (such as \"status = 'open'\"); "
                          "it is placed in the source query's WHERE clause")
    _refuse_side_effects(parsed[0], dialect, where)
    wrapped = _parse(f"SELECT 1 FROM sync_guard WHERE ({condition})", dialect, where)
    if (len(wrapped) != 1 or not isinstance(wrapped[0], exp.Select)
            or wrapped[0].args["where"].this.unnest() != parsed[0]):
        raise ConfigError(f"{where}: {condition!r} does not stay one condition inside WHERE (...); "
                          "check its parentheses")


def _parse(text: str, dialect: str, where: str) -> list[exp.Expression]:
    try:
        statements = sqlglot.parse(text, read=dialect)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        position = f" at line {first.get('line')}, column {first.get('col')}" if first.get("line") else ""
        detail = _TOKEN.sub(r"'\1'", first.get("description") or str(exc).splitlines()[0])
        raise ConfigError(f"{where}: cannot be parsed as {dialect} SQL{position}: {detail}; if the database "
                          "accepts it, put it in a view in the source database and sync the view") from None
    parsed = [s for s in statements if s is not None]
    if not parsed:
        raise ConfigError(f"{where}: is empty")
    return parsed


def _refuse_side_effects(tree: exp.Expression, dialect: str, where: str) -> None:
    names = _SIDE_EFFECT_FUNCTIONS[dialect]
    prefixes = _SIDE_EFFECT_PREFIXES[dialect]
    for node in tree.walk():
        if isinstance(node, _WRITING_NODES):
            raise ConfigError(f"{where}: contains {_describe(node)}, which a read of a source may not run "
                              "(a source is never written)")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in names or name.startswith(prefixes):
                raise ConfigError(f"{where}: calls {name}(), which has side effects; a source is only read")


def _describe(node: exp.Expression) -> str:
    return {exp.Into: "SELECT ... INTO (it creates a table)", exp.Lock: "FOR UPDATE/SHARE (it locks rows)",
            exp.NextValueFor: "NEXT VALUE FOR (it advances a sequence)"}.get(
        type(node), f"a {node.key.upper()} statement")


def _strip(text: str) -> str:
    return text.strip().rstrip(";").rstrip()
