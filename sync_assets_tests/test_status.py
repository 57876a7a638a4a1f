"""``sync-assets status``: live row counts and watermarks on both sides, and the last sync time
and result from the Dagster instance at $DAGSTER_HOME; an unreachable source is shown, not fatal.
Also ``sync-assets pools`` applying per-connection read limits to that instance."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import yaml

from sync_assets.cli.main import main
from sync_assets.config.loader import load_project
from sync_assets.orchestration.project_definitions import build_definitions

ROOT = Path(__file__).resolve().parents[1]


def write_config(folder: Path, pg_options: dict, source: str, *, source_port: int | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "sync.yaml").write_text(yaml.safe_dump({
        "connections": {
            "erp": {"kind": "postgres", "role": "source", "max_concurrent_reads": 2,
                    "options": {**pg_options, **({"port": source_port, "connect_timeout": 2} if source_port else {})}},
            "copy": {"kind": "postgres", "role": "target", "options": pg_options},
        },
        "source": "erp", "target": "copy",
        "defaults": {"object": f"{source}_copy.{{stream_table}}"},
        "streams": {f"{source}.orders": {"mode": "incremental", "primary_key": "id", "update_key": "id"},
                    f"{source}.notes": {"primary_key": "id"}},
    }))
    return folder


def test_status_shows_both_sides_and_the_last_sync(tmp_path, pg, pg_options, schema_name, monkeypatch, capsys):
    source = schema_name("src")
    pg.execute(
        f'CREATE TABLE "{source}".orders (id bigint PRIMARY KEY); CREATE TABLE "{source}".notes (id bigint PRIMARY KEY)'
    )
    pg.execute(f'INSERT INTO "{source}".orders SELECT generate_series(1, 5)')
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    config = write_config(tmp_path / "config", pg_options, source)
    project = load_project(config)
    defs = build_definitions(project)
    with dg.DagsterInstance.get() as instance:
        key = dg.AssetKey([f"{source}_copy", "orders"])
        assert dg.materialize([defs.get_assets_def(key)], selection=[key], resources=defs.resources,
                              instance=instance).success
    pg.execute(f'INSERT INTO "{source}".orders VALUES (6)')

    assert main(["--config", str(config), "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["table", "source", "rows", "target", "rows", "source", "watermark", "target",
                                "watermark", "last", "sync", "(UTC)", "last", "result"]
    orders_line = next(line for line in lines if line.startswith(f"{source}_copy/orders"))
    assert orders_line.split()[1:5] == ["6", "5", "6", "5"]
    assert orders_line.split()[-3] == "SUCCESS"
    notes_line = next(line for line in lines if line.startswith(f"{source}_copy/notes"))
    assert notes_line.split()[1:4] == ["0", "(no", "table)"] and notes_line.split()[-2:] == ["never", "-"]

    down = write_config(tmp_path / "down", pg_options, source, source_port=1)
    assert main(["--config", str(down), "status"]) == 0
    out = capsys.readouterr().out
    assert "unreachable" in out and "! " + f"{source}_copy/orders source: connection 'erp': cannot connect" in out

    assert main(["--config", str(config), "pools", "--apply"]) == 0
    assert "erp_reads: 2" in capsys.readouterr().out
    with dg.DagsterInstance.get() as instance:
        assert instance.event_log_storage.get_concurrency_info("erp_reads").slot_count == 2
