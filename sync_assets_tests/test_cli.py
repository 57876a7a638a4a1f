"""The ``sync-assets`` command in-process against the Chinook demo files: listing schemas and
tables with their sizes, sampling a table in every format, a dry-run plan and a one-off run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sync_assets.cli.main import main
from sync_assets.demo.chinook import prepare_demo_source
from sync_assets_tests.engines import write_demo_config


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    prepare_demo_source(tmp_path / "chinook.duckdb")
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "demo.yaml").write_text(yaml.safe_dump({
        "connections": {"chinook": {"kind": "duckdb", "role": "source", "options": {"path": "../chinook.duckdb"}},
                        "warehouse": {"kind": "duckdb", "options": {"path": "../warehouse.duckdb"}}},
        "source": "chinook", "target": "warehouse",
        "streams": {"main.Genre": {"object": "chinook.Genre", "primary_key": "GenreId"}},
    }))
    return folder


def test_schemas_lists_the_database_and_its_schemas_with_table_counts(config_dir, capsys):
    assert main(["--config", str(config_dir), "schemas", "chinook"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "* chinook" in lines and lines[-1].split() == ["main", "11"]


def test_tables_lists_row_counts(config_dir, capsys):
    assert main(["--config", str(config_dir), "tables", "chinook"]) == 0
    out = capsys.readouterr().out
    assert "main.Track" in out and "3,503" in out and "last altered" in out


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_sample_in_every_format(config_dir, tmp_path, fmt, capsys):
    target = tmp_path / f"sample.{fmt}"
    assert main(["--config", str(config_dir), "sample", "chinook", "main.Artist", "-n", "3",
                 "--format", fmt, "-o", str(target)]) == 0
    if fmt == "json":
        rows = json.loads(target.read_text())
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(target.read_text())))
    else:
        rows = pq.read_table(target).to_pylist()
    assert len(rows) == 3 and {"ArtistId", "Name"} <= set(rows[0])


def test_plan_then_run_then_random_sample_of_the_target(config_dir, capsys):
    assert main(["--config", str(config_dir), "plan", "chinook/Genre"]) == 0
    assert "rows expected: 25" in capsys.readouterr().out
    assert not (config_dir.parent / "warehouse.duckdb").exists()
    assert main(["--config", str(config_dir), "run", "chinook/Genre"]) == 0
    assert "25 written" in capsys.readouterr().out
    assert main(["--config", str(config_dir), "sample", "warehouse", "chinook.Genre", "-n", "5",
                 "--method", "random"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 5


def test_unknown_connection_is_a_clear_error(config_dir, capsys):
    assert main(["--config", str(config_dir), "tables", "nowhere"]) == 2
    assert "unknown connection 'nowhere'" in capsys.readouterr().err


def test_discover_lists_wildcard_tables_then_definitions_expand_them(config_dir, capsys):
    (config_dir / "wild.yaml").write_text(yaml.safe_dump({
        "source": "chinook", "target": "warehouse",
        "defaults": {"object": "raw.{stream_table}"},
        "streams": {"main.*": {"exclude_tables": ["Playlist*", "Invoice*"]}},
    }))
    assert main(["--config", str(config_dir), "plan", "raw/Album"]) == 2
    assert "run `sync-assets discover`" in capsys.readouterr().err
    assert main(["--config", str(config_dir), "discover"]) == 0
    assert "main.* -> 11 table(s)" in capsys.readouterr().out
    from sync_assets.config.loader import load_project

    keys = {"/".join(t.asset_key) for t in load_project(config_dir).tables}
    assert {"raw/Album", "raw/Track", "raw/Genre"} <= keys and not any(k.startswith("raw/Playlist") for k in keys)
    assert main(["--config", str(config_dir), "run", "raw/Album"]) == 0
    assert "347 written" in capsys.readouterr().out


def test_demo_command_syncs_every_table_and_limits_the_duckdb_writer(tmp_path):
    """The README's first command, minus the install and the UI: every demo asset materialized
    through `dagster asset materialize`, history kept in the given DAGSTER_HOME."""
    import subprocess
    import sys

    import dagster as dg
    import duckdb

    write_demo_config(tmp_path / "config", tmp_path / "chinook.duckdb", tmp_path / "warehouse.duckdb")
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "sync_assets.cli", "--config", str(tmp_path / "config"), "demo",
                           "--no-ui", "--dagster-home", str(home)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stdout + done.stderr  # nothing on the console a user cannot act on
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        tables = {
            r[0]
            for r in con.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables").fetchall()
            if not r[0].split(".")[1].startswith("_sync_")  # the sync's bookkeeping (row counts)
        }
    assert len(tables) == 12 and "analytics.revenue_by_country" in tables
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.event_log_storage.get_concurrency_info("warehouse_writer").slot_count == 1
        assert instance.get_latest_materialization_event(dg.AssetKey(["chinook", "Invoice"])) is not None
