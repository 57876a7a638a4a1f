"""``hash_delta`` on real engines: every run hashes the whole source inside the source, classifies
each key against the target's stored row hash, reads only the changed rows and writes only
inserts, updates and deletes, in one transaction."""

from __future__ import annotations

import pytest

from sync_assets.connectors import hash_delta
from sync_assets.errors import ConfigError
from sync_assets.sync.planning import RunOptions
from sync_assets_tests.engines import make_row
from sync_assets_tests.test_modes import only_pairs, pair, sync  # noqa: F401  (fixtures: every source/target pair)

HASH_DELTA = {"mode": "hash_delta", "primary_key": "Id"}


def _counts(result) -> tuple[int, int, int, int]:
    return result.rows_inserted, result.rows_updated, result.rows_deleted, result.rows_unchanged


def test_every_row_is_classified_across_reruns(pair, sync):
    source, target = pair
    source.create_test_table([*(make_row(i) for i in range(1, 21)), make_row(21, nulls=True)])
    first = sync(HASH_DELTA)
    assert first.plan.strategy == "hash_delta" and _counts(first) == (21, 0, 0, 0)
    assert target.rows() == source.rows()
    assert _counts(sync(HASH_DELTA)) == (0, 0, 0, 21)  # nothing changed: nothing written

    source.execute(f'UPDATE {source.qualified()} SET "select" = -1 WHERE "Id" IN (2, 3)')
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" = 4')
    source.insert([make_row(30)])
    changed = sync(HASH_DELTA)
    assert _counts(changed) == (1, 2, 1, 18) and target.rows() == source.rows()
    assert changed.rows_read == 3  # the source hashed every row; only the changed and new ones travelled

    original = make_row(2)[1]  # row 2 changed back to its old value: an update again
    source.execute(f'UPDATE {source.qualified()} SET "select" = %s WHERE "Id" = 2', [original])
    assert _counts(sync(HASH_DELTA)) == (0, 1, 0, 20) and target.rows() == source.rows()
    assert target.staging_tables() == []


def test_null_and_empty_string_differ(pair, sync):
    source, target = pair
    source.create_test_table([make_row(1), make_row(2)])
    source.execute(f'UPDATE {source.qualified()} SET "Name" = NULL WHERE "Id" = 1')
    source.execute(f"UPDATE {source.qualified()} SET \"Name\" = '' WHERE \"Id\" = 2")
    sync(HASH_DELTA)
    source.execute(f"UPDATE {source.qualified()} SET \"Name\" = '' WHERE \"Id\" = 1")
    source.execute(f'UPDATE {source.qualified()} SET "Name" = NULL WHERE "Id" = 2')
    assert _counts(sync(HASH_DELTA)) == (0, 2, 0, 0)
    assert target.rows() == source.rows()


@only_pairs(("postgres", "duckdb"), ("duckdb", "postgres"))
def test_a_value_cannot_fake_a_column_boundary(pair, sync):
    """Length-prefixed fields: 'ab' + 'c' and 'a' + 'bc' are different rows."""
    source, target = pair
    source.ensure_schema()
    source.execute(f'CREATE TABLE {source.qualified("pairs")} (id int PRIMARY KEY, x text, y text)')
    source.execute(f"INSERT INTO {source.qualified('pairs')} VALUES (1, 'ab', 'c')")
    sync(HASH_DELTA | {"primary_key": "id"}, stream="pairs")
    source.execute(f"UPDATE {source.qualified('pairs')} SET x = 'a', y = 'bc'")
    result = sync(HASH_DELTA | {"primary_key": "id"}, stream="pairs")
    assert _counts(result) == (0, 1, 0, 0)
    assert target.query(f'SELECT x, y FROM {target.qualified("pairs")}') == [("a", "bc")]


@only_pairs(("postgres", "postgres"), ("duckdb", "duckdb"))
def test_composite_keys_and_the_session_time_zone(pair, sync):
    """Hashes do not depend on the session: a time zone set for the user does not change them."""
    source, target = pair
    source.ensure_schema()
    source.execute(f'CREATE TABLE {source.qualified("lines")} (a int, b text, ts timestamptz, v double precision, '
                   "PRIMARY KEY (a, b))")
    source.execute(f"INSERT INTO {source.qualified('lines')} SELECT i % 4, i::text, "
                   "timestamptz '2024-03-01 10:00:00+00' + i * interval '1 hour', i / 3.0 "
                   "FROM generate_series(1, 40) AS i")
    options = {"mode": "hash_delta", "primary_key": ["a", "b"]}
    assert _counts(sync(options, stream="lines")) == (40, 0, 0, 0)
    if target.kind == "postgres":
        target.execute(f"ALTER ROLE CURRENT_USER IN DATABASE {target.query('SELECT current_database()')[0][0]} "
                       "SET TimeZone = 'Asia/Kolkata'")
    try:
        source.execute(f"DELETE FROM {source.qualified('lines')} WHERE a = 1 AND b = '5'")
        source.execute(f"UPDATE {source.qualified('lines')} SET v = -1 WHERE a = 2 AND b = '6'")
        changed = sync(options, stream="lines")  # the one changed row is read by its composite key
        assert _counts(changed) == (0, 1, 1, 38) and changed.rows_read == 1
    finally:
        if target.kind == "postgres":
            target.execute(f"ALTER ROLE CURRENT_USER IN DATABASE {target.query('SELECT current_database()')[0][0]} "
                           "RESET TimeZone")


@only_pairs(("postgres", "postgres"), ("duckdb", "duckdb"))
def test_a_failure_mid_apply_leaves_the_target_and_hashes_as_they_were(pair, sync, monkeypatch):
    source, target = pair
    source.create_test_table([make_row(i) for i in range(1, 11)])
    sync(HASH_DELTA)
    hashes = target.query(f'SELECT "Id", "{hash_delta.ROW_HASH_COLUMN}" FROM {target.qualified()} ORDER BY "Id"')
    before = target.rows()
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" = 1')
    source.execute(f'UPDATE {source.qualified()} SET "select" = 42 WHERE "Id" = 2')
    source.insert([make_row(11)])
    real = hash_delta.statements

    def insert_fails(*args, **kwargs):
        delete, update, _ = real(*args, **kwargs)
        return delete, update, "SELECT no_such_column_so_the_insert_fails"

    monkeypatch.setattr(hash_delta, "statements", insert_fails)
    with pytest.raises(Exception, match="no_such_column"):
        sync(HASH_DELTA)
    assert target.rows() == before
    assert target.query(f'SELECT "Id", "{hash_delta.ROW_HASH_COLUMN}" FROM {target.qualified()} ORDER BY "Id"') \
        == hashes
    assert target.staging_tables() == []
    monkeypatch.undo()
    assert _counts(sync(HASH_DELTA)) == (1, 1, 1, 8) and target.rows() == source.rows()


@only_pairs(("postgres", "duckdb"))
def test_a_full_refresh_then_hash_delta_rehashes_once(pair, sync):
    source, target = pair
    source.create_test_table([make_row(i) for i in range(1, 6)])
    sync(HASH_DELTA, RunOptions(full_refresh=True))  # the table without its hash column
    assert _counts(sync(HASH_DELTA)) == (0, 5, 0, 0)
    assert _counts(sync(HASH_DELTA)) == (0, 0, 0, 5)


@pytest.mark.parametrize("stream, message", [
    ({"mode": "hash_delta"}, "mode 'hash_delta' needs a primary_key"),
    ({"mode": "hash_delta", "primary_key": "id", "update_key": "at"}, "needs no update_key"),
])
def test_config_errors(write_project, tmp_path, stream, message):
    config = {
        "connections": {"a": {"kind": "duckdb", "options": {"path": str(tmp_path / "a.duckdb")}},
                        "b": {"kind": "duckdb", "options": {"path": str(tmp_path / "b.duckdb")}}},
        "source": "a", "target": "b", "streams": {"main.orders": stream},
    }
    with pytest.raises(ConfigError, match=message):
        write_project(config)


@only_pairs(("postgres", "duckdb"), ("duckdb", "postgres"))
def test_many_changes_stage_the_whole_source_and_rebuild_the_table(pair, sync, monkeypatch):
    """Beyond DELTA_KEYS_LIMIT changed keys the whole source is staged and the table rebuilt and
    swapped in; the counts still say what changed."""
    source, target = pair
    source.create_test_table([make_row(i) for i in range(1, 21)])
    sync(HASH_DELTA)
    monkeypatch.setattr(hash_delta, "DELTA_KEYS_LIMIT", 2)
    source.execute(f'UPDATE {source.qualified()} SET "select" = -1 WHERE "Id" IN (2, 3)')
    source.execute(f'DELETE FROM {source.qualified()} WHERE "Id" = 4')
    source.insert([make_row(30)])
    rebuilt = sync(HASH_DELTA)
    assert _counts(rebuilt) == (1, 2, 1, 17) and rebuilt.rows_read == 20
    assert target.rows() == source.rows() and target.staging_tables() == []
    assert _counts(sync(HASH_DELTA)) == (0, 0, 0, 20)  # and the rebuilt table's hashes are the source's
