"""End to end with the real Dagster daemon: a change sensor (running by default) notices a new
PostgreSQL source table, the daemon queues and launches the run, the run succeeds and the rows
land in the target schema. Every process started here is stopped (its whole process group)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import dagster as dg
import yaml

from sync_assets_tests.processes import stop_group

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 120


def test_daemon_runs_what_the_change_sensor_requests(tmp_path, pg, pg_options, schema_name):
    source = schema_name("src")
    target = schema_name("dst")
    pg.execute(f'CREATE TABLE "{source}".orders (id bigint PRIMARY KEY, amount int)')
    pg.execute(f'INSERT INTO "{source}".orders SELECT i, i * 10 FROM generate_series(1, 42) AS i')
    config = tmp_path / "config"
    config.mkdir()
    (config / "sync.yaml").write_text(yaml.safe_dump({
        "connections": {
            "erp": {"kind": "postgres", "role": "source", "options": pg_options,
                    "change_sensor": {"minimum_interval": "2 seconds"}},
            "copy": {"kind": "postgres", "role": "target", "options": pg_options},
        },
        "source": "erp", "target": "copy",
        "defaults": {"object": f"{target}.{{stream_table}}"},
        "streams": {f"{source}.orders": {"mode": "incremental", "primary_key": "id", "update_key": "id"}},
    }))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "SYNC_ASSETS_CONFIG": str(config)}
    # Create every storage of the instance (SQLite runs, event log and schedules) before the daemon
    # starts: two processes initialising one fresh DAGSTER_HOME at once stamp its schema twice
    # ("alembic_version has more than one head"). One instance, opened here, also does the polling.
    with dg.DagsterInstance.from_config(str(home)) as instance, (tmp_path / "daemon.log").open("w") as daemon_log:
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        assert storage_revisions(home) == {"runs.db": 1, "index.db": 1, "schedules.db": 1}
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "sync_assets.definitions"],
            cwd=ROOT, env=env, stdout=daemon_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            finished = None
            started = time.monotonic()
            while finished is None and time.monotonic() - started < DEADLINE_S and daemon.poll() is None:
                time.sleep(1)
                done = [r for r in instance.get_runs() if r.is_finished]
                finished = done[0] if done else None
            log = (tmp_path / "daemon.log").read_text()[-3000:]
            assert finished is not None, f"no run finished; daemon log:\n{log}"
            assert finished.status == dg.DagsterRunStatus.SUCCESS, log
            assert finished.tags["sync_assets/trigger"] == "sensor:erp_changes"
            assert storage_revisions(home) == {"runs.db": 1, "index.db": 1, "schedules.db": 1}, log
        finally:
            stop_group(daemon, timeout_s=20)
    assert pg.execute(f'SELECT COUNT(*), SUM(amount) FROM "{target}".orders').fetchone() == (42, 9030)


def storage_revisions(home: Path) -> dict[str, int]:
    """How many schema revisions each of the instance's shared SQLite files records (one when healthy)."""
    counts = {}
    for name in ("runs.db", "index.db", "schedules.db"):
        (path,) = home.rglob(name)
        with closing(sqlite3.connect(path)) as db:
            counts[name] = db.execute("SELECT COUNT(*) FROM alembic_version").fetchone()[0]
    return counts
