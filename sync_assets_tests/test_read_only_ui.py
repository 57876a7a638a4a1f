"""Viewers who can only look: ``sync-assets ui --read-only`` in a real browser (Debian's headless
Chromium) and through its GraphQL API, next to a writable UI on the same instance.

Needs ``/usr/bin/chromium`` (``bash .ci/run`` installs Debian's package)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from sync_assets.config.loader import load_project
from sync_assets.orchestration.project_definitions import build_definitions
from sync_assets_tests.processes import free_port, stop_group

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on UnauthorizedError { message } ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


@pytest.fixture(scope="module")
def synced_project(tmp_path_factory) -> tuple[Path, Path, str]:
    """A DuckDB project synced once into its own DAGSTER_HOME: (config folder, home, run id)."""
    folder = tmp_path_factory.mktemp("read_only_ui")
    with duckdb.connect(str(folder / "shop.duckdb")) as conn:
        conn.execute("CREATE TABLE orders AS SELECT range AS id, range * 2 AS amount FROM range(25)")
    config, home = folder / "config", folder / "home"
    config.mkdir()
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    (config / "shop.yaml").write_text(yaml.safe_dump({
        "connections": {"shop": {"kind": "duckdb", "role": "source", "options": {"path": "../shop.duckdb"}},
                        "lake": {"kind": "duckdb", "role": "target", "options": {"path": "../lake.duckdb"}}},
        "source": "shop", "target": "lake", "defaults": {"object": "copy.{stream_table}"},
        "streams": {"main.orders": {"primary_key": "id"}},
    }))
    defs = build_definitions(load_project(config))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize(list(defs.assets), resources=defs.resources, instance=instance)
    assert result.success
    return config, home, result.run_id


def serve(config: Path, home: Path, read_only: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "sync_assets.cli", "--config", str(config), "ui", "--dagster-home", str(home),
               "--port", str(port), *(["--read-only"] if read_only else [])]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, env={**os.environ, "SYNC_ASSETS_CONFIG": str(config)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                return server, url
        except OSError:
            if server.poll() is not None:
                raise AssertionError(f"the UI exited: {server.stdout.read()}") from None
            time.sleep(0.5)
    stop_group(server)
    raise AssertionError("the UI did not answer within 90 s")


def rendered(url: str) -> str:
    """The page's DOM once its scripts have run (headless Chromium, up to 20 s of page time)."""
    assert CHROMIUM, "the browser test needs Debian's chromium: apt-get install chromium (bash .ci/run does)"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                           "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def materialize_buttons(dom: str) -> list[str]:
    """Each Materialize button's opening tag."""
    buttons = []
    for part in dom.split("<button")[1:]:
        tag, _, rest = part.partition(">")
        if ">Materialize</span>" in rest.split("</button>")[0]:
            buttons.append(tag)
    return buttons


def launch(url: str) -> dict:
    params = {"selector": {"repositoryLocationName": "sync_assets.definitions", "repositoryName": "__repository__",
                           "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["copy", "orders"]}]},
              "mode": "default"}
    request = urllib.request.Request(f"{url}/graphql", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"query": LAUNCH, "variables": {"params": params}}).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]["launchRun"]


def test_the_read_only_ui_shows_assets_and_runs_and_launches_nothing(synced_project):
    config, home, run_id = synced_project
    server, url = serve(config, home, read_only=True)
    try:
        asset_page = rendered(f"{url}/assets/copy/orders")
        assert run_id[:8] in asset_page  # its latest materialization, with the run that made it
        buttons = materialize_buttons(asset_page)
        assert buttons and all("disabled" in tag for tag in buttons), buttons
        runs_page = rendered(f"{url}/runs")
        assert run_id[:8] in runs_page
        assert launch(url) == {"__typename": "UnauthorizedError", "message": "Authorization failed"}
    finally:
        stop_group(server)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert [r.run_id for r in instance.get_runs()] == [run_id]  # nothing was launched


def test_the_writable_ui_on_the_same_instance_offers_and_accepts_a_launch(synced_project):
    """The same page and the same request against a writable UI: the button is live and the launch
    is queued, so the read-only refusals above are the server's, not a broken query."""
    config, home, run_id = synced_project
    server, url = serve(config, home, read_only=False)
    try:
        buttons = materialize_buttons(rendered(f"{url}/assets/copy/orders"))
        assert buttons and not any("disabled" in tag for tag in buttons), buttons
        launched = launch(url)
        assert launched["__typename"] == "LaunchRunSuccess", launched
    finally:
        stop_group(server)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        queued = instance.get_run_by_id(launched["run"]["runId"])
        assert queued is not None and queued.status == dg.DagsterRunStatus.QUEUED  # no daemon here: it waits
        instance.delete_run(queued.run_id)
