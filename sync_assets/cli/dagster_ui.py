"""The commands that start Dagster's own processes: ``sync-assets demo`` (build the Chinook source,
sync it, then ``dagster dev``) and ``sync-assets ui`` (the web UI alone, ``--read-only`` for people
who may look but not launch), plus the instance's pool limits both rely on.

Open-source Dagster has no login. A deployment with roles serves two UIs on one instance: a
writable one for operators behind an authenticating reverse proxy, and ``sync-assets ui
--read-only`` for viewers (no Materialize button, launches refused by the server; see
docs/deployment.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sync_assets.config.loader import load_project
from sync_assets.config.project import Project

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT_LOCATION = "sync_assets.definitions"
DEMO_LOCATION = "sync_assets.demo.definitions"


def pool_limits(project: Project) -> dict[str, int]:
    """Pool name -> limit: each source connection's max_concurrent_reads, one writer per DuckDB file."""
    from sync_assets.orchestration.assets import pool_for

    limits = {}
    for table in project.tables:
        pool = pool_for(project, table)
        limits[pool] = 1 if pool.endswith("_writer") else project.connections[table.source].max_concurrent_reads
    return limits


def apply_pool_limits(instance, limits: dict[str, int]) -> None:
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)


def dagster_home(home: str | None) -> Path:
    """``DAGSTER_HOME`` (``home``, else $DAGSTER_HOME, else ./.dagster_home; created when missing)
    with the project's ``dagster.yaml``: copied again whenever the project's differs (the previous
    one kept as ``dagster.yaml.previous``), so an edit such as switching to PostgreSQL storage
    takes effect at the next start."""
    path = Path(home or os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    path.mkdir(parents=True, exist_ok=True)
    project_yaml, home_yaml = PROJECT_ROOT / "dagster.yaml", path / "dagster.yaml"
    if home_yaml.exists() and home_yaml.read_bytes() != project_yaml.read_bytes():
        shutil.copy(home_yaml, path / "dagster.yaml.previous")
        print(f"{home_yaml}: replaced by the project's {project_yaml} (it had changed; the old one is "
              f"{path / 'dagster.yaml.previous'})")
    if not home_yaml.exists() or home_yaml.read_bytes() != project_yaml.read_bytes():
        shutil.copy(project_yaml, home_yaml)
    return path


def silenced(command: str) -> list[str]:
    """Python options that silence Dagster 1.13's warning, on every ``dagster asset materialize``
    and ``dagster dev``, that ``dg launch`` / ``dg dev`` supersede them: the design card's commands
    keep working, and a user cannot act on a warning about the demo's own calls."""
    return ["-W", f"ignore:Function `{command}` is superseded"]


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the Chinook source, sync every demo table with Dagster, then start the UI."""
    from dagster import AssetKey, DagsterInstance

    from sync_assets.demo.chinook import CHINOOK_FILE, REVENUE_KEY, has_demo_tables, prepare_demo_source
    from sync_assets.orchestration.assets import partitions_for

    project = load_project(args.config)
    for conn in project.connections.values():
        if conn.kind == "duckdb" and Path(conn.options["path"]).name == CHINOOK_FILE:
            prepare_demo_source(conn.options["path"])
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home(args.dagster_home)),
           "SYNC_ASSETS_DEMO_CONFIG": str(Path(args.config).resolve())}
    print(f"DAGSTER_HOME={env['DAGSTER_HOME']} (run history and metadata persist here)")
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        apply_pool_limits(instance, pool_limits(project))  # one writer at a time per DuckDB file
    base = [sys.executable, *silenced("asset_materialize_command"), "-m", "dagster", "asset", "materialize",
            "-m", DEMO_LOCATION]
    partitioned = [t for t in project.tables if t.partition is not None]
    plain = [t for t in project.tables if t.partition is None]
    steps = []
    if plain:
        steps.append(base + ["--select", ",".join("/".join(t.asset_key) for t in plain)])
    for table in partitioned:
        keys = partitions_for(table).get_partition_keys()
        steps.append(base + ["--select", "/".join(table.asset_key), "--partition-range", f"{keys[0]}...{keys[-1]}"])
    if has_demo_tables({AssetKey(list(t.asset_key)) for t in project.tables}):
        steps.append(base + ["--select", REVENUE_KEY.to_user_string()])
    for command in steps:
        print("$ " + " ".join(command[4:]))
        completed = subprocess.run(command, env=env, cwd=PROJECT_ROOT)
        if completed.returncode != 0:
            return completed.returncode
    print("demo synced: every table is in the DuckDB warehouse; run history is in the Dagster UI")
    if args.no_ui:
        return 0
    # started in DAGSTER_HOME: from the project folder, `dagster dev` would warn that the project's
    # dagster.yaml "will not be used", though the copy in DAGSTER_HOME is the one in use
    return subprocess.run([sys.executable, *silenced("dev_command"), "-m", "dagster", "dev",
                           "-m", DEMO_LOCATION, "-h", args.host, "-p", str(args.port)],
                          env=env, cwd=env["DAGSTER_HOME"]).returncode


def ui_command(location: str, host: str, port: int, read_only: bool) -> list[str]:
    """The ``dagster-webserver`` command line for one code location (no daemon: schedules and
    sensors run under the operators' ``dagster dev`` or ``dagster-daemon`` on the same instance)."""
    return [sys.executable, "-m", "dagster_webserver", "-m", location, "-h", host, "-p", str(port),
            *(["--read-only"] if read_only else [])]


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the UI of the project (or the demo) on the instance at DAGSTER_HOME."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home(args.dagster_home))}
    if args.demo:
        env["SYNC_ASSETS_DEMO_CONFIG"] = str(Path(args.config).resolve())
    else:
        env["SYNC_ASSETS_CONFIG"] = str(Path(args.config).resolve())
    mode = "read-only: viewers see assets, runs and checks, and can launch nothing" if args.read_only else "writable"
    print(f"DAGSTER_HOME={env['DAGSTER_HOME']}; UI on http://{args.host}:{args.port} ({mode})", flush=True)
    location = DEMO_LOCATION if args.demo else PROJECT_LOCATION
    return subprocess.run(ui_command(location, args.host, args.port, args.read_only), env=env,
                          cwd=env["DAGSTER_HOME"]).returncode


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="build the Chinook demo source, sync it with Dagster, start the UI")
    demo.add_argument("--no-ui", action="store_true", help="sync and exit without starting the UI")
    demo.add_argument("--dagster-home", help="default: $DAGSTER_HOME or ./.dagster_home")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=3000)
    demo.set_defaults(func=cmd_demo)
    ui = sub.add_parser("ui", help="serve the Dagster UI alone (no daemon); --read-only for viewers")
    ui.add_argument("--read-only", action="store_true",
                    help="no launches, no schedule or sensor switches, no wipes: the server refuses them")
    ui.add_argument("--demo", action="store_true", help="the demo's code location instead of the project's")
    ui.add_argument("--dagster-home", help="default: $DAGSTER_HOME or ./.dagster_home")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
