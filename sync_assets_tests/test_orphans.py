"""Parent-child loading on real engines: ``parent_key`` makes the parent an asset dep, and a child
row whose parent the parent's target table lacks fails the run, is quarantined, or waits in the
dead letters as pending until its parent arrives (at most ``orphan_attempts`` runs)."""

from __future__ import annotations

import json

import pytest

from sync_assets.connectors import connector_for, dead_letters
from sync_assets.errors import ConfigError, DataError
from sync_assets.sync.engine import sync_table
from sync_assets_tests.test_modes import only_pairs, pair  # noqa: F401  (fixture: every source/target pair)

PARENTS = [(1, "ada"), (2, "bob")]
CHILDREN = [(10, 1, 1), (11, 2, 2), (12, 3, 3), (13, None, 4), (14, 4, 5)]  # 12 and 14 have no parent yet


def _tables(source) -> None:
    source.ensure_schema()
    source.execute(f"CREATE TABLE {source.qualified('parents')} (id bigint PRIMARY KEY, name text)")
    source.execute(f"CREATE TABLE {source.qualified('children')} (id bigint PRIMARY KEY, parent_id bigint, "
                   "version bigint)")
    source.execute(f"INSERT INTO {source.qualified('parents')} VALUES (%s, %s)", PARENTS, many=True)
    source.execute(f"INSERT INTO {source.qualified('children')} VALUES (%s, %s, %s)", CHILDREN, many=True)


@pytest.fixture
def family(pair, write_project):
    """Sync ``parents`` or ``children`` with the child's options; returns the SyncResult."""
    source, target = pair
    _tables(source)

    def run(name: str, child: dict | None = None):
        project = write_project({
            "connections": {"src": source.connection_spec("source"), "tgt": target.connection_spec("target")},
            "source": "src", "target": "tgt",
            "defaults": {"object": f'"{target.schema}"."{{stream_table}}"', "primary_key": "id"},
            "streams": {f'"{source.schema}"."parents"': {},
                        f'"{source.schema}"."children"': {
                            "parent_key": {"parent_id": f'"{source.schema}"."parents".id'}} | (child or {})},
        })
        table = next(t for t in project.tables if t.name.endswith(f'"{name}"'))
        run.project, run.table = project, table
        return sync_table(table, connector_for("src", project.connections["src"], read_only=True),
                          connector_for("tgt", project.connections["tgt"]))

    def letters() -> list[dict]:
        target_connector = connector_for("tgt", run.project.connections["tgt"])
        return dead_letters.outstanding(target_connector, run.table.target_table)

    run.letters = letters
    return run


def _child_ids(target) -> list[int]:
    return [row[0] for row in target.query(f"SELECT id FROM {target.qualified('children')} ORDER BY id")]


@only_pairs(("postgres", "postgres"), ("duckdb", "duckdb"))
def test_the_parent_is_an_asset_dep_and_an_orphan_fails_the_run_by_default(pair, family):
    _, target = pair
    family("parents")
    parent_key = next(t for t in family.project.tables if t.name.endswith('"parents"')).asset_key
    with pytest.raises(DataError) as failure:
        family("children")
    assert family.table.deps == (parent_key,)
    message = str(failure.value)
    assert "column 'parent_id' references" in message and "id=12, parent_id=3" in message
    assert "nothing was written" in message and "orphans: quarantine or wait" in message
    assert target.query("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND "
                        "table_name = 'children'", [target.schema]) == [(0,)]


def test_quarantine_loads_the_children_with_parents_and_keeps_the_orphans(pair, family):
    _, target = pair
    family("parents")
    result = family("children", {"orphans": "quarantine"})
    assert result.rows_written == 3 and result.rows_quarantined == 2
    assert _child_ids(target) == [10, 11, 13]  # 13's parent_id is NULL: no reference, no orphan
    letters = {json.loads(le["row_key"])[0]: le for le in family.letters()}
    assert set(letters) == {12, 14} and letters[12]["status"] == "failed" and letters[12]["column_name"] == "parent_id"
    assert "'parent_id' = 3 has no parent in" in letters[12]["reason"]


@only_pairs(("postgres", "postgres"), ("duckdb", "duckdb"), ("postgres", "duckdb"))
def test_wait_keeps_orphans_pending_and_loads_them_once_their_parent_arrives(pair, family):
    source, target = pair
    family("parents")
    wait = {"orphans": "wait", "orphan_attempts": 3, "mode": "incremental", "update_key": "version"}
    first = family("children", wait)
    assert first.rows_quarantined == 2 and _child_ids(target) == [10, 11, 13]
    assert {le["status"] for le in family.letters()} == {"pending"}

    source.execute(f"INSERT INTO {source.qualified('parents')} VALUES (3, 'cy')")
    family("parents")
    second = family("children", wait)  # the incremental read does not re-read 12: it comes back from pending
    assert _child_ids(target) == [10, 11, 12, 13]
    [letter] = family.letters()
    assert json.loads(letter["row_key"]) == [14] and letter["status"] == "pending" and letter["attempts"] == 2
    assert second.rows_quarantined == 1

    family("children", wait)  # the third try of 14: it gives up
    [letter] = family.letters()
    assert letter["status"] == "failed" and letter["attempts"] == 3 and "gave up after 3 runs" in letter["reason"]
    family("children", wait)  # the source sends 14 again (its version is past the watermark): it stays failed
    [letter] = family.letters()
    assert letter["status"] == "failed" and letter["attempts"] == 4 and _child_ids(target) == [10, 11, 12, 13]


@only_pairs(("postgres", "postgres"))
def test_a_parent_in_another_target_is_refused(pair, write_project):
    source, target = pair
    with pytest.raises(ConfigError, match="orphans are found by looking the key up in the parent's target table"):
        write_project({
            "connections": {"src": source.connection_spec("source"), "tgt": target.connection_spec("target"),
                            "other": target.connection_spec("target")},
            "replications": [
                {"source": "src", "target": "other", "streams": {"parents": {"primary_key": "id"}}},
                {"source": "src", "target": "tgt", "streams": {"children": {
                    "primary_key": "id", "parent_key": {"parent_id": "parents.id"}}}},
            ],
        })
