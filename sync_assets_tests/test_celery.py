"""The Celery executor, for real: Redis at 127.0.0.1:6379 as broker and result backend, two
``dagster-celery`` workers started (and stopped) by the test, one ``dagster asset materialize``
whose four steps run on both workers, and two of those steps writing one DuckDB file from two
processes, which take turns on it. Slow (workers start in a few seconds), run by ``.ci/run``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REDIS = "redis://127.0.0.1:6379"


@pytest.fixture
def redis_db():
    """A Redis database of its own (flushed before and after), or a clear failure when Redis is down."""
    import redis

    client = redis.Redis.from_url(f"{REDIS}/0")
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"the Celery test needs Redis at {REDIS} (started on this kind of machine): {exc}")
    number = 11
    client = redis.Redis.from_url(f"{REDIS}/{number}")
    client.flushdb()
    yield f"{REDIS}/{number}"
    client.flushdb()


def test_steps_run_on_celery_workers_and_take_turns_on_one_duckdb_file(pg, pg_options, schema_name, tmp_path,
                                                                        redis_db):
    source = schema_name("celery")
    for name in ("a", "b", "c", "d"):
        pg.execute(f'CREATE TABLE "{source}".{name} (id int PRIMARY KEY, v text)')
        pg.execute(f"INSERT INTO \"{source}\".{name} SELECT g, 'v' || g FROM generate_series(1, 500) g")
    duck = tmp_path / "lake.duckdb"
    config = tmp_path / "config"
    config.mkdir()
    source_options = {"kind": "postgres", "role": "source", "options": pg_options}
    replication = {"defaults": {"mode": "full_refresh", "primary_key": "id"}}
    (config / "celery.yaml").write_text(yaml.safe_dump({
        "connections": {"erp1": source_options, "erp2": source_options,
                        "copy": {"kind": "postgres", "role": "target", "options": pg_options},
                        "lake": {"kind": "duckdb", "options": {"path": str(duck)}}},
        "execution": {"executor": "celery", "single_machine": True,
                      "celery": {"broker": redis_db, "backend": redis_db}},
        "replications": [  # four (source, target) pairs: four steps
            {**replication, "source": "erp1", "target": "copy",
             "defaults": {**replication["defaults"], "object": f"{source}_copy.{{stream_table}}"},
             "streams": {f"{source}.a": None, f"{source}.b": None}},
            {**replication, "source": "erp2", "target": "copy",
             "defaults": {**replication["defaults"], "object": f"{source}_copy.{{stream_table}}"},
             "streams": {f"{source}.c": None, f"{source}.d": None}},
            {**replication, "source": "erp1", "target": "lake", "streams": {f"{source}.a": None, f"{source}.b": None}},
            {**replication, "source": "erp2", "target": "lake", "streams": {f"{source}.c": None, f"{source}.d": None}},
        ],
    }, sort_keys=False))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:  # its SQLite files, before three processes race
        instance.get_runs()                                      # to create them (as `dagster instance migrate`)
    worker_config = tmp_path / "worker.yaml"
    worker_config.write_text(yaml.safe_dump({"execution": {"config": {"broker": redis_db, "backend": redis_db}}}))
    env = {**os.environ, "SYNC_ASSETS_CONFIG": str(config), "DAGSTER_HOME": str(home),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("SYNC_ASSETS_EXECUTOR", None)
    workers = [subprocess.Popen(
        [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(worker_config),
         "-n", name, "--", "--concurrency=1", "--pool=prefork"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        for name in ("w1", "w2")]
    try:
        _wait_for_workers(env, worker_config, 2)
        done = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "sync_assets.definitions",
                               "--select", "*"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        placed = {}
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            metadata = entry.dagster_event.engine_event_data.metadata if entry.dagster_event else {}
            if "Celery worker" in metadata:
                placed[entry.step_key] = metadata["Celery worker"].value
        steps = {e.step_key for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
        assert len(steps) == 4 and set(placed) == steps, (placed, steps)  # every step ran in a worker
        assert {worker.split("@")[0] for worker in placed.values()} == {"w1", "w2"}, placed
        for name in ("a", "b", "c", "d"):
            assert instance.get_latest_materialization_event(dg.AssetKey([f"{source}_copy", name])) is not None
    with duckdb.connect(str(duck), read_only=True) as con:  # both DuckDB steps wrote the one file
        assert [con.execute(f'SELECT COUNT(*) FROM "{source}".{n}').fetchone()[0] for n in "abcd"] == [500] * 4
    assert pg.execute(f'SELECT COUNT(*) FROM "{source}_copy".d').fetchone() == (500,)


def _wait_for_workers(env: dict, worker_config: Path, count: int, timeout_s: float = 60) -> None:
    from celery import Celery

    broker = yaml.safe_load(worker_config.read_text())["execution"]["config"]["broker"]
    app = Celery(broker=broker, backend=broker)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{count} Celery workers did not answer within {timeout_s}s")
