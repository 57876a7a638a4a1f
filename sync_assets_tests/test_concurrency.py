"""Two runs of one table at once, against the real PostgreSQL and DuckDB.

Each case starts two syncs of the same stream at the same moment (``sync-assets run`` processes
for the cases of issue 17, threads for the mode matrix) and checks that both end, that the target
equals the source row for row, that each run either succeeded (after waiting for the other) or
failed with the one-line lock message, and that no run reports rows the target does not hold.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from sync_assets.config.loader import load_files
from sync_assets.config.names import TableName
from sync_assets.connectors import connector_for
from sync_assets.errors import DataError, TargetLocked
from sync_assets.sync.planning import RunOptions
from sync_assets.sync.policies import sync_with_policies

ROWS = 300_000
START = datetime(2024, 1, 1, tzinfo=UTC)
LOCKED = "another run is writing it"


@pytest.fixture
def source_table(pg, schema_name):
    """``<src>.t``: 300,000 rows, ``id`` primary key, ``updated_at`` one minute apart per 100 ids."""
    src = schema_name("src")
    pg.execute(f"""CREATE TABLE {src}.t AS
                   SELECT g AS id, %s::timestamptz + (g / 100) * interval '1 minute' AS updated_at,
                          md5(g::text) AS payload
                   FROM generate_series(1, {ROWS}) g""", (START,))
    pg.execute(f"ALTER TABLE {src}.t ADD PRIMARY KEY (id)")
    return src


def _config(folder: Path, src: str, target: dict, object_: str, mode: str, **extra) -> Path:
    folder.mkdir(exist_ok=True)
    stream = {"object": object_, "mode": mode, "primary_key": "id", "update_key": "updated_at", **extra}
    (folder / "sync.yaml").write_text(yaml.safe_dump({
        "connections": {"pg": target["pg"], "tgt": target["tgt"]},
        "source": "pg", "target": "tgt", "streams": {f"{src}.t": stream},
    }, sort_keys=False))
    return folder


def _connections(pg_options: dict, duckdb_path: Path | None) -> dict:
    tgt = ({"kind": "duckdb", "options": {"path": str(duckdb_path)}} if duckdb_path
           else {"kind": "postgres", "options": pg_options})
    return {"pg": {"kind": "postgres", "options": pg_options}, "tgt": tgt}


def _two_cli_runs(config: Path, stream: str) -> list[subprocess.CompletedProcess]:
    command = [sys.executable, "-m", "sync_assets.cli", "--config", str(config), "run", stream]
    started = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate()) for p in started]


def _reported(run: subprocess.CompletedProcess) -> tuple[int, int, int]:
    """(rows written, rows inserted, target rows) from a run's summary line."""
    match = re.search(r"([\d,]+) written \(([\d,]+) inserted, .* target has ([\d,]+) rows", run.stdout)
    assert match, run.stdout + run.stderr
    return tuple(int(g.replace(",", "")) for g in match.groups())  # type: ignore[return-value]


def _pg_target_equals_source(pg, src: str, target: str) -> int:
    rows = pg.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    assert rows == pg.execute(f"SELECT count(*) FROM {src}.t").fetchone()[0]
    diff = pg.execute(f"SELECT count(*) FROM ((SELECT * FROM {src}.t EXCEPT SELECT * FROM {target}) UNION ALL "
                      f"(SELECT * FROM {target} EXCEPT SELECT * FROM {src}.t)) d").fetchone()[0]
    assert diff == 0
    return rows


def _change_source(pg, src: str) -> None:
    """50,000 new rows and 10,000 updated ones, all beyond the current watermark."""
    later = START + timedelta(days=30)
    pg.execute(f"UPDATE {src}.t SET payload = 'updated', updated_at = %s WHERE id <= 10000", (later,))
    pg.execute(f"""INSERT INTO {src}.t SELECT g, %s::timestamptz + (g / 100) * interval '1 second', md5(g::text)
                   FROM generate_series({ROWS + 1}, {ROWS + 50_000}) g""", (later,))


def _check_runs(runs: list[subprocess.CompletedProcess], final_rows: int, new_rows: int | None = None) -> None:
    """Every run succeeded or failed with the lock message; each reports rows the target holds;
    with ``new_rows``, the runs inserted exactly those between them (incremental merges)."""
    inserted = 0
    for run in runs:
        if run.returncode == 0:
            written, run_inserted, target_rows = _reported(run)
            assert target_rows == final_rows and written <= final_rows
            inserted += run_inserted
        else:
            assert run.returncode == 2 and LOCKED in run.stderr, run.stderr
            assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert any(run.returncode == 0 for run in runs)
    if new_rows is not None:
        assert inserted == new_rows, [run.stdout for run in runs]


@pytest.mark.parametrize("mode", ["incremental", "full_refresh"])
@pytest.mark.parametrize("later_load", [False, True], ids=["first_load", "with_changes"])
def test_two_cli_runs_of_one_postgres_table(pg, pg_options, schema_name, source_table, tmp_path, mode, later_load):
    tgt = schema_name("tgt")
    target = f"{tgt}.t_{mode}"
    config = _config(tmp_path / "config", source_table, _connections(pg_options, None), target, mode)
    if later_load:
        assert subprocess.run([sys.executable, "-m", "sync_assets.cli", "--config", str(config), "run",
                               f"{source_table}.t"], capture_output=True).returncode == 0
        _change_source(pg, source_table)
    runs = _two_cli_runs(config, f"{source_table}.t")
    final = _pg_target_equals_source(pg, source_table, target)
    _check_runs(runs, final, new_rows=(50_000 if later_load else ROWS) if mode == "incremental" else None)
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
                      (tgt, "%sync_staging%")).fetchone()[0] == 0


def test_two_cli_runs_into_one_duckdb_file(pg, pg_options, source_table, tmp_path):
    path = tmp_path / "warehouse.duckdb"
    config = _config(tmp_path / "config", source_table, _connections(pg_options, path), "main.t", "incremental")
    runs = _two_cli_runs(config, f"{source_table}.t")
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute("SELECT count(*), sum(id), count(DISTINCT payload) FROM main.t").fetchone()
    assert rows == pg.execute(f"SELECT count(*), sum(id), count(DISTINCT payload) FROM {source_table}.t").fetchone()
    _check_runs(runs, rows[0], new_rows=ROWS)


def test_a_held_postgres_lock_fails_the_run_with_one_line_naming_the_holder(pg_options, schema_name, source_table,
                                                                            tmp_path):
    tgt = schema_name("tgt")
    config = _config(tmp_path / "config", source_table, _connections(pg_options, None), f"{tgt}.t", "full_refresh",
                     lock_timeout=1)
    project = load_files([config / "sync.yaml"], config)
    holder = connector_for("tgt", project.connections["tgt"])
    with holder.writer_lock(TableName(tgt, "t"), 1):
        run = subprocess.run([sys.executable, "-m", "sync_assets.cli", "--config", str(config), "run",
                              f"{source_table}.t"], capture_output=True, text=True)
    assert run.returncode == 2
    assert re.fullmatch(
        rf"error: table {tgt}\.t: another run is writing it \(PostgreSQL backend \d+, application "
        r"'sync_assets'( from [\d.:a-f]+)?, since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+\); waited 1s \(lock_timeout\); "
        r"the run wrote nothing\n",
        run.stderr,
    ), run.stderr


def test_a_held_duckdb_file_fails_the_run_with_one_line_naming_the_process(pg_options, source_table, tmp_path):
    import os

    path = tmp_path / "warehouse.duckdb"
    config = _config(tmp_path / "config", source_table, _connections(pg_options, path), "main.t", "full_refresh",
                     lock_timeout="1 second")
    with duckdb.connect(str(path)):
        run = subprocess.run([sys.executable, "-m", "sync_assets.cli", "--config", str(config), "run",
                              f"{source_table}.t"], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr == (
        f"error: table main.t: another process (PID {os.getpid()}) is writing DuckDB file {path} "
        "(DuckDB takes one writing process per file); waited 1s (lock_timeout); the run wrote nothing\n"
    )


def _two_thread_runs(project, options: RunOptions) -> list[object]:
    """Two syncs of the project's table in two threads, each with its own connectors."""
    table = project.tables[0]
    outcomes: list[object] = [None, None]
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        source = connector_for(table.source, project.connections[table.source])
        target = connector_for(table.target, project.connections[table.target])
        barrier.wait()
        try:
            outcomes[i] = sync_with_policies(table, source, target, options).result
        except TargetLocked as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


@pytest.mark.parametrize("engine", ["postgres", "duckdb"])
@pytest.mark.parametrize("mode", ["full_refresh", "incremental", "smart", "date_partitioned"])
def test_two_runs_at_once_in_every_mode(pg, pg_options, schema_name, source_table, tmp_path, engine, mode):
    duck = tmp_path / "warehouse.duckdb" if engine == "duckdb" else None
    tgt = "main" if duck else schema_name("tgt")
    extra = {"partition": {"column": "updated_at", "granularity": "monthly", "start": "2024-01-01"}} \
        if mode == "date_partitioned" else {}
    config = _config(tmp_path / "config", source_table, _connections(pg_options, duck), f"{tgt}.t", mode, **extra)
    project = load_files([config / "sync.yaml"], config)
    window = (START, START + timedelta(days=60)) if mode == "date_partitioned" else None
    options = RunOptions(partition_window=window)

    def target_rows() -> set:
        if duck:
            with duckdb.connect(str(duck), read_only=True) as conn:
                return set(conn.execute("SELECT id, updated_at, payload FROM main.t").fetchall())
        return set(pg.execute(f"SELECT id, updated_at, payload FROM {tgt}.t").fetchall())

    def source_rows() -> set:
        return set(pg.execute(f"SELECT id, updated_at, payload FROM {source_table}.t").fetchall())

    for load in ("first", "later"):
        if load == "later":
            _change_source(pg, source_table)
        outcomes = _two_thread_runs(project, options)
        assert all(isinstance(o, TargetLocked) is False for o in outcomes), outcomes  # 5 min default: both wait
        rows = target_rows()
        assert rows == source_rows()
        for result in outcomes:
            assert result.target_rows == len(rows)
            assert result.rows_written <= len(rows)


def _staging_left(pg, schema: str) -> list[str]:
    return [r[0] for r in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
                                     (schema, "%sync_staging%")).fetchall()]


def test_staging_is_dropped_on_a_fresh_connection_when_the_session_dies_mid_load(pg, pg_options, schema_name,
                                                                                  source_table, tmp_path):
    tgt = schema_name("tgt")
    config = _config(tmp_path / "config", source_table, _connections(pg_options, None), f"{tgt}.t", "full_refresh")
    project = load_files([config / "sync.yaml"], config)
    table = project.tables[0]
    source, target = (connector_for(n, project.connections[n]) for n in (table.source, table.target))
    killed: list[int] = []

    def kill_the_loading_session() -> None:
        for _ in range(600):
            rows = pg.execute("SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                              (f'COPY "{tgt}"."t__sync_staging_% FROM STDIN%',)).fetchall()
            if rows:
                pg.execute("SELECT pg_terminate_backend(%s)", (rows[0][0],))
                killed.append(rows[0][0])
                return
            threading.Event().wait(0.01)

    killer = threading.Thread(target=kill_the_loading_session)
    killer.start()
    with pytest.raises(Exception, match="terminat|connection"):
        sync_with_policies(table, source, target)
    killer.join()
    assert killed
    assert _staging_left(pg, tgt) == []
    assert pg.execute("SELECT to_regclass(%s)", (f"{tgt}.t",)).fetchone()[0] is None


def test_leftover_staging_of_dead_runs_is_dropped_by_the_next_run(pg, pg_options, schema_name, source_table, tmp_path):
    tgt = schema_name("tgt")
    long_name = "a_rather_long_target_table_name_that_fills_most_of_63_bytes_x"
    for leftover in ("t__sync_staging", "t__sync_staging_0badcafe", "t__sync_staging_0badcafe_typed"):
        pg.execute(f'CREATE TABLE "{tgt}"."{leftover}" (id int)')
    pg.execute(f'CREATE TABLE "{tgt}"."t__sync_staging_of_my_own" (id int)')  # not a staging name of t: kept
    for name in ("t", long_name):
        config = _config(tmp_path / name, source_table, _connections(pg_options, None), f"{tgt}.{name}", "full_refresh")
        project = load_files([config / "sync.yaml"], config)
        table = project.tables[0]
        source, target = (connector_for(n, project.connections[n]) for n in (table.source, table.target))
        result = sync_with_policies(table, source, target).result
        assert result.target_rows == ROWS
    assert _staging_left(pg, tgt) == ["t__sync_staging_of_my_own"]
    staging = connector_for("tgt", project.connections["tgt"]).staging_for(TableName(tgt, long_name))
    assert len(staging.name.encode()) + len("_typed") <= 63 and staging.name.endswith(staging.name[-8:])


def test_an_apply_that_does_not_account_for_every_staged_row_rolls_back(pg, pg_options, schema_name, source_table,
                                                                        tmp_path):
    """A trigger on the target silently drops some rows of the merge: the run fails naming the
    table and the counts, and the target keeps exactly what it had."""
    tgt = schema_name("tgt")
    config = _config(tmp_path / "config", source_table, _connections(pg_options, None), f"{tgt}.t", "incremental")
    project = load_files([config / "sync.yaml"], config)
    table = project.tables[0]
    source, target = (connector_for(n, project.connections[n]) for n in (table.source, table.target))
    first = sync_with_policies(table, source, target).result
    assert (first.rows_inserted, first.rows_updated, first.rows_deleted) == (ROWS, 0, 0)
    _change_source(pg, source_table)
    pg.execute(f"""CREATE FUNCTION {tgt}.drop_some() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN IF NEW.id % 1000 = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$""")
    pg.execute(f"CREATE TRIGGER drop_some BEFORE INSERT ON {tgt}.t FOR EACH ROW EXECUTE FUNCTION {tgt}.drop_some()")
    before = pg.execute(f"SELECT count(*), max(updated_at) FROM {tgt}.t").fetchone()
    with pytest.raises(DataError, match=rf"table {tgt}\.t: the merge inserted and updated 59,9\d\d rows but "
                                        r"60,\d{3} rows were staged; the transaction was rolled back"):
        sync_with_policies(table, source, target)
    assert pg.execute(f"SELECT count(*), max(updated_at) FROM {tgt}.t").fetchone() == before
    pg.execute(f"DROP TRIGGER drop_some ON {tgt}.t")
    second = sync_with_policies(table, source, target).result
    assert (second.rows_inserted, second.rows_deleted) == (50_000, 0) and second.rows_updated >= 10_000
    _pg_target_equals_source(pg, source_table, f"{tgt}.t")


def test_two_dagster_materializes_of_one_asset_at_once(pg, pg_options, schema_name, source_table, tmp_path):
    """``dagster asset materialize`` twice at the same moment, on one instance: both runs end, the
    target equals the source, and every materialization reports rows the target holds."""
    import os
    import shutil

    import dagster as dg

    root = Path(__file__).resolve().parent.parent
    tgt = schema_name("tgt")
    config = _config(tmp_path / "config", source_table, _connections(pg_options, None), f"{tgt}.t", "incremental")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(root / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)):
        pass  # create the instance's storage once: two fresh processes would race to create its tables
    env = {**os.environ, "SYNC_ASSETS_CONFIG": str(config), "DAGSTER_HOME": str(home)}
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "sync_assets.definitions",
               "--select", f"{tgt}/t"]
    for load in ("first", "later"):
        if load == "later":
            _change_source(pg, source_table)
        started = [subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True) for _ in range(2)]
        outputs = [(p.wait(timeout=180), p.communicate()[0]) for p in started]
        for code, output in outputs:
            assert code == 0 or LOCKED in output, output[-3000:]
        final = _pg_target_equals_source(pg, source_table, f"{tgt}.t")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            events = instance.fetch_materializations(dg.AssetKey([tgt, "t"]), limit=10).records
            assert len(events) == (2 if load == "first" else 4)
            for event in events:
                metadata = event.asset_materialization.metadata
                assert metadata["dagster/row_count"].value == final or load == "later"
                assert metadata["rows_written"].value <= final
            latest = events[:2]
            inserted = sum(e.asset_materialization.metadata["rows_inserted"].value for e in latest)
            assert inserted == (ROWS if load == "first" else 50_000)


def _hold_duckdb_file(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens ``path`` for writing, says so on stdout, and holds it ``seconds``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); "
                               f"time.sleep({seconds}); c.close()"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("holds_for, opens", [(1.0, True), (30.0, False)])
def test_a_duckdb_source_is_read_once_its_writer_lets_go(tmp_path, holds_for, opens):
    """DuckDB takes one writing process per file: a source file that its own application writes
    now and then is opened between those writes (``open_wait_s``), or fails naming the holder."""
    path = tmp_path / "app.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE t AS SELECT 42 AS x")
    (tmp_path / "sync.yaml").write_text(yaml.safe_dump({
        "connections": {
            "app": {"kind": "duckdb", "role": "source", "options": {"path": str(path), "open_wait_s": 5}},
            "copy": {"kind": "duckdb", "role": "target", "options": {"path": str(tmp_path / "copy.duckdb")}}},
        "source": "app", "target": "copy", "streams": {"main.t": {"mode": "full_refresh"}}}))
    project = load_files([tmp_path / "sync.yaml"])
    source = connector_for("app", project.connections["app"], read_only=True)
    holder = _hold_duckdb_file(path, holds_for)
    try:
        if opens:
            assert source.scalar("SELECT x FROM main.t") == 42
        else:
            with pytest.raises(TargetLocked, match=re.escape(
                    f"connection 'app': DuckDB file {path} is held by another process (PID {holder.pid}); "
                    "waited 5s (open_wait_s)")):
                source.scalar("SELECT x FROM main.t")
    finally:
        holder.kill()
        holder.wait()
