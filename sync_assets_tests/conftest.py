"""Shared test fixtures: a real PostgreSQL, per-test schemas, DuckDB files and project builders.

PostgreSQL is found through ``SYNC_ASSETS_TEST_PG`` (a libpq conninfo or URI; default: the local
server on 127.0.0.1:5432, database ``test``). When nothing answers there, the fixture starts a
throwaway server from the installed PostgreSQL binaries (``initdb``/``pg_ctl``) in a temporary
folder and stops it at the end, so the suite never skips for want of a server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from sync_assets.config.loader import load_files
from sync_assets.config.project import Project
from sync_assets.connectors import connector_for

DEFAULT_PG = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5"


def _reachable(conninfo: str) -> bool:
    try:
        psycopg.connect(conninfo).close()
        return True
    except psycopg.OperationalError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_throwaway_postgres(password: str | None = None) -> tuple[str, callable]:
    """A private server on a free port; with ``password``, every login must give it (SCRAM)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or (
        [shutil.which("initdb")] if shutil.which("initdb") else []
    )
    if not binaries:
        pytest.fail("no PostgreSQL reachable at SYNC_ASSETS_TEST_PG / 127.0.0.1:5432 and no initdb found; "
                    "install PostgreSQL (Debian: apt-get install postgresql) or set SYNC_ASSETS_TEST_PG")
    bindir = Path(binaries[-1]).parent
    workdir = Path(tempfile.mkdtemp(prefix="sync_assets_pg_"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(workdir, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = workdir / "data"
    auth = ["-A", "trust"]
    if password is not None:
        (workdir / "pwfile").write_text(password)
        auth = ["-A", "scram-sha-256", f"--pwfile={workdir / 'pwfile'}"]
    subprocess.run([*run_as, str(bindir / "initdb"), *auth, "-U", "postgres", "-D", str(data)],
                   check=True, capture_output=True)
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(workdir / "log"), "-w", "start",
                    "-o", f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"],
                   check=True, capture_output=True)
    conninfo = f"host=127.0.0.1 port={port} dbname=postgres user=postgres connect_timeout=5"
    if password is not None:
        conninfo += f" password={password}"
    for _ in range(50):
        if _reachable(conninfo):
            break
        time.sleep(0.2)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE DATABASE test")

    def stop() -> None:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

    return conninfo.replace("dbname=postgres", "dbname=test"), stop


@pytest.fixture(scope="session")
def pg_conninfo() -> Iterator[str]:
    conninfo = os.environ.get("SYNC_ASSETS_TEST_PG", DEFAULT_PG)
    if _reachable(conninfo):
        yield conninfo
        return
    conninfo, stop = _start_throwaway_postgres()
    try:
        yield conninfo
    finally:
        stop()


@pytest.fixture(scope="session")
def pg_options(pg_conninfo: str) -> dict:
    """The conninfo as sync_assets connection options."""
    params = psycopg.conninfo.conninfo_to_dict(pg_conninfo)
    return {"host": params.get("host", "127.0.0.1"), "port": int(params.get("port", 5432)),
            "database": params.get("dbname", "test"), "user": params.get("user", "postgres")}


@pytest.fixture
def pg(pg_conninfo: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def schema_name(pg: psycopg.Connection) -> Iterator[callable]:
    """Make uniquely named PostgreSQL schemas for one test and drop them (and schemas named
    after them, such as sync targets ``<name>_copy``) afterwards."""
    made: list[str] = []

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        pg.execute(f'CREATE SCHEMA "{name}"')
        made.append(name)
        return name

    yield make
    for name in made:  # and the schemas a test's syncs derived from it (e.g. "<name>_copy" targets)
        derived = pg.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s OR starts_with(nspname, %s)",
                             (name, name + "_")).fetchall()
        for (schema,) in derived:
            pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def write_project(tmp_path: Path):
    """Write a config dict as YAML and load it as a Project."""

    def write(config: dict, name: str = "sync.yaml") -> Project:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return load_files([path], tmp_path)

    return write


def connectors(project: Project, table):
    return (connector_for(table.source, project.connections[table.source], read_only=True),
            connector_for(table.target, project.connections[table.target]))
