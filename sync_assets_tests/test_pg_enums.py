"""PostgreSQL enums: a PostgreSQL target gets the same enum (name and labels, in order) in the
target table's schema, full refresh and incremental alike, and refuses one of that name with
other labels; every other target gets the labels as text (docs/types.md)."""

from __future__ import annotations

import pytest
from psycopg import sql

from sync_assets.connectors.postgres.connector import PostgresConnector
from sync_assets.errors import SchemaMismatchError
from sync_assets_tests.test_modes import only_pairs, pair, sync  # noqa: F401  (fixtures: every source/target pair)

LABELS = ["sad", "it's", 'a "quoted" label', " spaced out ", "happy"]
ENUM = '"My Mood"'


def _enum_source(source, labels=LABELS) -> None:
    quoted = ", ".join(sql.Literal(label).as_string(None) for label in labels)
    source.execute(f"CREATE TYPE {source.schema}.{ENUM} AS ENUM ({quoted})")
    source.execute(f'CREATE TABLE {source.qualified("feelings")} (k integer PRIMARY KEY, m {source.schema}.{ENUM}, '
                   "at integer NOT NULL)")
    source.execute(f'INSERT INTO {source.qualified("feelings")} VALUES (%s, %s, %s)',
                   [(i, LABELS[i % len(LABELS)] if i % 7 else None, i) for i in range(1, 21)], many=True)


def _column(side, column: str = "m") -> tuple[str, str, list[str]]:
    """(format_type, the type's schema, its labels in order) of a column of ``feelings``."""
    (row,) = side.query(
        "SELECT format_type(a.atttypid, a.atttypmod), n.nspname, "
        "ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE a.attrelid = %s::regclass AND a.attname = %s", [side.qualified("feelings"), column])
    return row


def _values(side) -> list[tuple]:
    return side.query(f'SELECT k, m::text, at FROM {side.qualified("feelings")} ORDER BY k')


@only_pairs(("postgres", "postgres"))
def test_postgres_to_postgres_keeps_the_enum_full_refresh_and_incremental(pair, sync):
    source, target = pair
    _enum_source(source)
    for _ in range(2):  # creates the type, then reuses it
        result = sync({"mode": "full_refresh", "primary_key": "k"}, stream="feelings")
        assert result.native_path
        assert _column(target) == (f'{target.schema}."My Mood"', target.schema, LABELS)
        assert _values(target) == _values(source)

    incremental = {"mode": "incremental", "primary_key": "k", "update_key": "at"}
    sync(incremental, stream="feelings")
    source.execute(f'UPDATE {source.qualified("feelings")} SET m = %s, at = 100 WHERE k = 3', [LABELS[1]])
    source.execute(f'INSERT INTO {source.qualified("feelings")} VALUES (21, %s, 101)', [LABELS[2]])
    result = sync(incremental, stream="feelings")
    assert result.native_path and result.rows_written >= 2  # the watermark row is read again (>=)
    assert _column(target) == (f'{target.schema}."My Mood"', target.schema, LABELS)
    assert _values(target) == _values(source)


@only_pairs(("postgres", "postgres"))
def test_the_arrow_path_casts_text_into_the_enum(pair, sync, monkeypatch):
    source, target = pair
    monkeypatch.setattr(PostgresConnector, "native_load_possible", lambda self, stream, staging_types: False)
    _enum_source(source)
    for options in ({"mode": "full_refresh", "primary_key": "k"},
                    {"mode": "incremental", "primary_key": "k", "update_key": "at"}):
        result = sync(options, stream="feelings")
        assert not result.native_path
        assert _column(target) == (f'{target.schema}."My Mood"', target.schema, LABELS)
        assert _values(target) == _values(source)


@only_pairs(("postgres", "postgres"))
def test_a_new_enum_column_is_added_with_its_type(pair, sync):
    source, target = pair
    source.execute(f'CREATE TABLE {source.qualified("feelings")} (k integer PRIMARY KEY, at integer NOT NULL)')
    source.execute(f'INSERT INTO {source.qualified("feelings")} VALUES (1, 1)')
    incremental = {"mode": "incremental", "primary_key": "k", "update_key": "at"}
    sync(incremental, stream="feelings")
    source.execute(f"CREATE TYPE {source.schema}.{ENUM} AS ENUM ('sad', 'happy')")
    source.execute(f'ALTER TABLE {source.qualified("feelings")} ADD COLUMN m {source.schema}.{ENUM}')
    source.execute(f"INSERT INTO {source.qualified('feelings')} VALUES (2, 2, 'happy')")
    sync(incremental, stream="feelings")
    assert _column(target) == (f'{target.schema}."My Mood"', target.schema, ["sad", "happy"])
    assert _values(target) == _values(source)


@only_pairs(("postgres", "postgres"))
def test_an_existing_enum_with_other_labels_is_refused(pair, sync):
    source, target = pair
    _enum_source(source)
    target.execute(f"CREATE TYPE {target.schema}.{ENUM} AS ENUM ('sad', 'happy', 'bored')")
    with pytest.raises(SchemaMismatchError, match=(
            r"column 'm' is enum 'My Mood'.*already has a type .*My Mood with labels \('sad', 'happy', 'bored'\) "
            r"\(only in the source: \"it's\", 'a \"quoted\" label', ' spaced out '; only in the target: 'bored'\)")):
        sync({"mode": "full_refresh", "primary_key": "k"}, stream="feelings")
    assert target.query("SELECT to_regclass(%s)", [target.qualified("feelings")]) == [(None,)]


@only_pairs(("postgres", "postgres"))
def test_an_incremental_run_into_an_enum_lacking_a_source_label_is_refused(pair, sync):
    source, target = pair
    _enum_source(source)
    incremental = {"mode": "incremental", "primary_key": "k", "update_key": "at"}
    sync(incremental, stream="feelings")
    source.execute(f"ALTER TYPE {source.schema}.{ENUM} ADD VALUE 'new'")
    with pytest.raises(SchemaMismatchError, match="column 'm'"):
        sync(incremental, stream="feelings")


@only_pairs(("postgres", "duckdb"))
def test_postgres_enum_lands_in_duckdb_as_varchar(pair, sync):
    source, target = pair
    _enum_source(source)
    sync({"mode": "full_refresh", "primary_key": "k"}, stream="feelings")
    assert target.query("SELECT data_type FROM information_schema.columns "
                        "WHERE table_schema = %s AND table_name = 'feelings' AND column_name = 'm'",
                        [target.schema]) == [("VARCHAR",)]
    assert target.query(f'SELECT k, m, "at" FROM {target.qualified("feelings")} ORDER BY k') == _values(source)
