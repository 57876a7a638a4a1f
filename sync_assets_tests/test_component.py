"""``dg`` and ``SyncAssetsComponent``: a separate ``dg`` project made here scaffolds the Component,
configures a PostgreSQL -> DuckDB sync in its defs.yaml, and checks, lists and launches it with
``dg``; this project itself works with ``dg list defs``, ``dg check defs``, ``dg launch`` and
``dg dev``. Every command is the real CLI in a subprocess. Needs PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest
import yaml

from sync_assets_tests.processes import free_port, stop_group

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFINITIONS = '''from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
'''


def dg_env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "VIRTUAL_ENV": str(BIN.parent), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "DAGSTER_HOME": str(home), **extra}


def run_dg(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dg"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "dagster_home"
    path.mkdir()
    shutil.copy(ROOT / "dagster.yaml", path / "dagster.yaml")
    return path


@pytest.fixture
def user_project(tmp_path) -> Path:
    """A ``dg`` project of a user's own, as ``create-dagster project`` lays it out."""
    project = tmp_path / "myproj"
    (project / "myproj" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "myproj"\nversion = "0.1.0"\nrequires-python = ">=3.11"\ndependencies = ["sync_assets"]\n\n'
        '[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "myproj"\n')
    (project / "myproj" / "__init__.py").write_text("")
    (project / "myproj" / "defs" / "__init__.py").write_text("")
    (project / "myproj" / "definitions.py").write_text(DEFINITIONS)
    return project


def test_the_component_scaffolds_checks_lists_and_syncs_in_a_users_dg_project(
        user_project, home, pg, pg_options, schema_name):
    source = schema_name("crm")
    pg.execute(f'CREATE TABLE "{source}".customers (id int PRIMARY KEY, name text, updated_at timestamp NOT NULL)')
    pg.execute(f'INSERT INTO "{source}".customers SELECT g, \'c\' || g, timestamp \'2026-01-01\' + g * interval '
               f'\'1 hour\' FROM generate_series(1, 40) g')
    env = dg_env(home)
    env.pop("CRM_WEBHOOK", None)  # an alert secret nobody set: definitions still load
    scaffolded = run_dg(["scaffold", "defs", "sync_assets.SyncAssetsComponent", "ingest"], user_project, env)
    assert scaffolded.returncode == 0, scaffolded.stderr
    defs_yaml = user_project / "myproj" / "defs" / "ingest" / "defs.yaml"
    assert yaml.safe_load(defs_yaml.read_text())["type"] == "sync_assets.SyncAssetsComponent"

    defs_yaml.write_text(yaml.safe_dump({"type": "sync_assets.SyncAssetsComponent", "attributes": {
        "connections": {"crm": {"kind": "postgres", "role": "source", "options": pg_options},
                        "lake": {"kind": "duckdb", "role": "target", "options": {"path": "lake.duckdb"}}},
        "alerts": {"channels": {"team": {"kind": "slack", "webhook_url": {"env": "CRM_WEBHOOK"}}}},
        "source": "crm", "target": "lake",
        "defaults": {"object": "crm.{stream_table}", "owners": ["team:crm"], "tags": {"domain": "sales"}},
        "streams": {f"{source}.customers": {"mode": "incremental", "primary_key": "id", "update_key": "updated_at"}},
    }}, sort_keys=False))
    for command in (["check", "yaml"], ["check", "defs"]):
        checked = run_dg(command, user_project, env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = run_dg(["list", "defs", "--json"], user_project, env)
    assert listed.returncode == 0, listed.stderr
    defs = json.loads(listed.stdout)
    assets = {a["asset_key"]: a for a in defs["assets"]}
    assert set(assets) == {"crm/customers", f"source/crm/{source}/customers"}  # the copy and its source
    asset = assets["crm/customers"]
    assert asset["owners"] == [{"team": "crm"}] and not assets[f"source/crm/{source}/customers"]["is_executable"]
    assert asset["source"].endswith("myproj/defs/ingest/defs.yaml:1")
    assert {c["key"] for c in defs["asset_checks"]} == {f"crm/customers:{name}" for name in
                                                        ("row_count_parity", "schema_drift", "primary_key_unique")}
    launched = run_dg(["launch", "--assets", "crm/customers"], user_project, env)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    with duckdb.connect(str(defs_yaml.parent / "lake.duckdb"), read_only=True) as lake:
        assert lake.execute("SELECT count(*), sum(id) FROM crm.customers").fetchone() == (40, 820)


def test_a_mistake_in_defs_yaml_is_named_as_in_config_files(user_project, home, pg_options):
    defs_yaml = user_project / "myproj" / "defs" / "ingest" / "defs.yaml"
    defs_yaml.parent.mkdir()
    defs_yaml.write_text(yaml.safe_dump({"type": "sync_assets.SyncAssetsComponent", "attributes": {
        "connections": {"crm": {"kind": "postgres", "role": "source", "options": pg_options}},
        "source": "crm", "target": "warehouse", "streams": {"public.customers": {"primary_key": "id"}},
    }}))
    checked = run_dg(["check", "defs"], user_project, dg_env(home))
    assert checked.returncode != 0
    assert (f"{defs_yaml}: key 'target': unknown connection 'warehouse'; defined: crm"
            in " ".join((checked.stdout + checked.stderr).split()))


def test_this_project_works_with_dg(home, tmp_path):
    """``dg`` in this repository loads ``sync_assets.definitions`` (the demo's config here)."""
    from sync_assets.demo.chinook import prepare_demo_source
    from sync_assets_tests.engines import write_demo_config

    prepare_demo_source(tmp_path / "chinook.duckdb")
    config = write_demo_config(tmp_path / "config", tmp_path / "chinook.duckdb", tmp_path / "warehouse.duckdb")
    env = dg_env(home, SYNC_ASSETS_CONFIG=str(config))
    listed = run_dg(["list", "defs", "--json"], ROOT, env)
    assert listed.returncode == 0, listed.stderr
    assert "chinook/InvoiceLine" in {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}
    assert run_dg(["check", "defs"], ROOT, env).returncode == 0
    launched = run_dg(["launch", "--assets", "chinook/Artist,chinook/Album"], ROOT, env)
    assert launched.returncode == 0, launched.stderr[-3000:]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as warehouse:
        assert warehouse.execute("SELECT count(*) FROM chinook.Album").fetchone() == (347,)

    port = free_port()
    dev = subprocess.Popen([str(BIN / "dg"), "dev", "--port", str(port)], cwd=ROOT, env=env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert dev.poll() is None, dev.stdout.read()
                assert time.monotonic() < deadline, "dg dev did not serve the UI within 120 s"
                time.sleep(1)
    finally:
        stop_group(dev)
